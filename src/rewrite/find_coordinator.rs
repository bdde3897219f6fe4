//! FindCoordinator (key 10): the top-level `host/port` up to v3, `coordinators[]` (batched) from v4.
//!
//! An error answer carries node -1, an empty host and port -1; those stay as they are. From v4 the
//! old top-level fields stay empty, and only the batched entries are touched.

use bytes::{BufMut, Bytes};
use kafka_protocol::messages::FindCoordinatorResponse;
use kafka_protocol::protocol::HeaderVersion;

use super::walk::{Cursor, Splice, malformed, put_array_len, put_string};
use super::{Advertise, Named, Rack, Response, RewriteError, Rewritten};

const NAME: &str = "FindCoordinator";

impl Response for FindCoordinatorResponse {
    const NAME: &'static str = NAME;
}

pub(super) fn rewrite(version: i16, frame: Bytes, adv: &dyn Advertise) -> Result<Rewritten, RewriteError> {
    let bad = |what| malformed(NAME, version, what);
    let flexible = version >= 3;
    let mut c = Cursor::after_header(&frame, FindCoordinatorResponse::header_version(version))
        .ok_or_else(|| bad("truncated header"))?;
    if version >= 1 {
        c.skip(4).ok_or_else(|| bad("truncated throttle_time_ms"))?;
    }
    if version < 4 {
        let error_code = c.i16().ok_or_else(|| bad("truncated error_code"))?;
        if version >= 1 {
            c.nullable_string(flexible).ok_or_else(|| bad("truncated error_message"))?;
        }
        let node_id = c.i32().ok_or_else(|| bad("truncated node_id"))?;
        let host_at = c.pos;
        let (host, port) = (c.string(flexible), c.i32());
        let (Some(host), Some(port)) = (host, port) else { return Err(bad("truncated host/port")) };
        if error_code != 0 || node_id < 0 {
            return Ok(Rewritten::from(frame));
        }
        let a = adv.advertise(Named { node_id, host, port, rack: Rack::Unreported })?;
        let mut splice = Splice::copying(&frame, host_at);
        put_string(splice.out(), &a.host, flexible);
        splice.out().put_i32(i32::from(a.port));
        return splice.finish(&frame, c.pos, NAME, version);
    }
    let start = c.pos;
    let count = c.compact_len().ok_or_else(|| bad("truncated coordinators"))?;
    let mut splice = Splice::copying(&frame, start);
    put_array_len(splice.out(), count, true);
    for _ in 0..count {
        let key_at = c.pos;
        c.skip_compact().ok_or_else(|| bad("truncated key"))?;
        let node_id = c.i32().ok_or_else(|| bad("truncated node_id"))?;
        let host_at = c.pos;
        let (host, port) = (c.string(true), c.i32());
        let (Some(host), Some(port)) = (host, port) else { return Err(bad("truncated host/port")) };
        let after_port = c.pos;
        // error_code comes after the address: read the whole entry before deciding.
        let error_code = c.i16().ok_or_else(|| bad("truncated error_code"))?;
        c.nullable_string(true).ok_or_else(|| bad("truncated error_message"))?;
        c.skip_tags().ok_or_else(|| bad("truncated tags"))?;
        let out = splice.out();
        out.put_slice(&frame[key_at..host_at]);
        if error_code == 0 && node_id >= 0 {
            let a = adv.advertise(Named { node_id, host, port, rack: Rack::Unreported })?;
            let out = splice.out();
            put_string(out, &a.host, true);
            out.put_i32(i32::from(a.port));
        } else {
            out.put_slice(&frame[host_at..after_port]);
        }
        splice.out().put_slice(&frame[after_port..c.pos]);
    }
    splice.finish(&frame, c.pos, NAME, version)
}
