//! Metadata (key 3), every version: `brokers[].host/port`. Racks come with v1+.

use kafka_protocol::messages::MetadataResponse;

use super::{apply, Advertise, Named, Rack, Response};
use crate::topology::AdvertiseError;

impl Response for MetadataResponse {
    const NAME: &'static str = "Metadata";
}

pub(super) fn rewrite(m: &mut MetadataResponse, version: i16, adv: &dyn Advertise) -> Result<(), AdvertiseError> {
    for b in &mut m.brokers {
        let rack = if version >= 1 { Rack::Reported(b.rack.as_deref()) } else { Rack::Unreported };
        (b.host, b.port) = apply(adv, Named { node_id: b.node_id.0, host: &b.host, port: b.port, rack })?;
    }
    Ok(())
}
