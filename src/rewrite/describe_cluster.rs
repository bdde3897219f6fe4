//! DescribeCluster (key 60), v0-v2: `brokers[].host/port`, racks included — the answer admin tools
//! show, which other proxies leave with upstream addresses.

use kafka_protocol::messages::DescribeClusterResponse;

use super::{apply, Advertise, Named, Rack, Response};
use crate::topology::AdvertiseError;

impl Response for DescribeClusterResponse {
    const NAME: &'static str = "DescribeCluster";
}

pub(super) fn rewrite(m: &mut DescribeClusterResponse, adv: &dyn Advertise) -> Result<(), AdvertiseError> {
    for b in &mut m.brokers {
        let rack = Rack::Reported(b.rack.as_deref());
        (b.host, b.port) = apply(adv, Named { node_id: b.broker_id.0, host: &b.host, port: b.port, rack })?;
    }
    Ok(())
}
