//! What the gateway knows of the cluster: node id ↔ the upstream address the cluster advertises ↔ the
//! name and port each listener group shows for it, and [`Learn`], the step by which a session tells
//! the gateway of the brokers a response named before the client reads their names.
//!
//! The map is filled by the gateway's own Metadata requests and by every response that names a
//! broker on its way to a client, so a broker that joins is known before any client hears of it.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use dashmap::DashMap;

use crate::broker::{Advertise, Broker, HostPort, NameError, Named, Rack};
use crate::config::{ConfigError, ListenerGroup};

/// The brokers the gateway knows, by node id.
#[derive(Debug, Default)]
pub struct Topology {
    brokers: DashMap<i32, Broker>,
}

impl Topology {
    /// Records a broker as a response or the gateway's own request named it. Returns true when
    /// the node id is new.
    pub fn observe(&self, named: &Named<'_>) -> Result<bool, NameError> {
        let upstream = named.upstream()?;
        let mut new = false;
        let mut entry = self.brokers.entry(named.node_id).or_insert_with(|| {
            new = true;
            Broker { node_id: named.node_id, upstream: upstream.clone(), rack: None }
        });
        if entry.upstream != upstream {
            entry.upstream = upstream;
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

    pub fn contains(&self, node_id: i32) -> bool {
        self.brokers.contains_key(&node_id)
    }

    /// A broker that has left the cluster.
    pub fn forget(&self, node_id: i32) {
        self.brokers.remove(&node_id);
    }

    /// Every known broker, by node id.
    pub fn snapshot(&self) -> BTreeMap<i32, Broker> {
        self.brokers.iter().map(|e| (*e.key(), e.value().clone())).collect()
    }
}

/// Names brokers as one listener group shows them: its template, with the racks that responses
/// without rack fields (FindCoordinator, Metadata v0) leave out taken from what the gateway knows.
/// A reload that changes the template or the AZ maps replaces the group here, so that the next
/// answer on every open connection carries the new names.
pub struct GroupNames {
    group: RwLock<Arc<ListenerGroup>>,
    topology: Arc<Topology>,
}

impl GroupNames {
    pub fn new(group: Arc<ListenerGroup>, topology: Arc<Topology>) -> Self {
        Self { group: RwLock::new(group), topology }
    }

    pub fn set(&self, group: Arc<ListenerGroup>) {
        *self.group.write().unwrap_or_else(|p| p.into_inner()) = group;
    }
}

impl Advertise for GroupNames {
    fn advertise(&self, broker: &Named<'_>) -> Result<HostPort, NameError> {
        let known;
        let rack = match broker.rack {
            Rack::Reported(rack) => rack,
            Rack::Unreported => {
                known = self.topology.rack(broker.node_id);
                known.as_deref()
            }
        };
        let group = Arc::clone(&self.group.read().unwrap_or_else(|p| p.into_inner()));
        group.advertised(broker.node_id, rack)
    }

    fn racks(&self) -> BTreeMap<i32, String> {
        self.topology.snapshot().into_iter().filter_map(|(n, b)| Some((n, b.rack?))).collect()
    }
}

/// The gateway's side of discovery from responses: a session hands it every broker a response
/// named, and forwards the response only once their listeners are open.
pub trait Learn: Send + Sync {
    /// Records `brokers` and opens their listeners in every group. An error about the session's
    /// own `group` is returned; errors about other groups are logged where they happen.
    fn learn(&self, group: &str, brokers: &[Named<'_>]) -> Result<(), LearnError>;

    /// A response named a broker the group could not name (no rack known yet, say): ask the
    /// cluster again soon, so that the client's retry finds it.
    fn refresh_soon(&self);
}

/// Why a broker a response named cannot be served; the response is not forwarded.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("broker {node_id}'s port collides: {source}")]
    Collision { node_id: i32, source: ConfigError },
    #[error("cannot listen on {addr} for broker {node_id} of listener group {group}: {source}")]
    Listen { group: String, node_id: i32, addr: std::net::SocketAddr, source: std::io::Error },
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

    fn named(node_id: i32, host: &'static str, rack: Rack<'static>) -> Named<'static> {
        Named { node_id, host, port: 9092, rack }
    }

    #[test]
    fn names_follow_the_rack_of_each_broker() {
        let config = Config::from_toml(AWS).unwrap();
        let g = &config.groups[0];
        let cases =
            [(1, "us-west-2a", "b1.usw2-az1"), (2, "us-west-2c", "b2.usw2-az2"), (3, "us-west-2b", "b3.usw2-az3")];
        for (node, rack, prefix) in cases {
            let a = g.advertised(node, Some(rack)).unwrap();
            assert_eq!(a.host, format!("{prefix}.abc.aws.plc.tidbcloud.com"));
            assert_eq!(a.port, 9092 + node as u16);
        }
    }

    #[test]
    fn an_unmapped_rack_without_default_is_an_error() {
        let config = Config::from_toml(AWS).unwrap();
        let err = config.groups[0].advertised(4, Some("us-west-2d")).unwrap_err();
        assert!(err.to_string().contains("broker 4 has no AZ"), "{err}");
        let err = config.groups[0].advertised(4, None).unwrap_err();
        assert!(matches!(err, NameError::Render { .. }), "{err}");
    }

    #[test]
    fn responses_without_racks_are_named_with_the_racks_discovery_learned() {
        let config = Config::from_toml(AWS).unwrap();
        let topology = Arc::new(Topology::default());
        let names = GroupNames::new(Arc::new(config.groups[0].clone()), Arc::clone(&topology));
        let coordinator = named(2, "10.0.0.2", Rack::Unreported);
        assert!(names.advertise(&coordinator).is_err(), "no rack known yet");
        topology.observe(&named(2, "10.0.0.2", Rack::Reported(Some("us-west-2c")))).unwrap();
        assert_eq!(names.advertise(&coordinator).unwrap().host, "b2.usw2-az2.abc.aws.plc.tidbcloud.com");
        // A response that reports no rack is named without one, whatever is known.
        assert!(names.advertise(&named(2, "10.0.0.2", Rack::Reported(None))).is_err());
    }

    #[test]
    fn unreported_racks_keep_what_is_known() {
        let t = Topology::default();
        assert!(t.observe(&named(1, "10.0.0.1", Rack::Reported(Some("us-west-2a")))).unwrap());
        assert!(!t.observe(&named(1, "10.0.0.1", Rack::Unreported)).unwrap());
        assert_eq!(t.rack(1).as_deref(), Some("us-west-2a"));
        // A broker that moved: the newest address wins; a reported null rack clears it.
        t.observe(&named(1, "10.0.0.9", Rack::Reported(None))).unwrap();
        assert_eq!(t.upstream(1).unwrap().to_string(), "10.0.0.9:9092");
        assert_eq!(t.rack(1), None);
    }

    #[test]
    fn nonsense_addresses_are_refused() {
        let t = Topology::default();
        assert!(t.observe(&named(1, "", Rack::Unreported)).is_err());
        assert!(t.observe(&Named { port: 0, ..named(1, "h", Rack::Unreported) }).is_err());
        assert!(t.observe(&named(-1, "h", Rack::Unreported)).is_err());
        assert!(t.snapshot().is_empty());
    }
}
