//! DescribeCluster (key 60), v0-v2: `brokers[]`, racks included — the answer admin tools show,
//! which other proxies leave with upstream addresses. Everything after the array passes as it was.

use bytes::{BufMut, Bytes};
use kafka_protocol::messages::DescribeClusterResponse;

use super::{Fault, Patch, Response, Rewritten};
use crate::broker::{Advertise, Named, Rack};
use crate::wire::{Cursor, put_array_len, put_string};

pub(super) const NAME: &str = "DescribeCluster";

impl Response for DescribeClusterResponse {
    const NAME: &'static str = NAME;
}

pub(super) fn rewrite<'f>(version: i16, frame: &'f Bytes, names: &dyn Advertise) -> Result<Rewritten<'f>, Fault> {
    // Every version is flexible: compact strings, tagged fields, response header v1.
    let mut c = Cursor::after_response_header(frame, 1)?;
    c.skip(4, "throttle_time_ms")?;
    c.skip(2, "error_code")?;
    c.nullable_string(true, "error_message")?;
    if version >= 1 {
        c.skip(1, "endpoint_type")?;
    }
    c.string(true, "cluster_id")?;
    c.skip(4, "controller_id")?;
    let start = c.pos();
    let count = c.compact_len("brokers")?;
    if count == 0 {
        return Ok(Rewritten::unchanged(frame));
    }
    let mut patch = Patch::copying(frame, start);
    put_array_len(patch.out(), count, true);
    let mut named = Vec::new();
    for _ in 0..count {
        let node_id = c.i32("brokers.broker_id")?;
        let host = c.string(true, "brokers.host")?;
        let port = c.i32("brokers.port")?;
        let after_port = c.pos();
        let rack = c.nullable_string(true, "brokers.rack")?;
        if version >= 2 {
            c.skip(1, "brokers.is_fenced")?;
        }
        c.skip_tags("brokers tagged fields")?;
        let broker = Named { node_id, host, port, rack: Rack::Reported(rack) };
        let advertised = names.advertise(&broker)?;
        let out = patch.out();
        out.put_i32(node_id);
        put_string(out, &advertised.host, true);
        out.put_i32(i32::from(advertised.port));
        out.put_slice(&frame[after_port..c.pos()]);
        named.push(broker);
    }
    patch.finish(frame, c.pos(), named)
}
