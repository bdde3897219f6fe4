//! ShareFetch (key 78) and ShareAcknowledge (key 79), the share-group APIs of KIP-932: their
//! `node_endpoints` name the leaders of partitions that moved, as KIP-951's do in Produce and Fetch.
//! See [`super::endpoints`]; this file only knows how to walk the two bodies without reading the
//! records of a ShareFetch answer. Both are flexible at every version; in v1 (Kafka 4.1, the only
//! version kafka-protocol 0.18 knows) `NodeEndpoints` is a regular field after `Responses`, not a
//! tagged one.

use bytes::Bytes;
use kafka_protocol::messages::{ShareAcknowledgeResponse, ShareFetchResponse};

use super::{Fault, Response, Rewritten, endpoints};
use crate::broker::Advertise;
use crate::wire::{self, Cursor};

pub(super) const FETCH: &str = "ShareFetch";
pub(super) const ACKNOWLEDGE: &str = "ShareAcknowledge";

/// Walked rather than decoded on the gateway's path; the trait serves tests and tools.
impl Response for ShareFetchResponse {
    const NAME: &'static str = FETCH;
}

impl Response for ShareAcknowledgeResponse {
    const NAME: &'static str = ACKNOWLEDGE;
}

pub(super) fn rewrite_fetch<'f>(version: i16, frame: &'f Bytes, names: &dyn Advertise) -> Result<Rewritten<'f>, Fault> {
    endpoints::rewrite_field(frame, |c| skip_fetch(c, version), names)
}

pub(super) fn rewrite_acknowledge<'f>(frame: &'f Bytes, names: &dyn Advertise) -> Result<Rewritten<'f>, Fault> {
    endpoints::rewrite_field(frame, skip_acknowledge, names)
}

/// Walks a ShareFetch body up to `node_endpoints`.
fn skip_fetch(c: &mut Cursor<'_>, version: i16) -> wire::Result<()> {
    c.skip(4 + 2, "throttle_time_ms, error_code")?;
    c.skip_compact("error_message")?;
    if version >= 1 {
        c.skip(4, "acquisition_lock_timeout_ms")?;
    }
    for _ in 0..c.compact_len("responses")? {
        c.skip(16, "responses.topic_id")?;
        for _ in 0..c.compact_len("partitions")? {
            c.skip(4 + 2, "partitions.partition_index, error_code")?;
            c.skip_compact("partitions.error_message")?;
            c.skip(2, "partitions.acknowledge_error_code")?;
            c.skip_compact("partitions.acknowledge_error_message")?;
            skip_leader(c)?;
            c.skip_compact("partitions.records")?; // only their length is read
            for _ in 0..c.compact_len("acquired_records")? {
                c.skip(8 + 8 + 2, "acquired_records")?; // first offset, last offset, delivery count
                c.skip_tags("acquired_records tagged fields")?;
            }
            c.skip_tags("partitions tagged fields")?;
        }
        c.skip_tags("responses tagged fields")?;
    }
    Ok(())
}

/// Walks a ShareAcknowledge body (the same at v0 and v1) up to `node_endpoints`.
fn skip_acknowledge(c: &mut Cursor<'_>) -> wire::Result<()> {
    c.skip(4 + 2, "throttle_time_ms, error_code")?;
    c.skip_compact("error_message")?;
    for _ in 0..c.compact_len("responses")? {
        c.skip(16, "responses.topic_id")?;
        for _ in 0..c.compact_len("partitions")? {
            c.skip(4 + 2, "partitions.partition_index, error_code")?;
            c.skip_compact("partitions.error_message")?;
            skip_leader(c)?;
            c.skip_tags("partitions tagged fields")?;
        }
        c.skip_tags("responses tagged fields")?;
    }
    Ok(())
}

/// `current_leader`: a struct (not a tagged field, unlike Fetch's) of leader id and epoch.
fn skip_leader(c: &mut Cursor<'_>) -> wire::Result<()> {
    c.skip(4 + 4, "partitions.current_leader")?;
    c.skip_tags("current_leader tagged fields")
}
