//! FindCoordinator (key 10): the top-level `host/port` up to v3, `coordinators[]` (batched) from v4.
//!
//! An error answer carries node -1, an empty host and port -1; those stay as they are. From v4 the
//! old top-level fields must stay empty, so only the batched entries are touched.

use kafka_protocol::messages::FindCoordinatorResponse;

use super::{apply, Advertise, Named, Rack, Response};
use crate::topology::AdvertiseError;

impl Response for FindCoordinatorResponse {
    const NAME: &'static str = "FindCoordinator";
}

pub(super) fn rewrite(m: &mut FindCoordinatorResponse, version: i16, adv: &dyn Advertise) -> Result<(), AdvertiseError> {
    if version < 4 {
        if m.error_code == 0 && m.node_id.0 >= 0 {
            (m.host, m.port) = apply(adv, named(m.node_id.0, &m.host, m.port))?;
        }
        return Ok(());
    }
    for c in &mut m.coordinators {
        if c.error_code == 0 && c.node_id.0 >= 0 {
            (c.host, c.port) = apply(adv, named(c.node_id.0, &c.host, c.port))?;
        }
    }
    Ok(())
}

fn named(node_id: i32, host: &str, port: i32) -> Named<'_> {
    Named { node_id, host, port, rack: Rack::Unreported }
}
