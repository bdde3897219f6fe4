//! KIP-951 node endpoints (Produce v10+, Fetch v16+): the top-level tagged field 0 naming the new
//! leaders of partitions that moved. It sits after the whole body — after every record, in Fetch —
//! so the response is walked by its lengths only; a response without endpoints (the usual case)
//! passes as the same bytes, and one with endpoints goes out as three pieces: a new size, the
//! original bytes up to the tags (not copied), the rewritten tags.

use bytes::{BufMut, Bytes, BytesMut};

use super::{Fault, Rewritten};
use crate::broker::{Advertise, Named, Rack};
use crate::wire::{self, Cursor, SIZE_LEN, put_string, put_uvarint};

const NODE_ENDPOINTS: u32 = 0;

/// Rewrites the node endpoints of a flexible response whose body `skip_body` walks past.
pub(super) fn rewrite<'f>(
    frame: &'f Bytes,
    skip_body: impl FnOnce(&mut Cursor<'f>) -> wire::Result<()>,
    names: &dyn Advertise,
) -> Result<Rewritten<'f>, Fault> {
    let mut c = Cursor::after_response_header(frame, 1)?;
    skip_body(&mut c)?;

    let tags_at = c.pos();
    let count = c.uvarint("tagged fields")?;
    let mut fields = Vec::new();
    for _ in 0..count {
        let tag = c.uvarint("tagged fields")?;
        let len = c.uvarint("tagged fields")? as usize;
        let start = c.pos();
        c.skip(len, "tagged fields")?;
        fields.push((tag, start..c.pos()));
    }
    if !fields.iter().any(|(tag, _)| *tag == NODE_ENDPOINTS) {
        return Ok(Rewritten::unchanged(frame));
    }

    let mut tags = BytesMut::new();
    let mut named = Vec::new();
    put_uvarint(&mut tags, count);
    for (tag, range) in fields {
        let data = match tag {
            NODE_ENDPOINTS => endpoints(&frame[range], names, &mut named)?,
            _ => frame.slice(range),
        };
        put_uvarint(&mut tags, tag);
        put_uvarint(&mut tags, data.len() as u32);
        tags.put_slice(&data);
    }
    // Bytes after the tags, as some brokers send, stay too.
    tags.put_slice(&frame[c.pos()..]);

    let body = frame.slice(SIZE_LEN..tags_at);
    let size = i32::try_from(body.len() + tags.len()).map_err(|_| Fault::TooLarge)?;
    Ok(Rewritten { pieces: vec![Bytes::copy_from_slice(&size.to_be_bytes()), body, tags.freeze()], named })
}

/// Rewrites the compact array of endpoints that is tag 0's value: node id, host, port, rack and
/// tagged fields each (the same schema in both APIs).
fn endpoints<'f>(data: &'f [u8], names: &dyn Advertise, named: &mut Vec<Named<'f>>) -> Result<Bytes, Fault> {
    let mut c = Cursor::at(data, 0);
    let count = c.compact_len("node_endpoints")?;
    let mut out = BytesMut::with_capacity(data.len() + 64 * count.min(1024));
    put_uvarint(&mut out, count as u32 + 1);
    for _ in 0..count {
        let node_id = c.i32("node_endpoints.node_id")?;
        let host = c.string(true, "node_endpoints.host")?;
        let port = c.i32("node_endpoints.port")?;
        let after_port = c.pos();
        let rack = c.nullable_string(true, "node_endpoints.rack")?;
        c.skip_tags("node_endpoints tagged fields")?;
        let endpoint = Named { node_id, host, port, rack: Rack::Reported(rack) };
        let advertised = names.advertise(&endpoint)?;
        out.put_i32(node_id);
        put_string(&mut out, &advertised.host, true);
        out.put_i32(i32::from(advertised.port));
        out.put_slice(&data[after_port..c.pos()]);
        named.push(endpoint);
    }
    out.put_slice(&data[c.pos()..]);
    Ok(out.freeze())
}
