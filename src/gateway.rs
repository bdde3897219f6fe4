//! The running gateway: the configuration, what it knows of the cluster, the listeners it has open,
//! and the loop that keeps asking the cluster for its brokers.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, HostPort};
use crate::listener;
use crate::record::Recorder;
use crate::rewrite::{Advertise, Advertised, Named, Rack};
use crate::topology::{AdvertiseError, Topology, advertised_address};
use crate::upstream::{self, ClusterView, UpstreamError};

/// What a listener's connections reach.
/// Ordered bootstrap first, then brokers by node id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// Any reachable bootstrap server.
    Bootstrap,
    /// One broker, by node id.
    Broker(i32),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Bootstrap => f.write_str("bootstrap"),
            Target::Broker(n) => write!(f, "broker {n}"),
        }
    }
}

/// A failure to start: the bootstrap port, or a known broker's port, could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} (listeners.{group}.bootstrap_port): {source}")]
    Bootstrap { group: String, addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Broker(#[from] AdvertiseError),
}

pub struct Gateway {
    pub config: Config,
    pub topology: Topology,
    /// Open listeners: (group index, target) → bound address.
    listeners: Mutex<HashMap<(usize, Target), SocketAddr>>,
    /// Where the next bootstrap connection starts trying, so connections spread over the servers.
    bootstrap_cursor: AtomicUsize,
    /// Wakes the discovery loop before its interval, when a response names a broker nobody knows.
    refresh_now: Notify,
    shutdown: CancellationToken,
    pub recorder: Option<Recorder>,
}

impl Gateway {
    /// Opens the bootstrap ports, asks the cluster for its brokers once and opens theirs, then keeps
    /// discovering in the background. A cluster that does not answer yet is not a failure: the
    /// gateway serves and retries with backoff.
    pub async fn start(config: Config) -> Result<Arc<Self>, StartError> {
        let recorder = config.record_dir.clone().map(|dir| Recorder::new(dir, config.record_per_version));
        let gateway = Arc::new(Self {
            recorder,
            config,
            topology: Topology::default(),
            listeners: Mutex::new(HashMap::new()),
            bootstrap_cursor: AtomicUsize::new(0),
            refresh_now: Notify::new(),
            shutdown: CancellationToken::new(),
        });
        for (index, group) in gateway.config.groups.iter().enumerate() {
            if let Some(port) = group.bootstrap_port {
                let addr = SocketAddr::new(group.bind, port);
                gateway.listen(index, Target::Bootstrap, addr).map_err(|source| StartError::Bootstrap {
                    group: group.name.clone(),
                    addr,
                    source,
                })?;
            }
        }
        match gateway.refresh().await {
            Ok(view) => {
                info!(cluster = ?view.cluster_id, brokers = view.brokers.len(), via = %view.answered_by, "cluster discovered");
                // At start a broker that cannot get its port is a configuration error worth stopping for.
                for b in &view.brokers {
                    gateway.learn(b.named(), None)?;
                }
            }
            Err(e) => warn!("cluster not reachable yet, serving and retrying: {e}"),
        }
        tokio::spawn(Arc::clone(&gateway).discover());
        Ok(gateway)
    }

    /// Stops accepting connections and discovering; open sessions end with the process.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    pub(crate) fn cancelled(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// The addresses the gateway listens on, by group name and target.
    pub fn listening(&self) -> Vec<(String, Target, SocketAddr)> {
        let mut all: Vec<_> = self
            .listeners
            .lock()
            .expect("never poisoned")
            .iter()
            .map(|(&(g, t), &a)| (self.config.groups[g].name.clone(), t, a))
            .collect();
        all.sort();
        all
    }

    /// Connects to what `target` reaches.
    pub async fn dial(&self, target: Target) -> Result<TcpStream, UpstreamError> {
        let (limit, keepalive) = (self.config.upstream.connect_timeout, self.config.tcp_keepalive);
        match target {
            Target::Broker(node_id) => {
                let addr = self
                    .topology
                    .upstream(node_id)
                    .ok_or_else(|| UpstreamError::NoneAnswered(format!("broker {node_id} is not known")))?;
                let stream = upstream::connect(&addr, limit, keepalive).await?;
                tracing::debug!(node_id, upstream = %addr, "connected to broker");
                Ok(stream)
            }
            Target::Bootstrap => {
                let mut candidates = self.bootstrap_candidates();
                let start = self.bootstrap_cursor.fetch_add(1, Ordering::Relaxed)
                    % self.config.upstream.bootstrap_servers.len();
                candidates[..self.config.upstream.bootstrap_servers.len()].rotate_left(start);
                let mut failures = Vec::new();
                for addr in &candidates {
                    match upstream::connect(addr, limit, keepalive).await {
                        Ok(stream) => {
                            tracing::debug!(upstream = %addr, "connected to bootstrap server");
                            return Ok(stream);
                        }
                        Err(e) => failures.push(e.to_string()),
                    }
                }
                Err(UpstreamError::NoneAnswered(failures.join("; ")))
            }
        }
    }

    /// The configured bootstrap servers, then every known broker not among them.
    fn bootstrap_candidates(&self) -> Vec<HostPort> {
        let mut all = self.config.upstream.bootstrap_servers.clone();
        for broker in self.topology.snapshot().into_values() {
            if !all.contains(&broker.upstream) {
                all.push(broker.upstream);
            }
        }
        all
    }

    /// Asks the cluster for its brokers once (the caller records them).
    pub async fn refresh(&self) -> Result<ClusterView, UpstreamError> {
        let view =
            upstream::describe_cluster(&self.bootstrap_candidates(), self.config.upstream.connect_timeout).await?;
        Ok(view)
    }

    /// Rediscovers the cluster every `metadata_refresh`, sooner when asked, with backoff on failure.
    async fn discover(self: Arc<Self>) {
        let interval = self.config.upstream.metadata_refresh;
        let mut wait = interval;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                _ = self.refresh_now.notified() => {}
            }
            wait = match self.refresh().await {
                Ok(view) => {
                    for b in &view.brokers {
                        if let Err(e) = self.learn(b.named(), None) {
                            warn!("broker {} cannot be served: {e}", b.node_id);
                        }
                    }
                    interval
                }
                Err(e) => {
                    warn!("cluster discovery failed: {e}");
                    if wait >= interval { Duration::from_secs(1) } else { (wait * 2).min(interval) }
                }
            };
        }
    }

    /// Records a broker and opens its listener in every group. An error for `for_group` is returned,
    /// errors for other groups are logged: they surface when those groups' clients ask.
    fn learn(self: &Arc<Self>, named: Named<'_>, for_group: Option<usize>) -> Result<(), AdvertiseError> {
        self.topology.observe(named)?;
        let mut result = Ok(());
        for index in 0..self.config.groups.len() {
            if let Err(e) = self.open_broker(index, named.node_id) {
                match for_group {
                    Some(g) if g == index => result = Err(e),
                    // At start (no group asking), every failure is the caller's.
                    None => return Err(e),
                    Some(_) => warn!("{e}"),
                }
            }
        }
        result
    }

    /// Opens broker `node_id`'s listener in group `index`, if not open yet.
    fn open_broker(self: &Arc<Self>, index: usize, node_id: i32) -> Result<(), AdvertiseError> {
        let target = Target::Broker(node_id);
        if self.listeners.lock().expect("never poisoned").contains_key(&(index, target)) {
            return Ok(());
        }
        let group = &self.config.groups[index];
        let port = group.broker_port(node_id)?;
        let mut nodes: BTreeSet<i32> = self.open_brokers();
        nodes.insert(node_id);
        self.config.check_ports(&nodes).map_err(|source| AdvertiseError::Collision { node_id, source })?;
        let addr = SocketAddr::new(group.bind, port);
        self.listen(index, target, addr).map_err(|source| AdvertiseError::Listen {
            group: group.name.clone(),
            node_id,
            addr: addr.to_string(),
            source,
        })
    }

    fn open_brokers(&self) -> BTreeSet<i32> {
        let listeners = self.listeners.lock().expect("never poisoned");
        listeners.keys().filter_map(|(_, t)| if let Target::Broker(n) = t { Some(*n) } else { None }).collect()
    }

    /// Binds and starts accepting; a second call for the same listener is a no-op.
    fn listen(self: &Arc<Self>, index: usize, target: Target, addr: SocketAddr) -> std::io::Result<()> {
        let mut listeners = self.listeners.lock().expect("never poisoned");
        if listeners.contains_key(&(index, target)) {
            return Ok(());
        }
        let socket = listener::bind(addr)?;
        let bound = socket.local_addr()?;
        listeners.insert((index, target), bound);
        info!(group = %self.config.groups[index].name, %target, addr = %bound, "listening");
        tokio::spawn(listener::accept_loop(Arc::clone(self), index, target, socket));
        Ok(())
    }

    /// The [`Advertise`] of one listener group, for its sessions.
    pub fn advertiser(self: &Arc<Self>, group: usize) -> GroupAdvertiser {
        GroupAdvertiser { gateway: Arc::clone(self), group }
    }
}

/// Names brokers as one listener group shows them, learning each broker on the way.
pub struct GroupAdvertiser {
    gateway: Arc<Gateway>,
    group: usize,
}

impl Advertise for GroupAdvertiser {
    fn advertise(&self, named: Named<'_>) -> Result<Advertised, AdvertiseError> {
        let gateway = &self.gateway;
        let known = gateway.topology.upstream(named.node_id).is_some();
        gateway.learn(named, Some(self.group))?;
        // Responses without racks (FindCoordinator, Metadata v0) rely on what discovery learned.
        let rack = match named.rack {
            Rack::Reported(rack) => rack.map(str::to_owned),
            Rack::Unreported => {
                if !known {
                    // A broker first heard of here: have discovery fetch its rack for the retry.
                    gateway.refresh_now.notify_one();
                }
                gateway.topology.rack(named.node_id)
            }
        };
        advertised_address(&gateway.config.groups[self.group], named.node_id, rack.as_deref())
    }

    fn racks(&self) -> std::collections::BTreeMap<i32, String> {
        let brokers = self.gateway.topology.snapshot();
        brokers.into_iter().filter_map(|(n, b)| Some((n, b.rack?))).collect()
    }
}
