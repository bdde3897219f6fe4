//! KIP-951 node endpoints (Produce v10+, Fetch v16+): the top-level tagged field 0 naming the new
//! leaders of partitions that moved. It sits after the whole body — after every record, in Fetch —
//! so the response is walked by its lengths only; a response without endpoints (the usual case)
//! passes as the same bytes, and one with endpoints goes out as three pieces: a new size, the
//! original bytes up to the tags (not copied), the rewritten tags.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{fetch_response, produce_response};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::walk::{Cursor, put_uvarint};
use super::{Advertise, Named, Rack, RewriteError, Rewritten};
use crate::frame::SIZE_LEN;

const NODE_ENDPOINTS: u32 = 0;

/// A node endpoint of either API (the two schemas are the same).
pub(super) trait Endpoint: Decodable + Encodable {
    fn named(&self) -> Named<'_>;
    fn set(&mut self, host: StrBytes, port: i32);
}

macro_rules! endpoint {
    ($t:ty) => {
        impl Endpoint for $t {
            fn named(&self) -> Named<'_> {
                Named {
                    node_id: self.node_id.0,
                    host: &self.host,
                    port: self.port,
                    rack: Rack::Reported(self.rack.as_deref()),
                }
            }
            fn set(&mut self, host: StrBytes, port: i32) {
                (self.host, self.port) = (host, port);
            }
        }
    };
}
endpoint!(fetch_response::NodeEndpoint);
endpoint!(produce_response::NodeEndpoint);

/// Rewrites the node endpoints of a flexible response whose body `skip_body` walks past.
pub(super) fn rewrite<E: Endpoint>(
    api: &'static str,
    version: i16,
    frame: Bytes,
    skip_body: impl FnOnce(&mut Cursor<'_>) -> Option<()>,
    adv: &dyn Advertise,
) -> Result<Rewritten, RewriteError> {
    let malformed = |reason: &str| RewriteError::Decode { api, version, source: anyhow::anyhow!("{reason}") };
    let mut c = Cursor::after_header(&frame, 1).ok_or_else(|| malformed("truncated header"))?;
    skip_body(&mut c).ok_or_else(|| malformed("truncated or malformed body"))?;

    let tags_at = c.pos;
    let count = c.uvarint().ok_or_else(|| malformed("truncated tagged fields"))?;
    let mut fields = Vec::new();
    for _ in 0..count {
        let tag = c.uvarint().ok_or_else(|| malformed("truncated tag"))?;
        let len = c.uvarint().ok_or_else(|| malformed("truncated tag length"))? as usize;
        let start = c.pos;
        c.skip(len).ok_or_else(|| malformed("a tag runs past the frame"))?;
        fields.push((tag, frame.slice(start..c.pos)));
    }
    if !fields.iter().any(|(tag, _)| *tag == NODE_ENDPOINTS) {
        return Ok(Rewritten::from(frame));
    }

    let mut tags = BytesMut::new();
    put_uvarint(&mut tags, count);
    for (tag, data) in fields {
        let data = if tag == NODE_ENDPOINTS { endpoints::<E>(api, version, data, adv)? } else { data };
        put_uvarint(&mut tags, tag);
        put_uvarint(&mut tags, data.len() as u32);
        tags.put_slice(&data);
    }
    // Bytes after the tags, as some brokers send, stay too.
    tags.put_slice(&frame[c.pos..]);

    let body = frame.slice(SIZE_LEN..tags_at);
    let size =
        i32::try_from(body.len() + tags.len()).map_err(|e| RewriteError::Encode { api, version, source: e.into() })?;
    Ok(Rewritten::from(vec![Bytes::copy_from_slice(&size.to_be_bytes()), body, tags.freeze()]))
}

/// Rewrites the compact array of endpoints that is tag 0's value.
fn endpoints<E: Endpoint>(
    api: &'static str,
    version: i16,
    data: Bytes,
    adv: &dyn Advertise,
) -> Result<Bytes, RewriteError> {
    let decode_err = |source| RewriteError::Decode { api, version, source };
    let mut c = Cursor::at(&data, 0);
    let count = c.compact_len().ok_or_else(|| decode_err(anyhow::anyhow!("truncated node_endpoints")))?;
    let mut rest = data.slice(c.pos..);
    let mut out = BytesMut::with_capacity(data.len() + 64 * count.min(1024));
    put_uvarint(&mut out, count as u32 + 1);
    for _ in 0..count {
        let mut endpoint = E::decode(&mut rest, version).map_err(decode_err)?;
        let a = adv.advertise(endpoint.named())?;
        endpoint.set(StrBytes::from_string(a.host), i32::from(a.port));
        endpoint.encode(&mut out, version).map_err(|source| RewriteError::Encode { api, version, source })?;
    }
    out.put_slice(&rest);
    Ok(out.freeze())
}
