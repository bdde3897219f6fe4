//! Before the first frame: the configuration — a TOML file, then `KAFKA_GATEWAY_…` variables, then
//! `--set` flags — loaded with figment and checked completely before anything listens.
//!
//! Every refusal is a [`ConfigError`] that names the key, so `main` can print it and exit with status 2.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Deserialize;

use crate::broker::{HostPort, NameError, PortError};
use crate::template::{Inputs, Template, is_host_char};

mod access;
mod security;
use access::RawAccess;
pub use access::{Access, ProxyProtocol};
pub use security::{ClientTls, Mechanism, Sasl, Secret, ServerTls};
use security::{RawClientTls, RawSasl, RawServerTls};

/// The environment prefix of the configuration contract; `__` separates levels.
pub const ENV_PREFIX: &str = "KAFKA_GATEWAY_";

/// A configuration the gateway refused, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, reason: impl fmt::Display) -> Self {
        Self { key: key.into(), reason: reason.to_string() }
    }
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub upstream: Upstream,
    /// Listener groups in name order.
    pub groups: Vec<ListenerGroup>,
    /// A request above this size closes the connection that sent it.
    pub max_frame_bytes: usize,
    /// A response the gateway must hold whole to rewrite it (Fetch v16+ with its records, the
    /// Metadata of a large cluster) above this size closes the client's connection. Responses that
    /// need no rewrite stream through at any size.
    pub max_response_bytes: usize,
    /// Where to write the responses the gateway rewrites, as fixture cases, and how many per API,
    /// version and outcome (see record.rs).
    pub record_dir: Option<std::path::PathBuf>,
    pub record_per_version: usize,
    /// TCP keepalive on both sides of every connection, so that load balancers with idle timeouts
    /// (AWS PrivateLink drops idle flows at 350 s) keep long-lived Kafka connections. `None` = off.
    pub tcp_keepalive: Option<Duration>,
    /// Threads that move bytes; 0 = one per core. A gateway sharing a host with brokers or
    /// clients can be held to fewer.
    pub worker_threads: usize,
    /// The longest a worker thread polls the sessions' sockets before it sleeps (runtime.rs).
    /// `None` = off.
    pub busy_poll: Option<Duration>,
    /// The least of a frame's bytes, past what a read took, that move from socket to socket in the
    /// kernel instead of through the gateway's memory (splice.rs). 0 = never.
    pub splice_min_bytes: usize,
    /// How long a graceful stop (SIGTERM, SIGINT) waits for connections to finish what they have
    /// in flight before it cuts them.
    pub drain: Duration,
    pub admin: Admin,
    pub log_format: LogFormat,
    /// The newest Fetch version clients may use (`gateway.fetch_max_version`): below 16, Fetch
    /// answers stream instead of being held whole, and KIP-951's leader hints are not sent.
    pub fetch_max_version: i16,
    /// What a client has from accept until its first request arrives (PROXY header, TLS handshake,
    /// the request's first bytes), and what a request once started may pause for.
    pub handshake_timeout: Duration,
    /// The most memory responses held whole for rewrite may take together (budget.rs).
    pub max_held_bytes: usize,
    /// How long a session waits for room in that budget, and how long its client may take to read
    /// a held response, before that connection closes.
    pub held_wait: Duration,
}

/// The admin endpoint (admin.rs): metrics, liveness, readiness and the live topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// Where it listens; `None` (`admin.bind = ""`) turns it off, and with it all counting.
    pub bind: Option<SocketAddr>,
    /// Readiness turns false when no bootstrap server has answered the gateway's own discovery for
    /// longer than this. `None` = never.
    pub ready_stale: Option<Duration>,
}

/// How log lines are written (`log.format`, or `--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line of text per event, for people.
    #[default]
    Text,
    /// One JSON object per event, for log shippers.
    Json,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    /// The brokers' own listeners, as `host:port`.
    pub bootstrap_servers: Vec<HostPort>,
    pub connect_timeout: Duration,
    /// How often the gateway re-reads the cluster's brokers by itself.
    pub metadata_refresh: Duration,
    /// TLS towards the brokers, on every connection the gateway opens to them.
    pub tls: Option<ClientTls>,
    /// How the gateway's own connections (discovery, `check`) authenticate.
    pub sasl: Option<Sasl>,
    /// A broker discovery has not seen for this long has left the cluster: its ports close.
    pub broker_grace: Duration,
}

/// One listener group: a set of ports and one naming pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerGroup {
    pub name: String,
    pub bind: IpAddr,
    pub bootstrap_port: Option<u16>,
    pub broker_port_base: Option<u16>,
    pub broker_ports: BTreeMap<i32, u16>,
    pub advertised: Template,
    pub az_by_rack: BTreeMap<String, String>,
    pub az_by_node: BTreeMap<i32, String>,
    pub default_az: Option<String>,
    /// TLS towards the group's clients.
    pub tls: Option<ServerTls>,
    /// Who may connect, and for how long (`[listeners.<group>.access]`).
    pub access: Access,
}

impl ListenerGroup {
    /// The listen port of broker `node_id`: `broker_ports[N]`, else `broker_port_base + N`.
    pub fn broker_port(&self, node_id: i32) -> Result<u16, PortError> {
        if let Some(&port) = self.broker_ports.get(&node_id) {
            return Ok(port);
        }
        let base = self.broker_port_base.ok_or_else(|| PortError::Unassigned { group: self.name.clone(), node_id })?;
        u16::try_from(i64::from(base) + i64::from(node_id))
            .ok()
            .filter(|_| node_id >= 0)
            .ok_or_else(|| PortError::OutOfRange { group: self.name.clone(), node_id, base })
    }

    /// The AZ of a broker: `az_by_node` (the most specific), then `az_by_rack`, then `default_az`.
    pub fn az_of(&self, node_id: i32, rack: Option<&str>) -> Option<&str> {
        self.az_by_node
            .get(&node_id)
            .or_else(|| rack.and_then(|r| self.az_by_rack.get(r)))
            .or(self.default_az.as_ref())
            .map(String::as_str)
    }

    /// The address the group shows for a broker: its template with `{az}` and `{rack}` filled, on
    /// the broker's listen port. Two gateways with one configuration always agree on it.
    pub fn advertised(&self, node_id: i32, rack: Option<&str>) -> Result<HostPort, NameError> {
        let port = self.broker_port(node_id)?;
        let inputs = Inputs { node_id, az: self.az_of(node_id, rack), rack };
        let host = self
            .advertised
            .render_host(inputs)
            .map_err(|source| NameError::Render { group: self.name.clone(), source })?;
        Ok(HostPort { host, port })
    }

    /// The key that assigns a broker its port, for error messages.
    fn broker_port_key(&self, node_id: i32) -> String {
        if self.broker_ports.contains_key(&node_id) {
            format!("listeners.{}.broker_ports.{node_id}", self.name)
        } else {
            format!("listeners.{}.broker_port_base (+ broker {node_id})", self.name)
        }
    }
}

impl Config {
    /// Loads `file` (if any), then the environment, then `overrides` (`key.path=value` from flags).
    pub fn load(file: Option<&Path>, overrides: &[String]) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::new("--config", format!("{} is not a readable file", path.display())));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
        for entry in overrides {
            let (key, value) = entry
                .split_once('=')
                .ok_or_else(|| ConfigError::new("--set", format!("'{entry}' is not KEY=VALUE")))?;
            let value: figment::value::Value = value.parse().expect("parsing is infallible");
            figment = figment.merge(Serialized::default(key.trim(), value));
        }
        Self::from_figment(figment)
    }

    /// Parses a TOML document (used by tests, the demo and the fixture tools).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_figment(Figment::from(Toml::string(text)))
    }

    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let raw: RawConfig = figment.extract().map_err(figment_error)?;
        raw.validate()
    }

    /// Checks that no two listeners of the process would share an address, given the brokers known
    /// so far. Called at load time with the brokers the file names, and again whenever the gateway
    /// learns of a broker, because ports computed from `broker_port_base` depend on node ids.
    pub fn check_ports(&self, node_ids: &BTreeSet<i32>) -> Result<(), ConfigError> {
        let mut claims: Vec<(IpAddr, u16, String)> = Vec::new();
        for group in &self.groups {
            if let Some(port) = group.bootstrap_port {
                claims.push((group.bind, port, format!("listeners.{}.bootstrap_port", group.name)));
            }
            let named = group.broker_ports.keys().copied();
            for node_id in node_ids.iter().copied().chain(named).collect::<BTreeSet<_>>() {
                match group.broker_port(node_id) {
                    Ok(port) => claims.push((group.bind, port, group.broker_port_key(node_id))),
                    // A broker without a port is reported when it is advertised, not here.
                    Err(PortError::Unassigned { .. }) => {}
                    Err(e) => return Err(ConfigError::new(group.broker_port_key(node_id), e)),
                }
            }
        }
        for (i, (ip_a, port_a, key_a)) in claims.iter().enumerate() {
            for (ip_b, port_b, key_b) in &claims[i + 1..] {
                let overlapping = ip_a == ip_b || ip_a.is_unspecified() || ip_b.is_unspecified();
                if port_a == port_b && overlapping {
                    return Err(ConfigError::new(
                        key_b.clone(),
                        format!("port {port_b} on {ip_b} is already taken by {key_a}"),
                    ));
                }
            }
        }
        // Two groups with the same base on one address collide on every broker, known or not.
        for (i, a) in self.groups.iter().enumerate() {
            for b in &self.groups[i + 1..] {
                let overlapping = a.bind == b.bind || a.bind.is_unspecified() || b.bind.is_unspecified();
                if overlapping && a.broker_port_base.is_some() && a.broker_port_base == b.broker_port_base {
                    return Err(ConfigError::new(
                        format!("listeners.{}.broker_port_base", b.name),
                        format!("listener group {} already uses the same base on an overlapping address", a.name),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn figment_error(err: figment::Error) -> ConfigError {
    use figment::error::Kind;
    let mut path = err.path.clone();
    let reason = match &err.kind {
        Kind::UnknownField(field, expected) => {
            // figment sometimes has the field in the path already (for values from the environment).
            if path.last() != Some(field) {
                path.push(field.clone());
            }
            format!("unknown key; expected one of: {}", expected.join(", "))
        }
        Kind::MissingField(field) => {
            path.push(field.to_string());
            "missing".to_owned()
        }
        other => other.to_string(),
    };
    let key = if path.is_empty() { "(top level)".to_owned() } else { path.join(".") };
    let source = match &err.metadata {
        // Values from `--set` come through figment's Serialized provider, named after a Rust type.
        Some(meta) if meta.name.starts_with("figment::") => " (from --set)".to_owned(),
        Some(meta) => match &meta.source {
            Some(src) => format!(" (from {} {src})", meta.name),
            None => format!(" (from {})", meta.name),
        },
        None => String::new(),
    };
    ConfigError::new(key, format!("{reason}{source}"))
}

// ---- the file's shape ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    upstream: RawUpstream,
    #[serde(default)]
    listeners: BTreeMap<String, RawGroup>,
    #[serde(default)]
    gateway: RawGateway,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    log: RawLog,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    #[serde(default = "default_admin_bind")]
    bind: String,
    /// Unset: four discovery intervals, and at least two minutes.
    ready_stale_secs: Option<u64>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self { bind: default_admin_bind(), ready_stale_secs: None }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    #[serde(default)]
    format: LogFormat,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    bootstrap_servers: ServerList,
    #[serde(default = "default_connect_timeout_ms")]
    connect_timeout_ms: u64,
    #[serde(default = "default_metadata_refresh_secs")]
    metadata_refresh_secs: u64,
    /// Unset: the default, or one refresh if refreshes are further apart.
    broker_grace_secs: Option<u64>,
    tls: Option<RawClientTls>,
    sasl: Option<RawSasl>,
}

/// A list of servers, or (convenient in an environment variable) one comma-separated string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ServerList {
    List(Vec<String>),
    Joined(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default = "default_bind")]
    bind: String,
    bootstrap_port: Option<u16>,
    broker_port_base: Option<u16>,
    #[serde(default)]
    broker_ports: BTreeMap<String, u16>,
    advertised: String,
    #[serde(default)]
    az_by_rack: BTreeMap<String, String>,
    #[serde(default)]
    az_by_node: BTreeMap<String, String>,
    default_az: Option<String>,
    tls: Option<RawServerTls>,
    #[serde(default)]
    access: RawAccess,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    #[serde(default = "default_max_frame_bytes")]
    max_frame_bytes: usize,
    #[serde(default = "default_max_response_bytes")]
    max_response_bytes: usize,
    #[serde(default = "default_tcp_keepalive_secs")]
    tcp_keepalive_secs: u64,
    #[serde(default)]
    record_dir: Option<std::path::PathBuf>,
    #[serde(default = "default_record_per_version")]
    record_per_version: usize,
    #[serde(default)]
    worker_threads: usize,
    #[serde(default = "default_busy_poll_us")]
    busy_poll_us: u64,
    #[serde(default = "default_splice_min_bytes")]
    splice_min_bytes: usize,
    #[serde(default = "default_drain_secs")]
    drain_secs: u64,
    #[serde(default = "default_fetch_max_version")]
    fetch_max_version: i16,
    #[serde(default = "default_handshake_timeout_secs")]
    handshake_timeout_secs: u64,
    #[serde(default = "default_max_held_bytes")]
    max_held_bytes: usize,
    #[serde(default = "default_held_wait_secs")]
    held_wait_secs: u64,
}

impl Default for RawGateway {
    fn default() -> Self {
        Self {
            max_frame_bytes: default_max_frame_bytes(),
            max_response_bytes: default_max_response_bytes(),
            tcp_keepalive_secs: default_tcp_keepalive_secs(),
            record_dir: None,
            record_per_version: default_record_per_version(),
            worker_threads: 0,
            busy_poll_us: default_busy_poll_us(),
            splice_min_bytes: default_splice_min_bytes(),
            drain_secs: default_drain_secs(),
            fetch_max_version: default_fetch_max_version(),
            handshake_timeout_secs: default_handshake_timeout_secs(),
            max_held_bytes: default_max_held_bytes(),
            held_wait_secs: default_held_wait_secs(),
        }
    }
}

fn default_bind() -> String {
    "0.0.0.0".to_owned()
}
fn default_connect_timeout_ms() -> u64 {
    10_000
}
fn default_metadata_refresh_secs() -> u64 {
    30
}
/// Long enough that a broker restarted for maintenance (a rolling upgrade) keeps its ports.
const DEFAULT_BROKER_GRACE_SECS: u64 = 300;
/// Below Kubernetes' default terminationGracePeriodSeconds (30) would cut; clients' requests take
/// milliseconds, so a drain of in-flight requests ends long before unless a client holds a Fetch.
fn default_drain_secs() -> u64 {
    30
}
fn default_max_frame_bytes() -> usize {
    100 * 1024 * 1024
}
/// Above brokers' default fetch.max.bytes (55 MiB), the largest answer a default client gets.
fn default_max_response_bytes() -> usize {
    256 * 1024 * 1024
}
fn default_tcp_keepalive_secs() -> u64 {
    60
}
/// Off: a worker that polls at a high rate of sequential requests holds a core, which a dedicated
/// host or a container under a CPU limit should not pay by default (benches/README.md, "The busy
/// poll at fixed request rates").
fn default_busy_poll_us() -> u64 {
    0
}
/// Below a few pages, the two splices of a pipe cost more than copying the bytes (splice.rs).
fn default_splice_min_bytes() -> usize {
    16 * 1024
}
const MIN_SPLICE_BYTES: usize = 4096;
/// The newest Fetch version the gateway rewrites.
fn default_fetch_max_version() -> i16 {
    crate::rewrite::api_versions::FETCH_MAX
}
/// A timer may fire up to one window late while a worker polls (runtime.rs).
const MAX_BUSY_POLL_US: u64 = 1_000;
/// Long enough for a TLS handshake over a slow link; short enough that connections which never
/// speak cannot pile up.
fn default_handshake_timeout_secs() -> u64 {
    10
}
/// Twice the default `max_response_bytes`: two of the largest answers, or many ordinary ones.
fn default_max_held_bytes() -> usize {
    512 * 1024 * 1024
}
/// Above a client's default request.timeout.ms (30 s): a client that waits that long has given up.
fn default_held_wait_secs() -> u64 {
    60
}
fn default_record_per_version() -> usize {
    3
}
/// Loopback: metrics and topology name the cluster's brokers, which is for the operator's host
/// (or a scraper the operator points at a wider address) to see.
fn default_admin_bind() -> String {
    "127.0.0.1:9644".to_owned()
}
/// Readiness must survive a few failed rediscoveries (they retry with backoff) before it turns a
/// replica out of its load balancer.
fn default_ready_stale(metadata_refresh_secs: u64) -> u64 {
    (4 * metadata_refresh_secs).max(120)
}

impl RawConfig {
    fn validate(self) -> Result<Config, ConfigError> {
        let servers = match self.upstream.bootstrap_servers {
            ServerList::List(list) => list,
            ServerList::Joined(s) => s.split(',').map(|s| s.trim().to_owned()).collect(),
        };
        if servers.iter().all(|s| s.is_empty()) {
            return Err(ConfigError::new("upstream.bootstrap_servers", "at least one server is required"));
        }
        let bootstrap_servers = servers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                HostPort::parse(s).map_err(|e| ConfigError::new(format!("upstream.bootstrap_servers[{i}]"), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.upstream.connect_timeout_ms == 0 {
            return Err(ConfigError::new("upstream.connect_timeout_ms", "must be above 0"));
        }
        if self.upstream.metadata_refresh_secs == 0 {
            return Err(ConfigError::new("upstream.metadata_refresh_secs", "must be above 0"));
        }
        let broker_grace_secs = self
            .upstream
            .broker_grace_secs
            .unwrap_or(DEFAULT_BROKER_GRACE_SECS.max(self.upstream.metadata_refresh_secs));
        if broker_grace_secs < self.upstream.metadata_refresh_secs {
            return Err(ConfigError::new(
                "upstream.broker_grace_secs",
                "must be at least upstream.metadata_refresh_secs: a broker is only known gone after discovery missed it",
            ));
        }
        for (key, value) in [
            ("gateway.max_frame_bytes", self.gateway.max_frame_bytes),
            ("gateway.max_response_bytes", self.gateway.max_response_bytes),
        ] {
            if value < 64 {
                return Err(ConfigError::new(key, "must be at least 64"));
            }
        }
        if self.gateway.busy_poll_us > MAX_BUSY_POLL_US {
            return Err(ConfigError::new(
                "gateway.busy_poll_us",
                format!("must be at most {MAX_BUSY_POLL_US} (a timer may fire up to this late); 0 turns it off"),
            ));
        }
        if self.gateway.splice_min_bytes != 0 && self.gateway.splice_min_bytes < MIN_SPLICE_BYTES {
            return Err(ConfigError::new(
                "gateway.splice_min_bytes",
                format!(
                    "must be 0 (never splice) or at least {MIN_SPLICE_BYTES}: a smaller splice costs more than a copy"
                ),
            ));
        }
        let fetch_max = crate::rewrite::api_versions::FETCH_MAX;
        if !(0..=fetch_max).contains(&self.gateway.fetch_max_version) {
            return Err(ConfigError::new(
                "gateway.fetch_max_version",
                format!("must be between 0 and {fetch_max}, the newest Fetch version the gateway rewrites"),
            ));
        }
        for (key, value) in [
            ("gateway.handshake_timeout_secs", self.gateway.handshake_timeout_secs),
            ("gateway.held_wait_secs", self.gateway.held_wait_secs),
        ] {
            if value == 0 {
                return Err(ConfigError::new(key, "must be above 0"));
            }
        }
        if self.gateway.max_held_bytes < 64 * 1024 {
            return Err(ConfigError::new("gateway.max_held_bytes", "must be at least 65536"));
        }
        if self.listeners.is_empty() {
            return Err(ConfigError::new("listeners", "at least one listener group is required"));
        }
        let groups = self.listeners.into_iter().map(|(name, raw)| raw.validate(name)).collect::<Result<Vec<_>, _>>()?;
        let admin = self.admin.validate(self.upstream.metadata_refresh_secs)?;
        let config = Config {
            upstream: Upstream {
                bootstrap_servers,
                connect_timeout: Duration::from_millis(self.upstream.connect_timeout_ms),
                metadata_refresh: Duration::from_secs(self.upstream.metadata_refresh_secs),
                tls: self.upstream.tls.map(RawClientTls::validate).transpose()?,
                sasl: self.upstream.sasl.map(RawSasl::validate).transpose()?,
                broker_grace: Duration::from_secs(broker_grace_secs),
            },
            groups,
            max_frame_bytes: self.gateway.max_frame_bytes,
            max_response_bytes: self.gateway.max_response_bytes,
            record_dir: self.gateway.record_dir,
            record_per_version: self.gateway.record_per_version,
            tcp_keepalive: (self.gateway.tcp_keepalive_secs > 0)
                .then(|| Duration::from_secs(self.gateway.tcp_keepalive_secs)),
            worker_threads: self.gateway.worker_threads,
            busy_poll: (self.gateway.busy_poll_us > 0).then(|| Duration::from_micros(self.gateway.busy_poll_us)),
            splice_min_bytes: self.gateway.splice_min_bytes,
            drain: Duration::from_secs(self.gateway.drain_secs),
            admin,
            log_format: self.log.format,
            fetch_max_version: self.gateway.fetch_max_version,
            handshake_timeout: Duration::from_secs(self.gateway.handshake_timeout_secs),
            max_held_bytes: self.gateway.max_held_bytes,
            held_wait: Duration::from_secs(self.gateway.held_wait_secs),
        };
        let named: BTreeSet<i32> =
            config.groups.iter().flat_map(|g| g.az_by_node.keys().chain(g.broker_ports.keys()).copied()).collect();
        config.check_ports(&named)?;
        Ok(config)
    }
}

impl RawAdmin {
    fn validate(self, metadata_refresh_secs: u64) -> Result<Admin, ConfigError> {
        let bind = match self.bind.trim() {
            "" => None,
            addr => Some(addr.parse::<SocketAddr>().map_err(|_| {
                ConfigError::new("admin.bind", format!("'{addr}' is not IP:PORT (\"\" turns the admin endpoint off)"))
            })?),
        };
        let stale = self.ready_stale_secs.unwrap_or_else(|| default_ready_stale(metadata_refresh_secs));
        if stale != 0 && stale <= metadata_refresh_secs {
            return Err(ConfigError::new(
                "admin.ready_stale_secs",
                format!(
                    "must be above upstream.metadata_refresh_secs ({metadata_refresh_secs}), or readiness would \
                     flap between two rediscoveries; 0 = never"
                ),
            ));
        }
        Ok(Admin { bind, ready_stale: (stale > 0).then(|| Duration::from_secs(stale)) })
    }
}

impl RawGroup {
    fn validate(self, name: String) -> Result<ListenerGroup, ConfigError> {
        let key = |field: &str| format!("listeners.{name}.{field}");
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(ConfigError::new(
                format!("listeners.{name}"),
                "a listener group name may use letters, digits, '-' and '_'",
            ));
        }
        let bind: IpAddr = self
            .bind
            .parse()
            .map_err(|_| ConfigError::new(key("bind"), format!("'{}' is not an IP address", self.bind)))?;
        let advertised = Template::parse(&self.advertised).map_err(|e| ConfigError::new(key("advertised"), e))?;
        for (field, port) in [("bootstrap_port", self.bootstrap_port), ("broker_port_base", self.broker_port_base)] {
            if port == Some(0) {
                return Err(ConfigError::new(key(field), "port 0 is not a fixed port"));
            }
        }
        if self.broker_port_base.is_none() && self.broker_ports.is_empty() {
            return Err(ConfigError::new(
                key("broker_port_base"),
                "missing: brokers need ports (broker_port_base, or broker_ports for every broker)",
            ));
        }
        let broker_ports = parse_node_map(&self.broker_ports, &key("broker_ports"))?;
        if let Some((node, _)) = broker_ports.iter().find(|(_, port)| **port == 0) {
            return Err(ConfigError::new(format!("{}.{node}", key("broker_ports")), "port 0 is not a fixed port"));
        }
        let az_by_node = parse_node_map(&self.az_by_node, &key("az_by_node"))?;
        for (rack, az) in &self.az_by_rack {
            check_az(az, &format!("{}.{rack}", key("az_by_rack")))?;
        }
        for (node, az) in &az_by_node {
            check_az(az, &format!("{}.{node}", key("az_by_node")))?;
        }
        if let Some(az) = &self.default_az {
            check_az(az, &key("default_az"))?;
        }
        if advertised.uses_az() && self.az_by_rack.is_empty() && az_by_node.is_empty() && self.default_az.is_none() {
            return Err(ConfigError::new(
                key("advertised"),
                "uses {az}, but none of az_by_rack, az_by_node, default_az is set",
            ));
        }
        let tls = self.tls.map(|tls| tls.validate(&key("tls"))).transpose()?;
        let access = self.access.validate(&key("access"))?;
        Ok(ListenerGroup {
            name,
            bind,
            bootstrap_port: self.bootstrap_port,
            broker_port_base: self.broker_port_base,
            broker_ports,
            advertised,
            az_by_rack: self.az_by_rack,
            az_by_node,
            default_az: self.default_az,
            tls,
            access,
        })
    }
}

fn parse_node_map<V: Clone>(map: &BTreeMap<String, V>, key: &str) -> Result<BTreeMap<i32, V>, ConfigError> {
    map.iter()
        .map(|(node, v)| match node.parse::<i32>() {
            Ok(id) if id >= 0 => Ok((id, v.clone())),
            _ => Err(ConfigError::new(format!("{key}.{node}"), "keys must be broker node ids (0 or more)")),
        })
        .collect()
}

fn check_az(az: &str, key: &str) -> Result<(), ConfigError> {
    if az.is_empty() || !az.chars().all(is_host_char) {
        return Err(ConfigError::new(key, format!("'{az}' is not usable in a host name")));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
