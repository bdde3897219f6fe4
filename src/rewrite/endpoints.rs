//! KIP-951 node endpoints, naming the new leaders of partitions that moved: the top-level tagged
//! field 0 of Produce v10+ and Fetch v16+, and a regular field of ShareFetch and ShareAcknowledge
//! (KIP-932), after the responses there too. They sit after the whole body — after every record, in
//! Fetch and ShareFetch — so the response is walked by its lengths only; a response without
//! endpoints (the usual case) passes as the same bytes, and one with endpoints goes out as three
//! pieces: a new size, the original bytes up to the endpoints (not copied), the rewritten rest.

use bytes::{BufMut, Bytes, BytesMut};

use super::{Fault, Rewritten};
use crate::broker::{Advertise, Named, Rack};
use crate::wire::{self, Cursor, SIZE_LEN, put_string, put_uvarint};

const NODE_ENDPOINTS: u32 = 0;

/// Rewrites the node endpoints in the top-level tagged fields of a flexible response whose body
/// `skip_body` walks past (Produce, Fetch).
pub(super) fn rewrite_tagged<'f>(
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
            NODE_ENDPOINTS => {
                let data = &frame[range];
                let (mut out, end) = endpoints(data, names, &mut named)?;
                out.put_slice(&data[end..]);
                out.freeze()
            }
            _ => frame.slice(range),
        };
        put_uvarint(&mut tags, tag);
        put_uvarint(&mut tags, data.len() as u32);
        tags.put_slice(&data);
    }
    // Bytes after the tags, as some brokers send, stay too.
    tags.put_slice(&frame[c.pos()..]);

    around(frame, tags_at, tags.freeze(), named)
}

/// Rewrites the node endpoints that are a regular field right after the body `skip_body` walks past
/// (ShareFetch, ShareAcknowledge: `NodeEndpoints` is not tagged there, and ends with the top-level
/// tagged fields, which pass as they were).
pub(super) fn rewrite_field<'f>(
    frame: &'f Bytes,
    skip_body: impl FnOnce(&mut Cursor<'f>) -> wire::Result<()>,
    names: &dyn Advertise,
) -> Result<Rewritten<'f>, Fault> {
    let mut c = Cursor::after_response_header(frame, 1)?;
    skip_body(&mut c)?;
    let at = c.pos();
    if c.compact_len("node_endpoints")? == 0 {
        return Ok(Rewritten::unchanged(frame));
    }
    let mut named = Vec::new();
    let (mut rest, end) = endpoints(&frame[at..], names, &mut named)?;
    // The top-level tags are read too, so that a cut answer is an error here as in the others.
    let mut tags = Cursor::at(frame, at + end);
    tags.skip_tags("tagged fields")?;
    rest.put_slice(&frame[at + end..]);
    around(frame, at, rest.freeze(), named)
}

/// The frame as three pieces: a new size, the original bytes from after the size up to `at` (the
/// same memory), and `rest` in place of everything after `at`.
fn around<'f>(frame: &Bytes, at: usize, rest: Bytes, named: Vec<Named<'f>>) -> Result<Rewritten<'f>, Fault> {
    let body = frame.slice(SIZE_LEN..at);
    let size = i32::try_from(body.len() + rest.len()).map_err(|_| Fault::TooLarge)?;
    Ok(Rewritten { pieces: vec![Bytes::copy_from_slice(&size.to_be_bytes()), body, rest], named })
}

/// Rewrites the compact array of endpoints at the start of `data`: node id, host, port, rack and
/// tagged fields each (the same schema in all four APIs). Returns the rewritten array and where the
/// original ends in `data`.
fn endpoints<'f>(
    data: &'f [u8],
    names: &dyn Advertise,
    named: &mut Vec<Named<'f>>,
) -> Result<(BytesMut, usize), Fault> {
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
    Ok((out, c.pos()))
}
