//! DescribeCluster (key 60), v0-v2: `brokers[]`, racks included — the answer admin tools show,
//! which other proxies leave with upstream addresses. Everything after the array passes as it was.

use bytes::{BufMut, Bytes};
use kafka_protocol::messages::DescribeClusterResponse;

use super::walk::{Cursor, Splice, malformed, put_array_len, put_string};
use super::{Advertise, Named, Rack, Response, RewriteError, Rewritten};

const NAME: &str = "DescribeCluster";

impl Response for DescribeClusterResponse {
    const NAME: &'static str = NAME;
}

pub(super) fn rewrite(version: i16, frame: Bytes, adv: &dyn Advertise) -> Result<Rewritten, RewriteError> {
    let bad = |what| malformed(NAME, version, what);
    // Every version is flexible: compact strings, tagged fields, response header v1.
    let mut c = Cursor::after_header(&frame, 1).ok_or_else(|| bad("truncated header"))?;
    c.skip(4 + 2).ok_or_else(|| bad("truncated"))?; // throttle_time_ms, error_code
    c.nullable_string(true).ok_or_else(|| bad("truncated error_message"))?;
    if version >= 1 {
        c.skip(1).ok_or_else(|| bad("truncated endpoint_type"))?;
    }
    c.string(true).ok_or_else(|| bad("truncated cluster_id"))?;
    c.skip(4).ok_or_else(|| bad("truncated controller_id"))?;
    let start = c.pos;
    let count = c.compact_len().ok_or_else(|| bad("truncated brokers"))?;
    if count == 0 {
        return Ok(Rewritten::from(frame));
    }
    let mut splice = Splice::copying(&frame, start);
    put_array_len(splice.out(), count, true);
    for _ in 0..count {
        let (node_id, host, port) = (c.i32(), c.string(true), c.i32());
        let (Some(node_id), Some(host), Some(port)) = (node_id, host, port) else {
            return Err(bad("truncated broker"));
        };
        let after_port = c.pos;
        let rack = c.nullable_string(true).ok_or_else(|| bad("truncated rack"))?;
        if version >= 2 {
            c.skip(1).ok_or_else(|| bad("truncated is_fenced"))?;
        }
        c.skip_tags().ok_or_else(|| bad("truncated tags"))?;
        let a = adv.advertise(Named { node_id, host, port, rack: Rack::Reported(rack) })?;
        let out = splice.out();
        out.put_i32(node_id);
        put_string(out, &a.host, true);
        out.put_i32(i32::from(a.port));
        out.put_slice(&frame[after_port..c.pos]);
    }
    splice.finish(&frame, c.pos, NAME, version)
}
