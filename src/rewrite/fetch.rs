//! Fetch (key 1) v16+: KIP-951 node endpoints, after the records. See [`super::endpoints`]; this
//! file only knows how to walk a Fetch body without reading its records.

use bytes::Bytes;
use kafka_protocol::messages::FetchResponse;
use kafka_protocol::messages::fetch_response::NodeEndpoint;

use super::endpoints;
use super::walk::Cursor;
use super::{Advertise, Response, RewriteError, Rewritten};

/// Fetch is walked rather than decoded on the gateway's path; the trait serves tests and tools.
impl Response for FetchResponse {
    const NAME: &'static str = "Fetch";
}

pub(super) fn rewrite(version: i16, frame: Bytes, adv: &dyn Advertise) -> Result<Rewritten, RewriteError> {
    endpoints::rewrite::<NodeEndpoint>(FetchResponse::NAME, version, frame, |c| skip_body(c, version), adv)
}

/// Walks a v12+ (flexible) Fetch response body up to its top-level tagged fields.
fn skip_body(c: &mut Cursor<'_>, version: i16) -> Option<()> {
    c.skip(4 + 2 + 4)?; // throttle_time_ms, error_code, session_id
    for _ in 0..c.compact_len()? {
        c.skip_topic(version >= 13)?;
        for _ in 0..c.compact_len()? {
            c.skip(4 + 2 + 8 + 8 + 8)?; // partition, error, high watermark, last stable, log start
            for _ in 0..c.compact_len()? {
                c.skip(8 + 8)?; // aborted transaction: producer id, first offset
                c.skip_tags()?;
            }
            c.skip(4)?; // preferred_read_replica
            c.skip_compact()?; // records: only their length is read
            c.skip_tags()?; // diverging_epoch, current_leader, snapshot_id
        }
        c.skip_tags()?;
    }
    Some(())
}
