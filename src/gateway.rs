//! The running gateway, beside the data path: its listener groups, the ports it has open, what it
//! knows of the cluster, and how it learns more — from its own Metadata requests, and from every
//! response a session hands it ([`Learn`]) before the client reads the names in it. It answers
//! the admin endpoint ([`Observe`]), applies a new configuration as a difference ([`Gateway::apply`])
//! and drains ([`Gateway::drain`]).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::admin::Observe;
use crate::broker::{Named, Rack};
use crate::config::{Config, ConfigError, ListenerGroup};
use crate::listener;
use crate::metrics::{GroupCounters, Metrics};
use crate::readiness::{NotReady, Readiness};
use crate::record::Recorder;
use crate::report::Report;
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

/// Why a new configuration was not applied; the running one stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The new configuration is in force, but one of its ports could not be opened (another
    /// process holds it): the group is not served there until a reload opens it.
    #[error("cannot listen on {addr} for listener group {group}: {source}")]
    Listen { group: String, addr: SocketAddr, source: std::io::Error },
}

impl ReloadError {
    /// True when the running configuration stays as it was.
    pub fn refused(&self) -> bool {
        !matches!(self, ReloadError::Listen { .. })
    }
}

/// A listener group: its configuration, how its clients see brokers (kept across reloads that
/// change only names), and what its sessions share.
struct Served {
    config: Arc<ListenerGroup>,
    names: Arc<GroupNames>,
    sessions: Arc<session::Group>,
}

/// The configuration in force and the listener groups it made.
struct State {
    config: Config,
    groups: Vec<Served>,
}

/// An open port: where it listens, and how to stop it.
struct Listening {
    addr: SocketAddr,
    /// Stops accepting.
    stop: CancellationToken,
    /// Asks its sessions to finish what is in flight and close (a child of the gateway's drain).
    drain: CancellationToken,
    accepting: JoinHandle<()>,
}

pub struct Gateway {
    state: RwLock<State>,
    topology: Arc<Topology>,
    dialer: Arc<Dialer>,
    /// Open listeners by (group name, target).
    listeners: Mutex<HashMap<(String, Target), Listening>>,
    /// Wakes the discovery loop before its interval, when a response names a broker nobody knows.
    refresh_now: Notify,
    /// Stops the background tasks (discovery, the TLS watch).
    shutdown: CancellationToken,
    /// Every session's drain token descends from this one.
    drain: CancellationToken,
    sessions: TaskTracker,
    /// When discovery last saw each broker, so that one gone for good loses its ports.
    last_seen: Mutex<HashMap<i32, Instant>>,
    recorder: Option<Arc<Recorder>>,
    /// None when the admin endpoint is off: nothing is counted then.
    metrics: Option<Arc<Metrics>>,
    readiness: Readiness,
    /// The cluster id and the server of the last discovery that succeeded.
    described: Mutex<Option<(Option<String>, String)>>,
    learner: Weak<Gateway>,
    /// The one budget of responses held whole, shared by every group (budget.rs).
    budget: Arc<crate::budget::Budget>,
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Connections still open when `gateway.drain_secs` ran out: cut.
    pub cut: usize,
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
        let acceptors = acceptors(&config)?;
        Ok(Arc::new_cyclic(|weak: &Weak<Self>| Self::build(config, link, acceptors, weak.clone())))
    }

    fn build(config: Config, link: Link, acceptors: Vec<Option<Arc<Acceptor>>>, learner: Weak<Self>) -> Self {
        let topology = Arc::new(Topology::default());
        let dialer = Arc::new(Dialer::new(config.upstream.bootstrap_servers.clone(), Arc::clone(&topology), link));
        let recorder = config.record_dir.clone().map(|dir| Arc::new(Recorder::new(dir, config.record_per_version)));
        let metrics = config.admin.bind.is_some().then(Metrics::new);
        let budget = crate::budget::Budget::new(config.max_held_bytes, config.held_wait);
        if let Some(m) = &metrics {
            m.set_budget(budget.total());
        }
        let mut gateway = Self {
            state: RwLock::new(State { config: config.clone(), groups: Vec::new() }),
            topology,
            dialer,
            listeners: Mutex::new(HashMap::new()),
            refresh_now: Notify::new(),
            shutdown: CancellationToken::new(),
            drain: CancellationToken::new(),
            sessions: TaskTracker::new(),
            last_seen: Mutex::new(HashMap::new()),
            recorder,
            readiness: Readiness::new(config.admin.ready_stale),
            metrics,
            described: Mutex::new(None),
            learner,
            budget,
        };
        let groups = config.groups.iter().zip(acceptors).map(|(g, tls)| gateway.serve_group(&config, g, tls)).collect();
        gateway.state.get_mut().expect("never poisoned").groups = groups;
        gateway
    }

    /// What the sessions of listener group `group` share, under `config`.
    fn serve_group(&self, config: &Config, group: &ListenerGroup, tls: Option<Arc<Acceptor>>) -> Served {
        let group = Arc::new(group.clone());
        let names = Arc::new(GroupNames::new(Arc::clone(&group), Arc::clone(&self.topology)));
        let limits = Limits {
            request: config.max_frame_bytes,
            response: config.max_response_bytes,
            splice_min: config.splice_min_bytes,
        };
        let sessions = session::Group {
            name: group.name.clone(),
            names: Arc::clone(&names) as _,
            learner: self.learner.clone(),
            dialer: Arc::clone(&self.dialer),
            tls,
            limits,
            caps: Caps { fetch_max: config.fetch_max_version },
            keepalive: config.tcp_keepalive,
            recorder: self.recorder.clone(),
            counters: self.metrics.as_ref().map_or_else(GroupCounters::off, |m| GroupCounters::new(m, &group.name)),
            access: Arc::new(crate::access::Gate::new(group.access.clone(), config.handshake_timeout)),
            budget: Arc::clone(&self.budget),
        };
        Served { config: group, names, sessions: Arc::new(sessions) }
    }

    /// Opens the bootstrap ports, asks the cluster for its brokers once and opens theirs, then
    /// keeps discovering in the background (see [`Gateway::start`]).
    pub async fn open(self: &Arc<Self>) -> Result<(), StartError> {
        {
            let state = self.state.read().expect("never poisoned");
            for served in &state.groups {
                self.open_bootstrap(served).map_err(|(addr, source)| StartError::Bootstrap {
                    group: served.config.name.clone(),
                    addr,
                    source,
                })?;
            }
        }
        let first_wait = match self.refresh().await {
            Ok(view) => {
                info!(cluster = ?view.cluster_id, brokers = view.brokers.len(), via = %view.answered_by, "cluster discovered");
                // At start a broker that cannot get its port is a configuration error worth stopping for.
                for b in &view.brokers {
                    self.learn_one(&b.named(), None)?;
                }
                None
            }
            Err(e) => {
                warn!("cluster not reachable yet, serving and retrying: {e}");
                Some(Duration::from_secs(1))
            }
        };
        tokio::spawn(Arc::clone(self).discover(first_wait));
        tokio::spawn(Arc::clone(self).watch_tls());
        Ok(())
    }

    /// Readiness, which a drain turns false.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// The metrics, when the admin endpoint is on.
    pub fn metrics(&self) -> Option<&Arc<Metrics>> {
        self.metrics.as_ref()
    }

    /// The configuration in force.
    pub fn config(&self) -> Config {
        self.state.read().expect("never poisoned").config.clone()
    }

    /// Stops accepting connections and discovering at once; open sessions end with the process.
    /// (A graceful stop is [`Gateway::drain`].)
    pub fn shutdown(&self) {
        self.shutdown.cancel();
        for listening in self.listeners.lock().expect("never poisoned").values() {
            listening.stop.cancel();
        }
    }

    /// Stops gracefully: readiness turns false, the listeners stop accepting, every session finishes
    /// the requests it forwarded, passes their answers back and closes at a frame boundary. Returns
    /// when all have closed, or after `within` with how many were cut.
    pub async fn drain(&self, within: Duration) -> Drained {
        self.readiness.drain();
        self.shutdown();
        self.drain.cancel();
        self.sessions.close();
        let open = self.sessions.len();
        info!(connections = open, "draining: no new connections; finishing the requests in flight");
        if tokio::time::timeout(within, self.sessions.wait()).await.is_ok() {
            info!("drained: every connection closed after its last answer");
            return Drained { cut: 0 };
        }
        let cut = self.sessions.len();
        warn!(connections = cut, "gateway.drain_secs ({within:?}) ran out: cutting the connections still open");
        Drained { cut }
    }

    /// Connections open now.
    pub fn open_sessions(&self) -> usize {
        self.sessions.len()
    }

    /// The addresses the gateway listens on, by group name and target.
    pub fn listening(&self) -> Vec<(String, Target, SocketAddr)> {
        let listeners = self.listeners.lock().expect("never poisoned");
        let mut all: Vec<_> = listeners.iter().map(|((g, t), l)| (g.clone(), *t, l.addr)).collect();
        all.sort();
        all
    }

    /// Asks the cluster for its brokers once (the caller learns them).
    pub async fn refresh(&self) -> Result<ClusterView, UpstreamError> {
        let view = upstream::describe_cluster(&self.dialer.candidates(), &self.dialer.link()).await?;
        self.readiness.discovered();
        *self.described.lock().expect("never poisoned") = Some((view.cluster_id.clone(), view.answered_by.to_string()));
        Ok(view)
    }

    /// Rediscovers the cluster every `metadata_refresh`, sooner when asked, with backoff on failure
    /// (from the start, when the first attempt failed). A broker discovery has not seen for
    /// `upstream.broker_grace_secs` has left the cluster: its ports close.
    async fn discover(self: Arc<Self>, first_wait: Option<Duration>) {
        let mut wait = first_wait.unwrap_or_else(|| self.config().upstream.metadata_refresh);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                _ = self.refresh_now.notified() => {}
            }
            let interval = self.config().upstream.metadata_refresh;
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
                    self.forget_departed(&view);
                    interval
                }
                Err(e) => {
                    warn!("cluster discovery failed: {e}");
                    if wait >= interval { Duration::from_secs(1) } else { (wait * 2).min(interval) }
                }
            };
        }
    }

    /// Closes the ports of brokers the cluster has not named for longer than the grace period, and
    /// lets their sessions finish what is in flight.
    fn forget_departed(&self, view: &ClusterView) {
        let grace = self.config().upstream.broker_grace;
        let now = Instant::now();
        let mut last_seen = self.last_seen.lock().expect("never poisoned");
        for b in &view.brokers {
            last_seen.insert(b.node_id, now);
        }
        let departed: Vec<i32> = self
            .topology
            .snapshot()
            .into_keys()
            .filter(|n| last_seen.get(n).is_none_or(|seen| now.duration_since(*seen) > grace))
            .collect();
        for node_id in departed {
            last_seen.remove(&node_id);
            self.topology.forget(node_id);
            let mut listeners = self.listeners.lock().expect("never poisoned");
            let gone: Vec<_> = listeners.keys().filter(|(_, t)| *t == Target::Broker(node_id)).cloned().collect();
            for key in gone {
                if let Some(listening) = listeners.remove(&key) {
                    listening.stop.cancel();
                    listening.drain.cancel();
                }
            }
            info!(node_id, "broker {node_id} has left the cluster (not described for {grace:?}): its ports closed");
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

    /// Looks at every TLS file now (the watch does every few seconds; a reload does too).
    pub fn reload_tls(&self) {
        let state = self.state.read().expect("never poisoned");
        let groups = state
            .groups
            .iter()
            .filter_map(|g| Some((g.sessions.tls.as_deref()?.key(), g.sessions.tls.as_deref()?.reload())));
        let link = self.dialer.link();
        let upstream = link.tls.as_deref().map(|tls| ("upstream.tls", tls.reload()));
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

    /// Applies a new configuration as a difference from the running one: listener groups added and
    /// removed, names changed in place (the next answers on every connection carry them), groups
    /// whose ports, TLS or limits changed served by new listeners (their open connections stay),
    /// bootstrap servers and the link to the brokers replaced for the next connections. Settings
    /// of the process itself (worker threads, busy poll, the admin endpoint, logs) take effect at
    /// the next start. Returns what changed, for the log.
    pub async fn apply(&self, new: Config) -> Result<Vec<String>, ReloadError> {
        let (changes, stopped) = self.swap(new)?;
        // A listener that takes the same port must not race the old accept loop for it: the port
        // is free once that loop has ended and dropped its socket, which it does at once.
        for accepting in stopped {
            let _ = accepting.await;
        }
        self.reopen()?;
        self.reload_tls();
        Ok(changes)
    }

    /// The synchronous part of [`Gateway::apply`]: the new state in place, and the accept loops
    /// that were stopped.
    fn swap(&self, new: Config) -> Result<(Vec<String>, Vec<JoinHandle<()>>), ReloadError> {
        let link = Link::load(&new)?;
        let acceptors = acceptors(&new)?;
        let known: BTreeSet<i32> = self.topology.snapshot().into_keys().collect();
        new.check_ports(&known)?;
        let mut changes = Vec::new();
        let mut stopped = Vec::new();
        let mut state = self.state.write().expect("never poisoned");
        let old = &state.config;
        if old.upstream.bootstrap_servers != new.upstream.bootstrap_servers {
            self.dialer.set_bootstrap(new.upstream.bootstrap_servers.clone());
            changes.push("upstream.bootstrap_servers".to_owned());
        }
        let link_changed = old.upstream.tls != new.upstream.tls
            || old.upstream.sasl != new.upstream.sasl
            || old.upstream.connect_timeout != new.upstream.connect_timeout
            || old.tcp_keepalive != new.tcp_keepalive;
        if link_changed {
            self.dialer.set_link(link);
            changes.push("the link to the brokers (upstream.tls, upstream.sasl, timeouts)".to_owned());
        }
        for (what, changed) in [
            ("gateway.worker_threads", old.worker_threads != new.worker_threads),
            ("gateway.busy_poll_us", old.busy_poll != new.busy_poll),
            ("admin", old.admin != new.admin),
            ("log.format", old.log_format != new.log_format),
        ] {
            if changed {
                warn!("{what} changed: it takes effect at the next start");
            }
        }
        let limits_changed = old.max_frame_bytes != new.max_frame_bytes
            || old.max_response_bytes != new.max_response_bytes
            || old.splice_min_bytes != new.splice_min_bytes
            || old.tcp_keepalive != new.tcp_keepalive
            || old.record_dir != new.record_dir;
        let mut groups = Vec::new();
        let mut previous: HashMap<String, Served> =
            std::mem::take(&mut state.groups).into_iter().map(|s| (s.config.name.clone(), s)).collect();
        for (group, tls) in new.groups.iter().zip(acceptors) {
            let Some(served) = previous.remove(&group.name) else {
                changes.push(format!("listeners.{} added", group.name));
                groups.push(self.serve_group(&new, group, tls));
                continue;
            };
            let same_ports = served.config.bind == group.bind
                && served.config.bootstrap_port == group.bootstrap_port
                && served.config.broker_port_base == group.broker_port_base
                && served.config.broker_ports == group.broker_ports;
            if same_ports && served.config.tls == group.tls && !limits_changed {
                if *served.config != *group {
                    served.names.set(Arc::new(group.clone()));
                    changes.push(format!("listeners.{}: names (template, AZ maps)", group.name));
                }
                groups.push(Served { config: Arc::new(group.clone()), ..served });
                continue;
            }
            // New listeners; the group's open connections stay on what they were accepted with.
            stopped.extend(self.close_group(&group.name, false));
            changes.push(format!("listeners.{}: ports, TLS or limits (listening anew)", group.name));
            let replaced = self.serve_group(&new, group, tls);
            replaced.names.set(Arc::new(group.clone()));
            groups.push(replaced);
        }
        for name in previous.into_keys() {
            stopped.extend(self.close_group(&name, true));
            changes.push(format!("listeners.{name} removed (its connections drain)"));
        }
        state.groups = groups;
        state.config = new;
        Ok((changes, stopped))
    }

    /// Opens every port the groups in force should have and do not (after a reload).
    fn reopen(&self) -> Result<(), ReloadError> {
        let state = self.state.read().expect("never poisoned");
        let known: Vec<i32> = self.topology.snapshot().into_keys().collect();
        for served in &state.groups {
            self.open_bootstrap(served).map_err(|(addr, source)| ReloadError::Listen {
                group: served.config.name.clone(),
                addr,
                source,
            })?;
            for &node_id in &known {
                if let Err(e) = self.open_broker(&state.config, served, node_id) {
                    warn!("{e}");
                }
            }
        }
        Ok(())
    }

    /// Stops a group's listeners (and, if `drain`, asks its sessions to finish and close); returns
    /// their accept loops, which end at once.
    fn close_group(&self, name: &str, drain: bool) -> Vec<JoinHandle<()>> {
        let mut listeners = self.listeners.lock().expect("never poisoned");
        let keys: Vec<_> = listeners.keys().filter(|(g, _)| g == name).cloned().collect();
        let mut stopped = Vec::new();
        for key in keys {
            if let Some(listening) = listeners.remove(&key) {
                listening.stop.cancel();
                if drain {
                    listening.drain.cancel();
                }
                stopped.push(listening.accepting);
            }
        }
        stopped
    }

    /// Records a broker and opens its listener in every group. With `for_group`, an error of that
    /// group is returned and the others' are logged (they surface when those groups' clients ask);
    /// without, the first error is returned.
    fn learn_one(&self, named: &Named<'_>, for_group: Option<&str>) -> Result<(), LearnError> {
        let new = self.topology.observe(named)?;
        if new {
            self.last_seen.lock().expect("never poisoned").insert(named.node_id, Instant::now());
            if named.rack == Rack::Unreported {
                // A broker first heard of in a response without racks: discovery fetches its rack.
                self.refresh_now.notify_one();
            }
        }
        let state = self.state.read().expect("never poisoned");
        let mut result = Ok(());
        for served in &state.groups {
            if let Err(e) = self.open_broker(&state.config, served, named.node_id) {
                match for_group {
                    None => return Err(e),
                    Some(name) if name == served.config.name => result = Err(e),
                    Some(_) => warn!("{e}"),
                }
            }
        }
        result
    }

    /// Opens a group's bootstrap port, if it has one and it is not open.
    fn open_bootstrap(&self, served: &Served) -> Result<(), (SocketAddr, std::io::Error)> {
        let Some(port) = served.config.bootstrap_port else { return Ok(()) };
        let addr = SocketAddr::new(served.config.bind, port);
        self.listen(served, Target::Bootstrap, addr).map_err(|e| (addr, e))
    }

    /// Opens broker `node_id`'s listener in a group, if not open yet.
    fn open_broker(&self, config: &Config, served: &Served, node_id: i32) -> Result<(), LearnError> {
        let group = &served.config;
        let target = Target::Broker(node_id);
        if self.listeners.lock().expect("never poisoned").contains_key(&(group.name.clone(), target)) {
            return Ok(());
        }
        let port = group.broker_port(node_id).map_err(crate::broker::NameError::from)?;
        let mut nodes = self.open_brokers();
        nodes.insert(node_id);
        config.check_ports(&nodes).map_err(|source| LearnError::Collision { node_id, source })?;
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

    /// Binds and starts accepting; a second call for the same listener is a no-op. Nothing is
    /// opened once the gateway drains.
    fn listen(&self, served: &Served, target: Target, addr: SocketAddr) -> std::io::Result<()> {
        let name = &served.config.name;
        let mut listeners = self.listeners.lock().expect("never poisoned");
        if listeners.contains_key(&(name.clone(), target)) || self.shutdown.is_cancelled() {
            return Ok(());
        }
        let socket = listener::bind(addr)?;
        let bound = socket.local_addr()?;
        if let Some(metrics) = &self.metrics {
            metrics.listener(name, broker_of(target));
        }
        info!(group = %name, %target, addr = %bound, "listening");
        let (stop, drain) = (CancellationToken::new(), self.drain.child_token());
        let port =
            listener::Port { group: Arc::clone(&served.sessions), target, stop: stop.clone(), drain: drain.clone() };
        let accepting = tokio::spawn(listener::accept_loop(port, socket, self.sessions.clone()));
        listeners.insert((name.clone(), target), Listening { addr: bound, stop, drain, accepting });
        Ok(())
    }
}

/// Every group's TLS towards its clients, loaded from the configuration's files.
fn acceptors(config: &Config) -> Result<Vec<Option<Arc<Acceptor>>>, TlsError> {
    config
        .groups
        .iter()
        .map(|g| {
            let key = format!("listeners.{}.tls", g.name);
            g.tls.as_ref().map(|files| Acceptor::load(files, &key).map(Arc::new)).transpose()
        })
        .collect()
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
        let state = self.state.read().expect("never poisoned");
        let listeners = self.listeners.lock().expect("never poisoned");
        for node_id in self.topology.snapshot().into_keys() {
            for served in &state.groups {
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
        let mut rows = crate::check::rows(&self.config(), &known);
        let listening: HashMap<_, _> = self.listening().into_iter().map(|(g, t, a)| ((g, t), a)).collect();
        for row in &mut rows {
            let target = Target::Broker(row.node_id);
            row.listen = listening.get(&(row.group.clone(), target)).copied();
            row.connections = self.metrics.as_ref().map(|m| m.open_connections(&row.group, broker_of(target)));
        }
        let mut problems: Vec<String> = rows.iter().filter_map(|r| r.advertised.clone().err()).collect();
        if let Err(e) = Observe::readiness(self) {
            problems.insert(0, format!("not ready: {e}"));
        }
        let described = self.described.lock().expect("never poisoned").clone();
        let (cluster_id, answered_by) = described.map_or((None, None), |(id, by)| (id, Some(by)));
        Report { cluster_id, answered_by, rows, problems, access: crate::check::access(&self.config()) }
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
