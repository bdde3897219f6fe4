//! Produce (key 0) v10+: KIP-951 node endpoints. See [`super::endpoints`]; this file only knows how
//! to walk a Produce body, so that the usual answer, without endpoints, passes undecoded.

use bytes::Bytes;
use kafka_protocol::messages::ProduceResponse;

use super::{Fault, Response, Rewritten, endpoints};
use crate::broker::Advertise;
use crate::wire::{self, Cursor};

pub(super) const NAME: &str = "Produce";

impl Response for ProduceResponse {
    const NAME: &'static str = NAME;
}

pub(super) fn rewrite<'f>(version: i16, frame: &'f Bytes, names: &dyn Advertise) -> Result<Rewritten<'f>, Fault> {
    endpoints::rewrite_tagged(frame, |c| skip_body(c, version), names)
}

/// Walks a v9+ (flexible) Produce response body up to its top-level tagged fields.
fn skip_body(c: &mut Cursor<'_>, version: i16) -> wire::Result<()> {
    for _ in 0..c.compact_len("responses")? {
        // A topic by its 16-byte id from v13, by its name before.
        if version >= 13 {
            c.skip(16, "responses.topic_id")?
        } else {
            c.skip_compact("responses.name")?
        }
        for _ in 0..c.compact_len("partition_responses")? {
            // index, error, base offset, log append time, log start offset
            c.skip(4 + 2 + 8 + 8 + 8, "partition_responses")?;
            for _ in 0..c.compact_len("record_errors")? {
                c.skip(4, "record_errors.batch_index")?;
                c.skip_compact("record_errors.batch_index_error_message")?;
                c.skip_tags("record_errors tagged fields")?;
            }
            c.skip_compact("partition_responses.error_message")?;
            c.skip_tags("partition_responses tagged fields")?; // current_leader
        }
        c.skip_tags("responses tagged fields")?;
    }
    c.skip(4, "throttle_time_ms")
}
