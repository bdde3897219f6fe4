//! The handles the data path counts through: a listener group's ([`GroupCounters`], resolved when
//! the group is built, and per API on its first request) and a connection's ([`SessionCounters`],
//! resolved when the connection is accepted). Counting through them takes no lock and allocates
//! nothing; with metrics off they are empty and count only what a connection's last log line says.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;
use prometheus::{Histogram, IntCounter, IntGauge};
use tokio::io::AsyncWrite;

use super::latency::{self, Latency};
use super::sharded::Sharded;
use super::{Metrics, broker_label};
use crate::rewrite::Rewrite;
use crate::stream::Sink;

/// API keys with a slot of their own (Kafka's are below 100); versions likewise.
const KEYS: usize = 100;
const VERSIONS: usize = 32;
/// The label of keys the gateway does not know (vendor keys, newer Kafka).
const UNKNOWN: &str = "unknown";
const SIDES: [&str; 3] = ["client", "broker", "gateway"];
const REASONS: [&str; 3] = ["version_capped", "malformed", "oversized"];
const REWRITES: [Rewrite; 9] = [
    Rewrite::ApiVersions,
    Rewrite::Metadata,
    Rewrite::FindCoordinator,
    Rewrite::DescribeCluster,
    Rewrite::DescribeConfigs,
    Rewrite::Produce,
    Rewrite::Fetch,
    Rewrite::ShareFetch,
    Rewrite::ShareAcknowledge,
];

/// A listener group's counters, shared by its sessions; empty when metrics are off.
#[derive(Clone, Default)]
pub struct GroupCounters(Option<Arc<Group>>);

struct Group {
    name: String,
    metrics: Arc<Metrics>,
    /// By `key * VERSIONS + version`, resolved on first use.
    requests: Box<[OnceLock<Arc<Sharded>>]>,
    unknown_requests: Arc<Sharded>,
    /// By key, resolved on first use.
    latency: Box<[OnceLock<Latency>]>,
    unknown_latency: Latency,
    rewrites: [Arc<Sharded>; REWRITES.len()],
    held: Arc<Sharded>,
    errors: [IntCounter; 3],
    refused: [IntCounter; 3],
}

fn api_label(key: usize) -> Option<String> {
    ApiKey::try_from(key as i16).ok().map(|k| format!("{k:?}"))
}

/// Where `kind` is in [`REWRITES`]; a match, so that a new kind fails to compile here rather than
/// panic a worker at its first answer.
fn rewrite_index(kind: Rewrite) -> usize {
    match kind {
        Rewrite::ApiVersions => 0,
        Rewrite::Metadata => 1,
        Rewrite::FindCoordinator => 2,
        Rewrite::DescribeCluster => 3,
        Rewrite::DescribeConfigs => 4,
        Rewrite::Produce => 5,
        Rewrite::Fetch => 6,
        Rewrite::ShareFetch => 7,
        Rewrite::ShareAcknowledge => 8,
    }
}

impl GroupCounters {
    /// Metrics off: nothing is counted.
    pub fn off() -> Self {
        Self(None)
    }

    pub fn new(metrics: &Arc<Metrics>, group: &str) -> Self {
        let hot = &metrics.hot;
        let group = Group {
            name: group.to_owned(),
            metrics: Arc::clone(metrics),
            requests: (0..KEYS * VERSIONS).map(|_| OnceLock::new()).collect(),
            unknown_requests: hot.requests.get(&[group, UNKNOWN, UNKNOWN]),
            latency: (0..KEYS).map(|_| OnceLock::new()).collect(),
            unknown_latency: (*hot.latency.get(&[group, UNKNOWN])).clone(),
            rewrites: REWRITES.map(|kind| hot.rewrites.get(&[group, &format!("{kind:?}")])),
            held: hot.held.get(&[group]),
            errors: SIDES.map(|side| metrics.errors(group, side)),
            refused: REASONS.map(|reason| metrics.refused(group, reason)),
        };
        Self(Some(Arc::new(group)))
    }

    /// The counters of a connection accepted on the port of `broker` (None: the bootstrap port).
    pub fn session(&self, broker: Option<i32>) -> SessionCounters {
        let Some(group) = &self.0 else { return SessionCounters::default() };
        let label = broker_label(broker);
        let labels = [group.name.as_str(), label.as_str()];
        let m = &group.metrics;
        let open = m.connections_open.with_label_values(&labels);
        open.inc();
        let outcome = |o: &str| m.connections_total.with_label_values(&[&group.name, &label, o]);
        let bytes = |direction: &str| m.hot.bytes.get(&[&group.name, &label, direction]);
        SessionCounters {
            to_broker: ByteCount { local: AtomicU64::new(0), shared: Some(bytes("to_broker")) },
            to_client: ByteCount { local: AtomicU64::new(0), shared: Some(bytes("to_client")) },
            connection: Some(Connection {
                group: Arc::clone(group),
                open,
                served: outcome("served"),
                failed: outcome("failed"),
                dial: m.dial_duration.with_label_values(&labels),
                dial_failures: m.dial_failures.with_label_values(&labels),
            }),
            requests: AtomicU64::new(0),
        }
    }

    /// A connection turned away before it was dialed (access rules, limits: issue 19's listener).
    pub fn refused(&self, broker: Option<i32>) {
        if let Some(g) = &self.0 {
            g.metrics.connections_total.with_label_values(&[&g.name, &broker_label(broker), "refused"]).inc();
        }
    }
}

impl Group {
    fn request(&self, key: i16, version: i16) {
        let (k, v) = (key as usize, version as usize);
        let counter = if key >= 0 && version >= 0 && k < KEYS && v < VERSIONS {
            self.requests[k * VERSIONS + v].get_or_init(|| match api_label(k) {
                Some(api) => self.metrics.hot.requests.get(&[&self.name, &api, &version.to_string()]),
                None => Arc::clone(&self.unknown_requests),
            })
        } else {
            &self.unknown_requests
        };
        counter.add(1);
    }

    fn latency(&self, key: i16) -> &Latency {
        let k = key as usize;
        if key < 0 || k >= KEYS {
            return &self.unknown_latency;
        }
        self.latency[k].get_or_init(|| match api_label(k) {
            Some(api) => (*self.metrics.hot.latency.get(&[&self.name, &api])).clone(),
            None => self.unknown_latency.clone(),
        })
    }
}

/// One connection's counters. It also keeps the connection's own totals, which its last log line
/// reports, with metrics on or off.
#[derive(Default)]
pub struct SessionCounters {
    to_broker: ByteCount,
    to_client: ByteCount,
    requests: AtomicU64,
    connection: Option<Connection>,
}

struct Connection {
    group: Arc<Group>,
    open: IntGauge,
    served: IntCounter,
    failed: IntCounter,
    dial: Histogram,
    dial_failures: IntCounter,
}

/// Bytes one direction passed on: the connection's own count, and the group's.
#[derive(Default)]
pub struct ByteCount {
    local: AtomicU64,
    shared: Option<Arc<Sharded>>,
}

impl ByteCount {
    pub fn add(&self, n: usize) {
        // One pump writes each direction: a load and a store, no read-modify-write.
        self.local.store(self.local.load(Ordering::Relaxed) + n as u64, Ordering::Relaxed);
        if let Some(shared) = &self.shared {
            shared.add(n as u64);
        }
    }

    pub fn get(&self) -> u64 {
        self.local.load(Ordering::Relaxed)
    }
}

/// What a connection moved: bytes each way and requests, for its last log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub to_broker: u64,
    pub to_client: u64,
    pub requests: u64,
}

impl SessionCounters {
    /// A request was forwarded.
    pub fn request(&self, key: i16, version: i16) {
        self.requests.store(self.requests.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        if let Some(c) = &self.connection {
            c.group.request(key, version);
        }
    }

    /// When a request that awaits an answer was forwarded; None with metrics off (no clock read).
    pub fn clock(&self) -> Option<Instant> {
        self.connection.as_ref().map(|_| Instant::now())
    }

    /// The response to a request of `key` forwarded at `sent` was passed on.
    pub fn answered(&self, key: i16, sent: Option<Instant>) {
        if let (Some(c), Some(sent)) = (&self.connection, sent) {
            c.group.latency(key).record(sent.elapsed());
        }
    }

    /// A response was held and walked for broker addresses.
    pub fn rewritten(&self, kind: Rewrite) {
        if let Some(c) = &self.connection {
            c.group.rewrites[rewrite_index(kind)].add(1);
        }
    }

    /// `bytes` of a response are held whole until the guard drops.
    pub fn hold(&self, bytes: usize) -> Held<'_> {
        let held = self.connection.as_ref().map(|c| &*c.group.held);
        if let Some(h) = held {
            h.add_signed(bytes as i64);
        }
        Held { held, bytes }
    }

    /// The broker side was dialed, in `elapsed`, successfully or not.
    pub fn dialed(&self, elapsed: Duration, ok: bool) {
        if let Some(c) = &self.connection {
            c.dial.observe(elapsed.as_secs_f64());
            if ok {
                c.served.inc();
            } else {
                c.dial_failures.inc();
                c.failed.inc();
            }
        }
    }

    /// The connection ended with an error from `side` (client, broker, gateway), which refused a
    /// request for `refusal` if it names one.
    pub fn ended_by_error(&self, side: &str, refusal: Option<&str>) {
        let Some(c) = &self.connection else { return };
        if let Some(i) = SIDES.iter().position(|s| *s == side) {
            c.group.errors[i].inc();
        }
        if let Some(i) = refusal.and_then(|r| REASONS.iter().position(|s| *s == r)) {
            c.group.refused[i].inc();
        }
    }

    pub fn totals(&self) -> Totals {
        Totals {
            to_broker: self.to_broker.get(),
            to_client: self.to_client.get(),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }

    /// The broker side's writer, counting what it writes.
    pub fn to_broker<W>(&self, inner: W) -> Counted<'_, W> {
        Counted { inner, count: &self.to_broker }
    }

    /// The client side's writer, counting what it writes.
    pub fn to_client<W>(&self, inner: W) -> Counted<'_, W> {
        Counted { inner, count: &self.to_client }
    }
}

impl Drop for SessionCounters {
    fn drop(&mut self) {
        if let Some(c) = &self.connection {
            c.open.dec();
        }
        // A connection's last samples are merged on the thread that ends it.
        latency::flush_thread();
    }
}

/// Bytes of a response held whole; released when dropped, whichever way the holding ends.
pub struct Held<'a> {
    held: Option<&'a Sharded>,
    bytes: usize,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(h) = self.held {
            h.add_signed(-(self.bytes as i64));
        }
    }
}

/// A writer that counts the bytes it writes, and the bytes moved past it in the kernel
/// ([`Counted::count`]).
pub struct Counted<'a, W> {
    inner: W,
    count: &'a ByteCount,
}

impl<W> Counted<'_, W> {
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// Bytes that reached the other side without passing through this writer (spliced).
    pub fn count(&self, n: usize) {
        self.count.add(n);
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Counted<'_, W> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.count.add(n);
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = poll {
            self.count.add(n);
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A sink that counts what it passes on, spliced bytes included.
impl<S: Sink> Sink for Counted<'_, S> {
    fn socket(&self) -> Option<&tokio::net::TcpStream> {
        self.get_ref().socket()
    }

    fn moved(&self, bytes: usize) {
        self.count(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rewrite_kind_has_its_own_counter() {
        for (i, kind) in REWRITES.iter().enumerate() {
            assert_eq!(rewrite_index(*kind), i, "{kind:?}");
        }
    }
}
