//! Metadata (key 3), every version: `brokers[]`, the first array of the answer. The walk stops
//! after it, so topics and partitions — however many — pass on as the same memory.

use bytes::{BufMut, Bytes};
use kafka_protocol::messages::MetadataResponse;
use kafka_protocol::protocol::HeaderVersion;

use super::walk::{Cursor, Splice, malformed, put_array_len, put_string};
use super::{Address, Advertise, Named, Rack, Response, RewriteError, Rewritten};

const NAME: &str = "Metadata";

impl Response for MetadataResponse {
    const NAME: &'static str = NAME;
}

/// A broker entry as it stands in the frame.
struct Entry<'a> {
    node_id: i32,
    host: &'a str,
    port: i32,
    rack: Rack<'a>,
    /// The bytes after the port (rack, tagged fields), passed on as they are.
    after_port: std::ops::Range<usize>,
}

/// Walks to the end of `brokers[]`: where the array starts, its entries, and where it ends.
fn walk(frame: &[u8], version: i16) -> Option<(usize, Vec<Entry<'_>>, usize)> {
    let flexible = version >= 9;
    let mut c = Cursor::after_header(frame, MetadataResponse::header_version(version))?;
    if version >= 3 {
        c.skip(4)?; // throttle_time_ms
    }
    let start = c.pos;
    let count = c.array_len(flexible)?;
    let mut entries = Vec::new();
    for _ in 0..count {
        let node_id = c.i32()?;
        let host = c.string(flexible)?;
        let port = c.i32()?;
        let after_port = c.pos;
        let rack = if version >= 1 { Rack::Reported(c.nullable_string(flexible)?) } else { Rack::Unreported };
        if flexible {
            c.skip_tags()?;
        }
        entries.push(Entry { node_id, host, port, rack, after_port: after_port..c.pos });
    }
    Some((start, entries, c.pos))
}

pub(super) fn rewrite(version: i16, frame: Bytes, adv: &dyn Advertise) -> Result<Rewritten, RewriteError> {
    let flexible = version >= 9;
    let (start, entries, end) = walk(&frame, version).ok_or_else(|| malformed(NAME, version, "truncated brokers"))?;
    if entries.is_empty() {
        return Ok(Rewritten::from(frame));
    }
    let mut splice = Splice::copying(&frame, start);
    put_array_len(splice.out(), entries.len(), flexible);
    for e in &entries {
        let a = adv.advertise(Named { node_id: e.node_id, host: e.host, port: e.port, rack: e.rack })?;
        let out = splice.out();
        out.put_i32(e.node_id);
        put_string(out, &a.host, flexible);
        out.put_i32(i32::from(a.port));
        out.put_slice(&frame[e.after_port.clone()]);
    }
    splice.finish(&frame, end, NAME, version)
}

/// The brokers and cluster id of a Metadata answer, for the gateway's own discovery.
pub fn read(frame: &[u8], version: i16) -> Result<(Vec<Address>, Option<String>), RewriteError> {
    let (_, entries, end) = walk(frame, version).ok_or_else(|| malformed(NAME, version, "truncated brokers"))?;
    let cluster_id = if version >= 2 {
        let mut c = Cursor::at(frame, end);
        c.nullable_string(version >= 9)
            .ok_or_else(|| malformed(NAME, version, "truncated cluster_id"))?
            .map(str::to_owned)
    } else {
        None
    };
    let brokers = entries
        .iter()
        .map(|e| Address {
            node_id: e.node_id,
            host: e.host.to_owned(),
            port: e.port,
            rack: match e.rack {
                Rack::Reported(r) => Some(r.map(str::to_owned)),
                Rack::Unreported => None,
            },
        })
        .collect();
    Ok((brokers, cluster_id))
}
