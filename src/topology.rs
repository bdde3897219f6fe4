//! Step 3 of a frame's journey: which broker is which — node id ↔ the upstream address the cluster
//! advertises ↔ the name and port a listener group shows for it.
//!
//! The map is filled by the gateway's own Metadata requests and by every response that names a
//! broker on its way to a client, so a broker that joins is known before any client hears of it.

use std::collections::{BTreeMap, BTreeSet};

use dashmap::DashMap;

use crate::config::{ConfigError, HostPort, ListenerGroup, PortError};
use crate::rewrite::{Advertised, Named, Rack};
use crate::template::{Inputs, RenderError};

/// A broker as the cluster itself describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub upstream: HostPort,
    pub rack: Option<String>,
}

/// Why a broker cannot be shown to clients. The response naming it is not forwarded.
#[derive(Debug, thiserror::Error)]
pub enum AdvertiseError {
    #[error(transparent)]
    Port(#[from] PortError),
    #[error("listener group {group}: {source}")]
    Render { group: String, source: RenderError },
    #[error("broker {node_id} is advertised at {host:?}:{port}, which is not an address")]
    BadUpstream { node_id: i32, host: String, port: i32 },
    #[error("broker {node_id}'s port collides: {source}")]
    Collision { node_id: i32, source: ConfigError },
    #[error("cannot listen on {addr} for broker {node_id} of listener group {group}: {source}")]
    Listen { group: String, node_id: i32, addr: String, source: std::io::Error },
}

/// What the gateway knows of the cluster's brokers.
#[derive(Debug, Default)]
pub struct Topology {
    brokers: DashMap<i32, Broker>,
}

impl Topology {
    /// Records a broker as a response or the gateway's own request named it. Returns true when
    /// the node id is new.
    pub fn observe(&self, named: Named<'_>) -> Result<bool, AdvertiseError> {
        let bad =
            || AdvertiseError::BadUpstream { node_id: named.node_id, host: named.host.to_owned(), port: named.port };
        let port = u16::try_from(named.port).ok().filter(|&p| p != 0).ok_or_else(bad)?;
        if named.host.is_empty() || named.node_id < 0 {
            return Err(bad());
        }
        let mut new = false;
        let mut entry = self.brokers.entry(named.node_id).or_insert_with(|| {
            new = true;
            Broker { upstream: HostPort { host: named.host.to_owned(), port }, rack: None }
        });
        if entry.upstream.host != named.host || entry.upstream.port != port {
            entry.upstream = HostPort { host: named.host.to_owned(), port };
        }
        if let Rack::Reported(rack) = named.rack {
            if entry.rack.as_deref() != rack {
                entry.rack = rack.map(str::to_owned);
            }
        }
        Ok(new)
    }

    pub fn upstream(&self, node_id: i32) -> Option<HostPort> {
        self.brokers.get(&node_id).map(|b| b.upstream.clone())
    }

    pub fn rack(&self, node_id: i32) -> Option<String> {
        self.brokers.get(&node_id).and_then(|b| b.rack.clone())
    }

    pub fn node_ids(&self) -> BTreeSet<i32> {
        self.brokers.iter().map(|e| *e.key()).collect()
    }

    pub fn snapshot(&self) -> BTreeMap<i32, Broker> {
        self.brokers.iter().map(|e| (*e.key(), e.value().clone())).collect()
    }
}

/// The address a listener group shows for a broker: its template with `{az}` and `{rack}` filled,
/// on the broker's listen port. Two gateways with one configuration always agree on it.
pub fn advertised_address(
    group: &ListenerGroup,
    node_id: i32,
    rack: Option<&str>,
) -> Result<Advertised, AdvertiseError> {
    let port = group.broker_port(node_id)?;
    let inputs = Inputs { node_id, az: group.az_of(node_id, rack), rack };
    let host = group
        .advertised
        .render_host(inputs)
        .map_err(|source| AdvertiseError::Render { group: group.name.clone(), source })?;
    Ok(Advertised { host, port })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const AWS: &str = r#"
        [upstream]
        bootstrap_servers = ["k:9092"]
        [listeners.tidb]
        bootstrap_port = 9092
        broker_port_base = 9092
        advertised = "b{node_id}.{az}.abc.aws.plc.tidbcloud.com:{port}"
        az_by_rack = { "us-west-2a" = "usw2-az1", "us-west-2c" = "usw2-az2", "us-west-2b" = "usw2-az3" }
    "#;

    fn named(node_id: i32, host: &str, rack: Rack<'static>) -> Named<'static> {
        Named { node_id, host: Box::leak(host.to_owned().into_boxed_str()), port: 9092, rack }
    }

    #[test]
    fn names_follow_the_rack_of_each_broker() {
        let config = Config::from_toml(AWS).unwrap();
        let g = &config.groups[0];
        let cases =
            [(1, "us-west-2a", "b1.usw2-az1"), (2, "us-west-2c", "b2.usw2-az2"), (3, "us-west-2b", "b3.usw2-az3")];
        for (node, rack, prefix) in cases {
            let a = advertised_address(g, node, Some(rack)).unwrap();
            assert_eq!(a.host, format!("{prefix}.abc.aws.plc.tidbcloud.com"));
            assert_eq!(a.port, 9092 + node as u16);
        }
    }

    #[test]
    fn an_unmapped_rack_without_default_is_an_error() {
        let config = Config::from_toml(AWS).unwrap();
        let err = advertised_address(&config.groups[0], 4, Some("us-west-2d")).unwrap_err();
        assert!(err.to_string().contains("broker 4 has no AZ"), "{err}");
        let err = advertised_address(&config.groups[0], 4, None).unwrap_err();
        assert!(matches!(err, AdvertiseError::Render { .. }), "{err}");
    }

    #[test]
    fn unreported_racks_keep_what_is_known() {
        let t = Topology::default();
        assert!(t.observe(named(1, "10.0.0.1", Rack::Reported(Some("us-west-2a")))).unwrap());
        assert!(!t.observe(named(1, "10.0.0.1", Rack::Unreported)).unwrap());
        assert_eq!(t.rack(1).as_deref(), Some("us-west-2a"));
        // A broker that moved: the newest address wins; a reported null rack clears it.
        t.observe(named(1, "10.0.0.9", Rack::Reported(None))).unwrap();
        assert_eq!(t.upstream(1).unwrap().to_string(), "10.0.0.9:9092");
        assert_eq!(t.rack(1), None);
    }

    #[test]
    fn nonsense_addresses_are_refused() {
        let t = Topology::default();
        assert!(t.observe(named(1, "", Rack::Unreported)).is_err());
        assert!(t.observe(Named { port: 0, ..named(1, "h", Rack::Unreported) }).is_err());
        assert!(t.observe(Named { port: 70000, ..named(1, "h", Rack::Unreported) }).is_err());
        assert!(t.observe(named(-1, "h", Rack::Unreported)).is_err());
        assert!(t.node_ids().is_empty());
    }
}
