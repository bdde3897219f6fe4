//! Beside the data path: what the gateway counts, for the admin endpoint's `/metrics`.
//!
//! What a forwarded frame touches (bytes, requests, rewrites, held bytes, request latency) is the
//! gateway's own: counters split into per-worker shards ([`sharded`]) and latency batched per
//! worker into HdrHistograms ([`latency`]), reached through handles each session and listener
//! group resolves once ([`counters`]), so that counting takes no lock and allocates nothing per
//! frame. What happens once per connection or less (connections, dials, errors, discovery) uses
//! the `prometheus` crate's own atomics. One registry renders both in Prometheus' text format.
//!
//! Every family is named in [`FAMILIES`], the one list the README, the dashboard and the alert
//! rules are checked against.

pub mod counters;
pub mod latency;
pub mod sharded;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricType};
use prometheus::{
    Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub use counters::{Counted, GroupCounters, SessionCounters};
use latency::Latency;
use sharded::Sharded;

/// The prefix of every family.
pub const PREFIX: &str = "kafka_gateway_";

/// A family's kind, as Prometheus' text format names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

/// One family: its name (without [`PREFIX`]), kind, labels and meaning.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

impl Family {
    /// The names its samples carry in the exposition.
    pub fn series_names(&self) -> Vec<String> {
        let base = format!("{PREFIX}{}", self.name);
        match self.kind {
            Kind::Counter | Kind::Gauge => vec![base],
            Kind::Histogram => ["_bucket", "_sum", "_count"].iter().map(|s| format!("{base}{s}")).collect(),
            Kind::Summary => ["", "_sum", "_count"].iter().map(|s| format!("{base}{s}")).collect(),
        }
    }
}

/// Every family the gateway exports.
pub const FAMILIES: &[Family] = &[
    Family {
        name: "connections_open",
        kind: Kind::Gauge,
        labels: &["group", "broker"],
        help: "Client connections open, by listener group and port (broker node id, or bootstrap).",
    },
    Family {
        name: "connections_total",
        kind: Kind::Counter,
        labels: &["group", "broker", "outcome"],
        help: "Client connections by outcome: served (the broker was reached), failed (it could not be), refused (turned away before dialing).",
    },
    Family {
        name: "bytes_total",
        kind: Kind::Counter,
        labels: &["group", "broker", "direction"],
        help: "Bytes passed on, to_broker (requests) or to_client (responses, as rewritten).",
    },
    Family {
        name: "requests_total",
        kind: Kind::Counter,
        labels: &["group", "api", "version"],
        help: "Requests forwarded, by API and version.",
    },
    Family {
        name: "rewrites_total",
        kind: Kind::Counter,
        labels: &["group", "api"],
        help: "Responses held whole and walked for broker addresses (rewritten where they named any).",
    },
    Family {
        name: "refused_requests_total",
        kind: Kind::Counter,
        labels: &["group", "reason"],
        help: "Requests that closed their connection: version_capped (a version the gateway cannot rewrite), malformed, oversized.",
    },
    Family {
        name: "errors_total",
        kind: Kind::Counter,
        labels: &["group", "side"],
        help: "Connections ended by an error, by the side it came from: client, broker or gateway.",
    },
    Family {
        name: "request_duration_seconds",
        kind: Kind::Summary,
        labels: &["group", "api"],
        help: "From a request forwarded to its response passed on; quantiles over the last one to two minutes, count and sum since start.",
    },
    Family {
        name: "upstream_dial_duration_seconds",
        kind: Kind::Histogram,
        labels: &["group", "broker"],
        help: "Time to connect to the broker a client connection reaches.",
    },
    Family {
        name: "upstream_dial_failures_total",
        kind: Kind::Counter,
        labels: &["group", "broker"],
        help: "Client connections whose broker could not be reached.",
    },
    Family { name: "brokers", kind: Kind::Gauge, labels: &[], help: "Brokers the gateway knows." },
    Family {
        name: "discovery_age_seconds",
        kind: Kind::Gauge,
        labels: &[],
        help: "Seconds since a bootstrap server last answered the gateway's own discovery (since start, until one has).",
    },
    Family { name: "ready", kind: Kind::Gauge, labels: &[], help: "1 when /readyz answers 200, else 0." },
    Family {
        name: "held_response_bytes",
        kind: Kind::Gauge,
        labels: &["group"],
        help: "Bytes of responses held whole for rewrite right now.",
    },
    Family {
        name: "held_response_budget_bytes",
        kind: Kind::Gauge,
        labels: &[],
        help: "The budget of bytes all responses held whole may take together (gateway.max_held_bytes).",
    },
    Family {
        name: "reloads_total",
        kind: Kind::Counter,
        labels: &["result"],
        help: "Configuration reloads, by result: applied or refused.",
    },
    Family {
        name: "build_info",
        kind: Kind::Gauge,
        labels: &["version"],
        help: "Always 1; the version of the running gateway.",
    },
];

fn family(name: &str) -> &'static Family {
    FAMILIES.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("family {name} is not in FAMILIES"))
}

fn opts(name: &str) -> Opts {
    let f = family(name);
    Opts::new(format!("{PREFIX}{}", f.name), f.help)
}

fn labels(name: &str) -> &'static [&'static str] {
    family(name).labels
}

/// The label value of a port's target: its broker's node id, or `bootstrap`.
pub fn broker_label(broker: Option<i32>) -> String {
    broker.map_or_else(|| "bootstrap".to_owned(), |n| n.to_string())
}

/// The gateway's metrics. Built when the admin endpoint is on; with it off nothing is counted.
pub struct Metrics {
    registry: Registry,
    hot: Arc<Hot>,
    connections_open: IntGaugeVec,
    connections_total: IntCounterVec,
    errors_total: IntCounterVec,
    refused_requests_total: IntCounterVec,
    dial_duration: HistogramVec,
    dial_failures: IntCounterVec,
    brokers: IntGauge,
    discovery_age: Gauge,
    ready: IntGauge,
    held_budget: IntGauge,
    reloads_total: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let registry = &Registry::new();
        let hot = Arc::new(Hot::new());
        registry.register(Box::new(HotCollector(Arc::clone(&hot)))).expect("hot families register once");
        let counter_vec = |name: &str| {
            let v = IntCounterVec::new(opts(name), labels(name)).expect("a valid family");
            registry.register(Box::new(v.clone())).expect("each family registers once");
            v
        };
        let gauge_vec = |name: &str| {
            let v = IntGaugeVec::new(opts(name), labels(name)).expect("a valid family");
            registry.register(Box::new(v.clone())).expect("each family registers once");
            v
        };
        let int_gauge = |name: &str| {
            let g = IntGauge::with_opts(opts(name)).expect("a valid family");
            registry.register(Box::new(g.clone())).expect("each family registers once");
            g
        };
        // From a connect on loopback (~100 µs) to the connect timeout's order of magnitude.
        let buckets = vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
        let dial_duration = HistogramVec::new(
            HistogramOpts::from(opts("upstream_dial_duration_seconds")).buckets(buckets),
            labels("upstream_dial_duration_seconds"),
        )
        .expect("a valid family");
        registry.register(Box::new(dial_duration.clone())).expect("each family registers once");
        let discovery_age = Gauge::with_opts(opts("discovery_age_seconds")).expect("a valid family");
        registry.register(Box::new(discovery_age.clone())).expect("each family registers once");
        let metrics = Self {
            connections_open: gauge_vec("connections_open"),
            connections_total: counter_vec("connections_total"),
            errors_total: counter_vec("errors_total"),
            refused_requests_total: counter_vec("refused_requests_total"),
            dial_duration,
            dial_failures: counter_vec("upstream_dial_failures_total"),
            brokers: int_gauge("brokers"),
            discovery_age,
            ready: int_gauge("ready"),
            held_budget: int_gauge("held_response_budget_bytes"),
            reloads_total: counter_vec("reloads_total"),
            hot,
            registry: registry.clone(),
        };
        gauge_vec("build_info").with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        // Exported at 0 from the start, so that rate() and alerts see the series before the first.
        for result in ["applied", "refused"] {
            metrics.reloads_total.with_label_values(&[result]);
        }
        Arc::new(metrics)
    }

    /// A listener opened: its series exist from now on, at 0.
    pub fn listener(&self, group: &str, broker: Option<i32>) {
        let broker = broker_label(broker);
        self.connections_open.with_label_values(&[group, &broker]);
        for outcome in ["served", "failed", "refused"] {
            self.connections_total.with_label_values(&[group, &broker, outcome]);
        }
        self.dial_failures.with_label_values(&[group, &broker]);
    }

    /// Client connections open on a group's port now.
    pub fn open_connections(&self, group: &str, broker: Option<i32>) -> i64 {
        self.connections_open.get_metric_with_label_values(&[group, &broker_label(broker)]).map_or(0, |g| g.get())
    }

    /// What a scrape reports of the cluster and readiness, which the gateway knows.
    pub fn set_cluster(&self, brokers: usize, discovery_age: Duration, ready: bool) {
        self.brokers.set(brokers as i64);
        self.discovery_age.set(discovery_age.as_secs_f64());
        self.ready.set(i64::from(ready));
    }

    /// The held-response budget (`gateway.max_held_bytes`), which `held_response_bytes` is near
    /// when clients fetch more than the gateway may hold.
    pub fn set_budget(&self, bytes: usize) {
        self.held_budget.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// A configuration reload (issue 21's SIGHUP) was applied, or refused.
    pub fn reloaded(&self, applied: bool) {
        self.reloads_total.with_label_values(&[if applied { "applied" } else { "refused" }]).inc();
    }

    /// The exposition, in Prometheus' text format (0.0.4).
    pub fn render(&self) -> String {
        // Samples this thread batched are merged first; other workers merged theirs when they
        // last ran out of work, or will within a batch.
        latency::flush_thread();
        let mut out = String::new();
        TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out).expect("metrics encode as text");
        out
    }

    fn errors(&self, group: &str, side: &str) -> IntCounter {
        self.errors_total.with_label_values(&[group, side])
    }

    fn refused(&self, group: &str, reason: &str) -> IntCounter {
        self.refused_requests_total.with_label_values(&[group, reason])
    }
}

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// The families a forwarded frame touches, kept by the gateway itself: members are created (and
/// their label strings allocated) once, then reached through the handles sessions hold.
struct Hot {
    bytes: Members<Sharded>,
    requests: Members<Sharded>,
    rewrites: Members<Sharded>,
    held: Members<Sharded>,
    latency: Members<Latency>,
    descs: Vec<Desc>,
}

/// The members of one family, by label values.
struct Members<T> {
    family: &'static Family,
    by_labels: Mutex<BTreeMap<Vec<String>, Arc<T>>>,
}

impl<T: Default> Members<T> {
    fn new(name: &str) -> Self {
        Self { family: family(name), by_labels: Mutex::new(BTreeMap::new()) }
    }

    fn get(&self, values: &[&str]) -> Arc<T> {
        debug_assert_eq!(values.len(), self.family.labels.len(), "{}", self.family.name);
        let key: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        Arc::clone(self.by_labels.lock().expect("never poisoned").entry(key).or_default())
    }

    fn collect(&self, mut sample: impl FnMut(&T, &mut proto::Metric)) -> proto::MetricFamily {
        let mut mf = proto::MetricFamily::default();
        mf.set_name(format!("{PREFIX}{}", self.family.name));
        mf.set_help(self.family.help.to_owned());
        mf.set_field_type(match self.family.kind {
            Kind::Counter => MetricType::COUNTER,
            Kind::Gauge => MetricType::GAUGE,
            Kind::Histogram => MetricType::HISTOGRAM,
            Kind::Summary => MetricType::SUMMARY,
        });
        let members = self.by_labels.lock().expect("never poisoned");
        let metrics = members
            .iter()
            .map(|(values, member)| {
                let pairs = self
                    .family
                    .labels
                    .iter()
                    .zip(values)
                    .map(|(name, value)| {
                        let mut pair = proto::LabelPair::default();
                        pair.set_name((*name).to_owned());
                        pair.set_value(value.clone());
                        pair
                    })
                    .collect();
                let mut m = proto::Metric::from_label(pairs);
                sample(member, &mut m);
                m
            })
            .collect();
        mf.set_metric(metrics);
        mf
    }

    fn desc(&self) -> Desc {
        let labels = self.family.labels.iter().map(|l| (*l).to_owned()).collect();
        Desc::new(format!("{PREFIX}{}", self.family.name), self.family.help.to_owned(), labels, HashMap::new())
            .expect("a valid family")
    }
}

impl Hot {
    fn new() -> Self {
        let mut hot = Self {
            bytes: Members::new("bytes_total"),
            requests: Members::new("requests_total"),
            rewrites: Members::new("rewrites_total"),
            held: Members::new("held_response_bytes"),
            latency: Members::new("request_duration_seconds"),
            descs: Vec::new(),
        };
        hot.descs =
            vec![hot.bytes.desc(), hot.requests.desc(), hot.rewrites.desc(), hot.held.desc(), hot.latency.desc()];
        hot
    }
}

struct HotCollector(Arc<Hot>);

impl Collector for HotCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.0.descs.iter().collect()
    }

    fn collect(&self) -> Vec<proto::MetricFamily> {
        let hot = &self.0;
        let counter = |c: &Sharded, m: &mut proto::Metric| {
            let mut v = proto::Counter::default();
            v.set_value(c.sum() as f64);
            m.set_counter(v);
        };
        let gauge = |g: &Sharded, m: &mut proto::Metric| {
            let mut v = proto::Gauge::default();
            v.set_value(g.sum_signed() as f64);
            m.set_gauge(v);
        };
        let summary = |l: &Latency, m: &mut proto::Metric| {
            let snapshot = l.snapshot();
            let mut s = proto::Summary::default();
            s.set_sample_count(snapshot.count);
            s.set_sample_sum(snapshot.sum_seconds);
            s.set_quantile(
                latency::QUANTILES
                    .iter()
                    .zip(snapshot.quantiles)
                    .map(|(q, v)| {
                        let mut quantile = proto::Quantile::default();
                        quantile.set_quantile(*q);
                        quantile.set_value(v);
                        quantile
                    })
                    .collect(),
            );
            m.set_summary(s);
        };
        vec![
            hot.bytes.collect(counter),
            hot.requests.collect(counter),
            hot.rewrites.collect(counter),
            hot.held.collect(gauge),
            hot.latency.collect(summary),
        ]
    }
}

#[cfg(test)]
mod tests;
