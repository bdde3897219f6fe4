//! FindCoordinator (key 10): the top-level `host/port` up to v3, `coordinators[]` (batched) from v4.
//!
//! An error answer carries node -1, an empty host and port -1; those stay as they are. From v4 the
//! old top-level fields stay empty, and only the batched entries are touched.

use bytes::{BufMut, Bytes};
use kafka_protocol::messages::FindCoordinatorResponse;
use kafka_protocol::protocol::HeaderVersion;

use super::{Fault, Patch, Response, Rewritten};
use crate::broker::{Advertise, Named, Rack};
use crate::wire::{Cursor, put_array_len, put_string};

pub(super) const NAME: &str = "FindCoordinator";

impl Response for FindCoordinatorResponse {
    const NAME: &'static str = NAME;
}

pub(super) fn rewrite<'f>(version: i16, frame: &'f Bytes, names: &dyn Advertise) -> Result<Rewritten<'f>, Fault> {
    let flexible = version >= 3;
    let mut c = Cursor::after_response_header(frame, FindCoordinatorResponse::header_version(version))?;
    if version >= 1 {
        c.skip(4, "throttle_time_ms")?;
    }
    if version < 4 {
        let error_code = c.i16("error_code")?;
        if version >= 1 {
            c.nullable_string(flexible, "error_message")?;
        }
        let node_id = c.i32("node_id")?;
        let host_at = c.pos();
        let host = c.string(flexible, "host")?;
        let port = c.i32("port")?;
        if error_code != 0 || node_id < 0 {
            return Ok(Rewritten::unchanged(frame));
        }
        let coordinator = Named { node_id, host, port, rack: Rack::Unreported };
        let advertised = names.advertise(&coordinator)?;
        let mut patch = Patch::copying(frame, host_at);
        put_string(patch.out(), &advertised.host, flexible);
        patch.out().put_i32(i32::from(advertised.port));
        return patch.finish(frame, c.pos(), vec![coordinator]);
    }
    let start = c.pos();
    let count = c.compact_len("coordinators")?;
    let mut patch = Patch::copying(frame, start);
    put_array_len(patch.out(), count, true);
    let mut named = Vec::new();
    for _ in 0..count {
        let key_at = c.pos();
        c.skip_compact("coordinators.key")?;
        let node_id = c.i32("coordinators.node_id")?;
        let host_at = c.pos();
        let host = c.string(true, "coordinators.host")?;
        let port = c.i32("coordinators.port")?;
        let after_port = c.pos();
        // error_code comes after the address: read the whole entry before deciding.
        let error_code = c.i16("coordinators.error_code")?;
        c.nullable_string(true, "coordinators.error_message")?;
        c.skip_tags("coordinators tagged fields")?;
        patch.out().put_slice(&frame[key_at..host_at]);
        if error_code == 0 && node_id >= 0 {
            let coordinator = Named { node_id, host, port, rack: Rack::Unreported };
            let advertised = names.advertise(&coordinator)?;
            put_string(patch.out(), &advertised.host, true);
            patch.out().put_i32(i32::from(advertised.port));
            named.push(coordinator);
        } else {
            patch.out().put_slice(&frame[host_at..after_port]);
        }
        patch.out().put_slice(&frame[after_port..c.pos()]);
    }
    patch.finish(frame, c.pos(), named)
}
