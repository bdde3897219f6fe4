//! Fetch (key 1) v16+: KIP-951 node endpoints, after the records. See [`super::endpoints`]; this
//! file only knows how to walk a Fetch body without reading its records.

use bytes::Bytes;
use kafka_protocol::messages::FetchResponse;

use super::{Fault, Response, Rewritten, endpoints};
use crate::broker::Advertise;
use crate::wire::{self, Cursor};

pub(super) const NAME: &str = "Fetch";

/// Fetch is walked rather than decoded on the gateway's path; the trait serves tests and tools.
impl Response for FetchResponse {
    const NAME: &'static str = NAME;
}

pub(super) fn rewrite<'f>(version: i16, frame: &'f Bytes, names: &dyn Advertise) -> Result<Rewritten<'f>, Fault> {
    endpoints::rewrite_tagged(frame, |c| skip_body(c, version), names)
}

/// Walks a v12+ (flexible) Fetch response body up to its top-level tagged fields.
fn skip_body(c: &mut Cursor<'_>, version: i16) -> wire::Result<()> {
    c.skip(4 + 2 + 4, "throttle_time_ms, error_code, session_id")?;
    for _ in 0..c.compact_len("responses")? {
        // A topic by its 16-byte id from v13, by its name before.
        if version >= 13 {
            c.skip(16, "responses.topic_id")?
        } else {
            c.skip_compact("responses.topic")?
        }
        for _ in 0..c.compact_len("partitions")? {
            // partition, error, high watermark, last stable offset, log start offset
            c.skip(4 + 2 + 8 + 8 + 8, "partitions")?;
            for _ in 0..c.compact_len("aborted_transactions")? {
                c.skip(8 + 8, "aborted_transactions")?; // producer id, first offset
                c.skip_tags("aborted_transactions tagged fields")?;
            }
            c.skip(4, "partitions.preferred_read_replica")?;
            c.skip_compact("partitions.records")?; // only their length is read
            c.skip_tags("partitions tagged fields")?; // diverging_epoch, current_leader, snapshot_id
        }
        c.skip_tags("responses tagged fields")?;
    }
    Ok(())
}
