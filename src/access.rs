//! Step 1½ of a frame's journey, between accept and the first byte read as Kafka: who may connect
//! to a listener group (`[listeners.<group>.access]`). A connection takes a slot of the group's
//! `max_connections`, gives its PROXY protocol header when the group requires one (read before any
//! TLS handshake, consumed, never forwarded), and is admitted only from an allowed endpoint and
//! source. A refused connection is closed before the gateway dials anything for it, so not a byte
//! of it reaches the cluster; the line that says so goes through the group's [`Throttle`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::AsyncRead;

use crate::config::{Access, ProxyProtocol};
use crate::proxy::{self, Endpoint, Header, ReadError};
use crate::throttle::Throttle;

/// Lines about refused and failed connections a group lets through at once, then one per
/// [`LINE_EVERY`]: at ~300 bytes a line, under 100 MB a day however a flood goes.
const LINE_BURST: u32 = 20;
const LINE_EVERY: Duration = Duration::from_millis(500);

/// A listener group's rules, its open connections, and the bucket its refusal lines draw from.
#[derive(Debug)]
pub struct Gate {
    rules: Access,
    /// From accept to the first request (`gateway.handshake_timeout_secs`); see session.rs.
    handshake: Duration,
    open: AtomicUsize,
    throttle: Throttle,
}

/// Why a connection was turned away. Each says what an operator can check.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("the group already has {limit} connections open (access.max_connections)")]
    TooMany { limit: usize },
    #[error(transparent)]
    Header(#[from] ReadError),
    #[error("endpoint {0} is not in access.allow_endpoints")]
    Endpoint(Endpoint),
    #[error("the PROXY header names no private-link endpoint, and access.allow_endpoints requires one")]
    NoEndpoint,
    #[error("source {0} is not in access.allow_sources")]
    Source(std::net::IpAddr),
    #[error("the PROXY header names no client address, and access.allow_sources requires one")]
    NoSource,
}

/// Who is behind an admitted connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// The real client: the PROXY header's source, else the peer.
    pub client: SocketAddr,
    pub endpoint: Option<Endpoint>,
    /// A load balancer's own connection (v2 LOCAL: a health check), to be closed without dialing.
    pub local: bool,
}

/// A connection's place among the group's open ones, given back when dropped.
#[derive(Debug)]
pub struct Slot(Option<Arc<Gate>>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(gate) = &self.0 {
            gate.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Gate {
    pub fn new(rules: Access, handshake: Duration) -> Self {
        Self { rules, handshake, open: AtomicUsize::new(0), throttle: Throttle::with_burst(LINE_EVERY, LINE_BURST) }
    }

    /// How long a client has from accept until its first request has arrived (PROXY header, TLS
    /// handshake and the request's header), and then to complete it; and how long any later
    /// request may pause midway.
    pub fn handshake(&self) -> Duration {
        self.handshake
    }

    pub fn rules(&self) -> &Access {
        &self.rules
    }

    /// Connections holding a slot now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// The bucket the group's refused and failed connections log through.
    pub fn throttle(&self) -> &Throttle {
        &self.throttle
    }

    /// Takes a slot, unless the group is at `max_connections`. Without a limit nothing is counted.
    pub fn enter(self: &Arc<Self>) -> Result<Slot, Refusal> {
        let Some(limit) = self.rules.max_connections else { return Ok(Slot(None)) };
        let taken = self.open.fetch_add(1, Ordering::Relaxed);
        let slot = Slot(Some(Arc::clone(self)));
        if taken >= limit {
            return Err(Refusal::TooMany { limit });
        }
        Ok(slot)
    }

    /// Reads the PROXY header if the group requires one, and checks the rules against who it names.
    /// The caller bounds the time this takes (`gateway.handshake_timeout_secs`).
    pub async fn admit(
        &self,
        stream: &mut (impl AsyncRead + Unpin),
        peer: SocketAddr,
    ) -> Result<Admitted, (Refusal, Option<Admitted>)> {
        let (admitted, has_source) = match self.rules.proxy_protocol {
            ProxyProtocol::Off => (Admitted { client: peer, endpoint: None, local: false }, true),
            ProxyProtocol::Required => match proxy::read(stream).await.map_err(|e| (e.into(), None))? {
                Header::Local => return Ok(Admitted { client: peer, endpoint: None, local: true }),
                Header::Proxy { source, endpoint } => {
                    (Admitted { client: source.unwrap_or(peer), endpoint, local: false }, source.is_some())
                }
            },
        };
        match self.check(&admitted, has_source) {
            Ok(()) => Ok(admitted),
            Err(refusal) => Err((refusal, Some(admitted))),
        }
    }

    /// The allowlists: both must admit a connection (an empty one admits all). `has_source`: the
    /// client address is a real one (the header named it, or there is no header).
    fn check(&self, who: &Admitted, has_source: bool) -> Result<(), Refusal> {
        let rules = &self.rules;
        if !rules.allow_endpoints.is_empty() {
            match &who.endpoint {
                None => return Err(Refusal::NoEndpoint),
                Some(e) if !rules.allow_endpoints.contains(e) => return Err(Refusal::Endpoint(e.clone())),
                Some(_) => {}
            }
        }
        if !rules.allow_sources.is_empty() {
            if !has_source {
                return Err(Refusal::NoSource);
            }
            // An IPv4 client seen through an IPv6 socket is still the IPv4 client.
            let ip = who.client.ip().to_canonical();
            if !rules.allow_sources.iter().any(|net| net.contains(&ip)) {
                return Err(Refusal::Source(ip));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
