//! Produce (key 0) v10+: KIP-951 node endpoints. See [`super::endpoints`]; this file only knows how
//! to walk a Produce body, so that the usual answer, without endpoints, passes undecoded.

use bytes::Bytes;
use kafka_protocol::messages::ProduceResponse;
use kafka_protocol::messages::produce_response::NodeEndpoint;

use super::endpoints;
use super::walk::Cursor;
use super::{Advertise, Response, RewriteError, Rewritten};

impl Response for ProduceResponse {
    const NAME: &'static str = "Produce";
}

pub(super) fn rewrite(version: i16, frame: Bytes, adv: &dyn Advertise) -> Result<Rewritten, RewriteError> {
    endpoints::rewrite::<NodeEndpoint>(ProduceResponse::NAME, version, frame, |c| skip_body(c, version), adv)
}

/// Walks a v9+ (flexible) Produce response body up to its top-level tagged fields.
fn skip_body(c: &mut Cursor<'_>, version: i16) -> Option<()> {
    for _ in 0..c.compact_len()? {
        c.skip_topic(version >= 13)?;
        for _ in 0..c.compact_len()? {
            c.skip(4 + 2 + 8 + 8 + 8)?; // index, error, base offset, log append time, log start offset
            for _ in 0..c.compact_len()? {
                c.skip(4)?; // record error: batch index
                c.skip_compact()?; // its message
                c.skip_tags()?;
            }
            c.skip_compact()?; // error_message
            c.skip_tags()?; // current_leader
        }
        c.skip_tags()?;
    }
    c.skip(4) // throttle_time_ms
}
