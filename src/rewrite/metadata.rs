//! Metadata (key 3), every version: `brokers[]`, the first array of the answer. The walk stops
//! after it, so topics and partitions — however many — pass on as the same memory.

use bytes::{BufMut, Bytes};
use kafka_protocol::messages::MetadataResponse;
use kafka_protocol::protocol::HeaderVersion;

use super::{Fault, Patch, Response, RewriteError, Rewritten};
use crate::broker::{Advertise, Named, Rack};
use crate::wire::{self, Cursor, put_array_len, put_string};

pub(super) const NAME: &str = "Metadata";

impl Response for MetadataResponse {
    const NAME: &'static str = NAME;
}

/// `brokers[]` as it stands in a frame.
struct Brokers<'f> {
    /// Where the array starts, and where it ends.
    start: usize,
    end: usize,
    /// Each broker, and the bytes after its port (rack, tagged fields), passed on as they are.
    entries: Vec<(Named<'f>, std::ops::Range<usize>)>,
}

fn walk(frame: &[u8], version: i16) -> wire::Result<Brokers<'_>> {
    let flexible = version >= 9;
    let mut c = Cursor::after_response_header(frame, MetadataResponse::header_version(version))?;
    if version >= 3 {
        c.skip(4, "throttle_time_ms")?;
    }
    let start = c.pos();
    let mut entries = Vec::new();
    for _ in 0..c.array_len(flexible, "brokers")? {
        let node_id = c.i32("brokers.node_id")?;
        let host = c.string(flexible, "brokers.host")?;
        let port = c.i32("brokers.port")?;
        let after_port = c.pos();
        let rack = match version {
            0 => Rack::Unreported,
            _ => Rack::Reported(c.nullable_string(flexible, "brokers.rack")?),
        };
        if flexible {
            c.skip_tags("brokers tagged fields")?;
        }
        entries.push((Named { node_id, host, port, rack }, after_port..c.pos()));
    }
    Ok(Brokers { start, end: c.pos(), entries })
}

pub(super) fn rewrite<'f>(version: i16, frame: &'f Bytes, names: &dyn Advertise) -> Result<Rewritten<'f>, Fault> {
    let flexible = version >= 9;
    let brokers = walk(frame, version)?;
    if brokers.entries.is_empty() {
        return Ok(Rewritten::unchanged(frame));
    }
    let mut patch = Patch::copying(frame, brokers.start);
    put_array_len(patch.out(), brokers.entries.len(), flexible);
    for (broker, after_port) in &brokers.entries {
        let advertised = names.advertise(broker)?;
        let out = patch.out();
        out.put_i32(broker.node_id);
        put_string(out, &advertised.host, flexible);
        out.put_i32(i32::from(advertised.port));
        out.put_slice(&frame[after_port.clone()]);
    }
    patch.finish(frame, brokers.end, brokers.entries.into_iter().map(|(named, _)| named).collect())
}

/// The brokers and cluster id of a Metadata answer, for the gateway's own discovery.
pub fn read(frame: &[u8], version: i16) -> Result<(Vec<Named<'_>>, Option<&str>), RewriteError> {
    let read = || {
        let brokers = walk(frame, version)?;
        let cluster_id = match version {
            0 | 1 => None,
            _ => Cursor::at(frame, brokers.end).nullable_string(version >= 9, "cluster_id")?,
        };
        Ok((brokers.entries.into_iter().map(|(named, _)| named).collect(), cluster_id))
    };
    read().map_err(|source| RewriteError::Malformed { api: NAME, version, source })
}
