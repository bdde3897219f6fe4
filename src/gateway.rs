//! The running gateway, beside the data path: its listener groups, the ports it has open, what it
//! knows of the cluster, and how it learns more — from its own Metadata requests, and from every
//! response a session hands it ([`Learn`]) before the client reads the names in it. It answers
//! the admin endpoint ([`Observe`]): readiness, the live topology, the metrics.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::admin::Observe;
use crate::broker::{Named, Rack};
use crate::check::Report;
use crate::config::{Config, ListenerGroup};
use crate::listener;
use crate::metrics::{GroupCounters, Metrics};
use crate::readiness::{NotReady, Readiness};
use crate::record::Recorder;
use crate::rewrite::Caps;
use crate::session::{self, Limits};
use crate::tls::{Acceptor, Reload, TlsError};
use crate::topology::{GroupNames, Learn, LearnError, Topology};
use crate::upstream::{self, ClusterView, Dialer, Link, Target, UpstreamError};

/// How often TLS files are looked at for a rotation.
const TLS_CHECK: Duration = Duration::from_secs(5);

/// A failure to start: TLS material that does not load, or the bootstrap port, or a known broker's
/// port, could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr} (listeners.{group}.bootstrap_port): {source}")]
    Bootstrap { group: String, addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Broker(#[from] LearnError),
}

/// A listener group: its configuration, and what its sessions share.
struct Served {
    config: Arc<ListenerGroup>,
    sessions: Arc<session::Group>,
}

pub struct Gateway {
    config: Config,
    topology: Arc<Topology>,
    dialer: Arc<Dialer>,
    groups: Vec<Served>,
    /// Open listeners: (group name, target) → bound address.
    listeners: Mutex<HashMap<(String, Target), SocketAddr>>,
    /// Wakes the discovery loop before its interval, when a response names a broker nobody knows.
    refresh_now: Notify,
    shutdown: CancellationToken,
    /// None when the admin endpoint is off: nothing is counted then.
    metrics: Option<Arc<Metrics>>,
    readiness: Readiness,
    /// The cluster id and the server of the last discovery that succeeded.
    described: Mutex<Option<(Option<String>, String)>>,
}

impl Gateway {
    /// Opens the bootstrap ports, asks the cluster for its brokers once and opens theirs, then keeps
    /// discovering in the background. A cluster that does not answer yet is not a failure: the
    /// gateway serves and retries with backoff.
    pub async fn start(config: Config) -> Result<Arc<Self>, StartError> {
        let gateway = Self::new(config)?;
        gateway.open().await?;
        Ok(gateway)
    }

    /// The gateway, with nothing open yet: the admin endpoint can serve it (and say it is
    /// starting) before [`Gateway::open`] has reached the cluster. Fails if its TLS files cannot
    /// be loaded.
    pub fn new(config: Config) -> Result<Arc<Self>, StartError> {
        let link = Link::load(&config)?;
        if link.tls.as_ref().is_some_and(|tls| tls.insecure()) {
            warn!("upstream.tls.insecure_skip_verify is set: the brokers' certificates are not checked");
        }
        let acceptors = config
            .groups
            .iter()
            .map(|g| {
                let key = format!("listeners.{}.tls", g.name);
                g.tls.as_ref().map(|files| Acceptor::load(files, &key).map(Arc::new)).transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new_cyclic(|weak: &Weak<Self>| Self::build(config, link, acceptors, weak.clone())))
    }

    /// Opens the bootstrap ports, asks the cluster for its brokers once and opens theirs, then
    /// keeps discovering in the background (see [`Gateway::start`]).
    pub async fn open(self: &Arc<Self>) -> Result<(), StartError> {
        let gateway = self;
        for served in &gateway.groups {
            if let Some(port) = served.config.bootstrap_port {
                let addr = SocketAddr::new(served.config.bind, port);
                gateway.listen(served, Target::Bootstrap, addr).map_err(|source| StartError::Bootstrap {
                    group: served.config.name.clone(),
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
                    gateway.learn_one(&b.named(), None)?;
                }
            }
            Err(e) => warn!("cluster not reachable yet, serving and retrying: {e}"),
        }
        tokio::spawn(Arc::clone(gateway).discover());
        tokio::spawn(Arc::clone(gateway).watch_tls());
        Ok(())
    }

    fn build(config: Config, link: Link, acceptors: Vec<Option<Arc<Acceptor>>>, learner: Weak<Self>) -> Self {
        let topology = Arc::new(Topology::default());
        let dialer = Arc::new(Dialer::new(config.upstream.bootstrap_servers.clone(), Arc::clone(&topology), link));
        let recorder = config.record_dir.clone().map(|dir| Arc::new(Recorder::new(dir, config.record_per_version)));
        let limits = Limits {
            request: config.max_frame_bytes,
            response: config.max_response_bytes,
            splice_min: config.splice_min_bytes,
        };
        let metrics = config.admin.bind.is_some().then(Metrics::new);
        let groups = config
            .groups
            .iter()
            .zip(acceptors)
            .map(|(group, tls)| {
                let group = Arc::new(group.clone());
                let names = GroupNames { group: Arc::clone(&group), topology: Arc::clone(&topology) };
                let sessions = session::Group {
                    name: group.name.clone(),
                    names: Arc::new(names),
                    learner: learner.clone(),
                    dialer: Arc::clone(&dialer),
                    tls,
                    limits,
                    caps: Caps { fetch_max: config.fetch_max_version },
                    keepalive: config.tcp_keepalive,
                    recorder: recorder.clone(),
                    counters: metrics.as_ref().map_or_else(GroupCounters::off, |m| GroupCounters::new(m, &group.name)),
                };
                Served { config: group, sessions: Arc::new(sessions) }
            })
            .collect();
        Self {
            topology,
            dialer,
            groups,
            listeners: Mutex::new(HashMap::new()),
            refresh_now: Notify::new(),
            shutdown: CancellationToken::new(),
            readiness: Readiness::new(config.admin.ready_stale),
            metrics,
            described: Mutex::new(None),
            config,
        }
    }

    /// Readiness, which a drain turns false ([`Readiness::drain`]).
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// The metrics, when the admin endpoint is on (a reload reports to them: `Metrics::reloaded`).
    pub fn metrics(&self) -> Option<&Arc<Metrics>> {
        self.metrics.as_ref()
    }

    /// Stops accepting connections and discovering; open sessions end with the process.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// The addresses the gateway listens on, by group name and target.
    pub fn listening(&self) -> Vec<(String, Target, SocketAddr)> {
        let listeners = self.listeners.lock().expect("never poisoned");
        let mut all: Vec<_> = listeners.iter().map(|((g, t), a)| (g.clone(), *t, *a)).collect();
        all.sort();
        all
    }

    /// Asks the cluster for its brokers once (the caller learns them).
    pub async fn refresh(&self) -> Result<ClusterView, UpstreamError> {
        let view = upstream::describe_cluster(&self.dialer.candidates(), self.dialer.link()).await?;
        self.readiness.discovered();
        *self.described.lock().expect("never poisoned") = Some((view.cluster_id.clone(), view.answered_by.to_string()));
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
                    for e in &view.unusable {
                        warn!("{e}");
                    }
                    for b in &view.brokers {
                        if let Err(e) = self.learn_one(&b.named(), None) {
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

    /// Loads TLS certificates and keys again whenever their files change, so that a rotation needs no
    /// restart; files that do not load leave the previous ones serving.
    async fn watch_tls(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(TLS_CHECK) => {}
            }
            self.reload_tls();
        }
    }

    /// Looks at every TLS file now (the watch does every few seconds; a SIGHUP does too).
    pub fn reload_tls(&self) {
        let groups = self
            .groups
            .iter()
            .filter_map(|g| Some((g.sessions.tls.as_deref()?.key(), g.sessions.tls.as_deref()?.reload())));
        let upstream = self.dialer.link().tls.as_deref().map(|tls| ("upstream.tls", tls.reload()));
        for (key, outcome) in groups.chain(upstream) {
            match outcome {
                Reload::Unchanged => {}
                Reload::Loaded => info!("{key}: certificate files changed, loaded; new connections use them"),
                Reload::Refused(e) => {
                    error!("{key}: the changed files do not load, the previous ones still serve: {e}")
                }
            }
        }
    }

    /// Records a broker and opens its listener in every group. With `for_group`, an error of that
    /// group is returned and the others' are logged (they surface when those groups' clients ask);
    /// without, the first error is returned.
    fn learn_one(&self, named: &Named<'_>, for_group: Option<&str>) -> Result<(), LearnError> {
        let new = self.topology.observe(named)?;
        if new && named.rack == Rack::Unreported {
            // A broker first heard of in a response without racks: discovery fetches its rack.
            self.refresh_now.notify_one();
        }
        let mut result = Ok(());
        for served in &self.groups {
            if let Err(e) = self.open_broker(served, named.node_id) {
                match for_group {
                    None => return Err(e),
                    Some(name) if name == served.config.name => result = Err(e),
                    Some(_) => warn!("{e}"),
                }
            }
        }
        result
    }

    /// Opens broker `node_id`'s listener in a group, if not open yet.
    fn open_broker(&self, served: &Served, node_id: i32) -> Result<(), LearnError> {
        let group = &served.config;
        let target = Target::Broker(node_id);
        if self.listeners.lock().expect("never poisoned").contains_key(&(group.name.clone(), target)) {
            return Ok(());
        }
        let port = group.broker_port(node_id).map_err(crate::broker::NameError::from)?;
        let mut nodes = self.open_brokers();
        nodes.insert(node_id);
        self.config.check_ports(&nodes).map_err(|source| LearnError::Collision { node_id, source })?;
        let addr = SocketAddr::new(group.bind, port);
        self.listen(served, target, addr).map_err(|source| LearnError::Listen {
            group: group.name.clone(),
            node_id,
            addr,
            source,
        })
    }

    fn open_brokers(&self) -> BTreeSet<i32> {
        let listeners = self.listeners.lock().expect("never poisoned");
        listeners.keys().filter_map(|(_, t)| if let Target::Broker(n) = t { Some(*n) } else { None }).collect()
    }

    /// Binds and starts accepting; a second call for the same listener is a no-op.
    fn listen(&self, served: &Served, target: Target, addr: SocketAddr) -> std::io::Result<()> {
        let name = &served.config.name;
        let mut listeners = self.listeners.lock().expect("never poisoned");
        if listeners.contains_key(&(name.clone(), target)) {
            return Ok(());
        }
        let socket = listener::bind(addr)?;
        let bound = socket.local_addr()?;
        listeners.insert((name.clone(), target), bound);
        if let Some(metrics) = &self.metrics {
            metrics.listener(name, broker_of(target));
        }
        info!(group = %name, %target, addr = %bound, "listening");
        let stop = self.shutdown.child_token();
        tokio::spawn(listener::accept_loop(Arc::clone(&served.sessions), target, socket, stop));
        Ok(())
    }
}

/// A port's broker for metric labels: its node id, or None for the bootstrap port.
fn broker_of(target: Target) -> Option<i32> {
    match target {
        Target::Bootstrap => None,
        Target::Broker(n) => Some(n),
    }
}

impl Observe for Gateway {
    /// Discovery has succeeded, recently enough, the gateway is not draining, and every broker it
    /// knows has its listener in every group.
    fn readiness(&self) -> Result<(), NotReady> {
        self.readiness.check()?;
        let listeners = self.listeners.lock().expect("never poisoned");
        for node_id in self.topology.snapshot().into_keys() {
            for served in &self.groups {
                let group = &served.config.name;
                if !listeners.contains_key(&(group.clone(), Target::Broker(node_id))) {
                    return Err(NotReady::Unbound { group: group.clone(), node_id });
                }
            }
        }
        Ok(())
    }

    /// Every broker the gateway knows, per group, where it listens for it and how many clients
    /// are connected there; the problems are why it is not ready and any broker it cannot name.
    fn topology(&self) -> Report {
        let brokers = self.topology.snapshot();
        let known: Vec<_> = brokers.values().map(|b| (b.node_id, b.rack.clone(), Some(b))).collect();
        let mut rows = crate::check::rows(&self.config, &known);
        let listeners = self.listeners.lock().expect("never poisoned").clone();
        for row in &mut rows {
            let target = Target::Broker(row.node_id);
            row.listen = listeners.get(&(row.group.clone(), target)).copied();
            row.connections = self.metrics.as_ref().map(|m| m.open_connections(&row.group, broker_of(target)));
        }
        let mut problems: Vec<String> = rows.iter().filter_map(|r| r.advertised.clone().err()).collect();
        if let Err(e) = Observe::readiness(self) {
            problems.insert(0, format!("not ready: {e}"));
        }
        let described = self.described.lock().expect("never poisoned").clone();
        let (cluster_id, answered_by) = described.map_or((None, None), |(id, by)| (id, Some(by)));
        Report { cluster_id, answered_by, rows, problems }
    }

    fn metrics(&self) -> String {
        let Some(metrics) = &self.metrics else { return String::new() };
        let ready = Observe::readiness(self).is_ok();
        metrics.set_cluster(self.topology.snapshot().len(), self.readiness.discovery_age(), ready);
        metrics.render()
    }
}

impl Learn for Gateway {
    fn learn(&self, group: &str, brokers: &[Named<'_>]) -> Result<(), LearnError> {
        for named in brokers {
            self.learn_one(named, Some(group))?;
        }
        Ok(())
    }

    fn refresh_soon(&self) {
        self.refresh_now.notify_one();
    }
}
