//! Step 2 of a frame's journey: one client connection, both directions. Requests stream to the
//! broker as the same bytes; responses stream back, and only those [`Caps::plan`] marked are
//! held whole, rewritten, and learned from before the client reads them.
//!
//! A [`Session`] is a value the listener builds: its [`Group`] (how the group names, learns and
//! reaches brokers, and its limits), its target and the client's address. It never sees the
//! gateway. Each direction is a pump over a buffer it borrows from its worker thread's pool while
//! bytes are in flight and gives back when they are written; a frame is never buffered whole unless
//! it is rewritten, and the rest of a large frame past a read moves from socket to socket in the
//! kernel ([`crate::splice`]).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Level, trace, warn};

use crate::access::{Admitted, Gate, Refusal};
use crate::broker::Advertise;
use crate::budget::{Budget, Exhausted};
use crate::frame::{self, FrameError, MIN_REQUEST, MIN_RESPONSE, Peek};
use crate::inflight::{Answer, Inflight, OrderError, Pending};
use crate::metrics::{GroupCounters, SessionCounters};
use crate::proxy;
use crate::record::Recorder;
use crate::rewrite::{Action, Caps, Refused, RewriteError, api_versions};
use crate::sasl;
use crate::splice::{Failed, Moved, Pipe};
use crate::stream::Stream;
pub use crate::stream::{Sink, Source};
use crate::throttle::Throttle;
use crate::tls::{Acceptor, TlsError};
use crate::topology::{Learn, LearnError};
use crate::upstream::{self, Dialer, Target, UpstreamError};

/// SaslHandshake: after its v0, the client's SASL tokens travel as bare frames.
const SASL_HANDSHAKE: i16 = 17;

/// Responses no request asked for, logged at most once a minute.
static STRAY: Throttle = Throttle::new(Duration::from_secs(60));

/// Bytes read at a time: the size of the buffers a direction borrows while bytes are in flight.
const READ_CHUNK: usize = 64 * 1024;
/// Below this much free space the buffer grows before the next read.
const MIN_READ: usize = 4 * 1024;
/// What a read takes after a spliced frame: the next frame's header and, if it is small, all of it;
/// if it is large, its bulk stays in the kernel as well.
const AFTER_SPLICE_READ: usize = 4 * 1024;
/// Drained buffers a worker thread keeps for the next connection that has something to read.
const POOL_PER_THREAD: usize = 64;

thread_local! {
    static POOL: std::cell::RefCell<Vec<BytesMut>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A listener group as its sessions see it. Built by the gateway, shared by every session of the
/// group's ports.
pub struct Group {
    pub name: String,
    /// What clients call each broker.
    pub names: Arc<dyn Advertise + Send + Sync>,
    /// Where the brokers a response names are learned (the gateway; weak, because the gateway
    /// holds the groups).
    pub learner: Weak<dyn Learn>,
    pub dialer: Arc<Dialer>,
    /// TLS towards the group's clients (`[listeners.<group>.tls]`).
    pub tls: Option<Arc<Acceptor>>,
    pub limits: Limits,
    /// The API versions clients may use (`gateway.fetch_max_version` on the gateway's table).
    pub caps: Caps,
    /// TCP keepalive on the client's connection (`gateway.tcp_keepalive_secs`).
    pub keepalive: Option<Duration>,
    pub recorder: Option<Arc<Recorder>>,
    /// What its sessions count (empty with metrics off).
    pub counters: GroupCounters,
    /// Who may connect, the group's connection count, and its refusal lines' throttle (access.rs).
    pub access: Arc<Gate>,
    /// The process's budget for responses held whole (budget.rs), shared by every group.
    pub budget: Arc<Budget>,
}

/// The largest request forwarded, the largest response held whole to be rewritten, and the least
/// rest of a frame past a read that moves in the kernel (`gateway.splice_min_bytes`, 0 = never).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub request: usize,
    pub response: usize,
    pub splice_min: usize,
}

/// Which side of a connection an error came from: the client's, the broker's, or the gateway's own
/// (its configuration, its limits). The log level of a connection's end is the side's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Broker,
    Gateway,
}

impl Side {
    /// A client breaking the protocol is worth a line; a broker doing so, or failing to answer,
    /// is worth a warning; the gateway unable to serve a valid exchange is an error.
    pub fn level(self) -> Level {
        match self {
            Side::Client => Level::INFO,
            Side::Broker => Level::WARN,
            Side::Gateway => Level::ERROR,
        }
    }

    /// Its name in logs and in the `side` label of `kafka_gateway_errors_total`.
    pub fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Broker => "broker",
            Side::Gateway => "gateway",
        }
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a connection ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    ByClient,
    ByBroker,
    /// The gateway drained it: every request forwarded was answered, then it closed.
    Drained,
    /// A load balancer's health check (a PROXY v2 LOCAL header): nothing to serve.
    HealthCheck,
    /// No request for `access.idle_timeout_secs`.
    Idle,
}

/// Why a connection ended other than by a close.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{side} connection: {source}")]
    Io { side: Side, source: io::Error },
    #[error(transparent)]
    Dial(Box<UpstreamError>),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("the broker sent a malformed response: {0}")]
    BadResponse(FrameError),
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error(transparent)]
    Order(#[from] OrderError),
    #[error(transparent)]
    Rewrite(#[from] RewriteError),
    #[error(transparent)]
    Learn(#[from] LearnError),
    #[error("the broker closed the connection in the middle of a response")]
    Truncated,
    #[error("a response of {size} bytes to rewrite exceeds the limit of {limit} bytes (gateway.max_response_bytes)")]
    ResponseTooLarge { size: usize, limit: usize },
    #[error("client TLS: {0}")]
    ClientTls(#[from] TlsError),
    #[error(
        "the client sent a TLS handshake to a plaintext listener: give the group a [tls] certificate, or the client \
         security.protocol=PLAINTEXT or SASL_PLAINTEXT"
    )]
    TlsOnPlaintext,
    #[error(
        "the broker answered with TLS bytes: its listener speaks TLS, and the gateway reaches it in plaintext; \
         configure [upstream.tls]"
    )]
    BrokerSpeaksTls,
    #[error(
        "the broker closed the connection without answering the first request (a broker does that to a client \
         that speaks plaintext to its TLS listener, or fails its SASL: check [upstream.tls] and the client's \
         credentials)"
    )]
    NoAnswer,
    #[error("refused: {0}")]
    Access(#[from] Refusal),
    #[error("no request within {0:?} of connecting (gateway.handshake_timeout_secs)")]
    Handshake(Duration),
    #[error("the first request was not whole within {0:?} of connecting (gateway.handshake_timeout_secs)")]
    FirstIncomplete(Duration),
    #[error("the client stopped sending for {0:?} in the middle of a request (gateway.handshake_timeout_secs)")]
    Stalled(Duration),
    #[error(
        "a second PROXY protocol header follows the first: a load balancer prepended its own to a connection \
         that had one (turn PROXY protocol on at one of them only)"
    )]
    ProxyHeaderAgain,
    #[error(
        "the client sent a PROXY protocol header to a listener without access.proxy_protocol = \"required\" \
         (turn it on for the group, or off at the load balancer)"
    )]
    UnexpectedProxyHeader,
    #[error(transparent)]
    Budget(#[from] Exhausted),
    #[error(
        "the client did not read a held response of {bytes} bytes within {waited:?} (gateway.held_wait_secs); \
         its share of the held-response budget goes back"
    )]
    SlowReader { bytes: usize, waited: Duration },
    #[error(
        "SaslHandshake v0 with mechanism {0:?}: its tokens travel without Kafka headers, and the gateway follows them \
         for PLAIN, SCRAM-SHA-256/512 and OAUTHBEARER only; use a client that sends SaslAuthenticate (SaslHandshake v1+)"
    )]
    RawSasl(String),
}

impl From<UpstreamError> for SessionError {
    fn from(e: UpstreamError) -> Self {
        SessionError::Dial(Box::new(e))
    }
}

impl SessionError {
    pub fn side(&self) -> Side {
        match self {
            SessionError::Io { side, .. } => *side,
            SessionError::Frame(_)
            | SessionError::Refused(_)
            | SessionError::ClientTls(_)
            | SessionError::TlsOnPlaintext
            | SessionError::RawSasl(_)
            | SessionError::Access(_)
            | SessionError::Handshake(_)
            | SessionError::Stalled(_)
            | SessionError::FirstIncomplete(_)
            | SessionError::ProxyHeaderAgain
            | SessionError::UnexpectedProxyHeader
            | SessionError::SlowReader { .. } => Side::Client,
            SessionError::Dial(_)
            | SessionError::Order(_)
            | SessionError::Truncated
            | SessionError::NoAnswer
            | SessionError::BadResponse(_)
            | SessionError::Rewrite(RewriteError::Malformed { .. }) => Side::Broker,
            SessionError::Rewrite(_)
            | SessionError::Learn(_)
            | SessionError::ResponseTooLarge { .. }
            | SessionError::Budget(_)
            | SessionError::BrokerSpeaksTls => Side::Gateway,
        }
    }

    /// Why a client's request was refused, as `kafka_gateway_refused_requests_total` names it.
    pub fn refusal(&self) -> Option<&'static str> {
        match self {
            SessionError::Refused(_) => Some("version_capped"),
            SessionError::Frame(FrameError::TooLarge { .. }) => Some("oversized"),
            SessionError::Frame(_) => Some("malformed"),
            _ => None,
        }
    }

    /// Turned away before the gateway dialed anything for it: `connections_total{outcome="refused"}`.
    fn is_refusal(&self) -> bool {
        matches!(
            self,
            SessionError::Access(_)
                | SessionError::Handshake(_)
                | SessionError::ProxyHeaderAgain
                | SessionError::UnexpectedProxyHeader
        )
    }

    /// A peer that resets or drops its connection is ordinary: a client stopped, a broker restarted.
    fn is_disconnect(&self) -> bool {
        use io::ErrorKind::*;
        matches!(self, SessionError::Io { source, .. }
            if matches!(source.kind(), ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof))
    }

    fn client(source: io::Error) -> Self {
        SessionError::Io { side: Side::Client, source }
    }

    fn broker(source: io::Error) -> Self {
        SessionError::Io { side: Side::Broker, source }
    }
}

/// One client connection of a listener group's port.
pub struct Session {
    group: Arc<Group>,
    target: Target,
    peer: SocketAddr,
    counters: SessionCounters,
    /// Cancelled when the gateway drains: stop at the next frame boundary, finish what is in
    /// flight, close.
    drain: CancellationToken,
}

impl Session {
    pub fn new(group: Arc<Group>, target: Target, peer: SocketAddr, drain: CancellationToken) -> Self {
        let broker = match target {
            Target::Bootstrap => None,
            Target::Broker(n) => Some(n),
        };
        let counters = group.counters.session(broker);
        Self { group, target, peer, counters, drain }
    }

    /// Serves the connection until either side closes or breaks the protocol, and logs how it
    /// ended at the level of the side that ended it, with what it moved. Every line of the
    /// connection carries its span: group, target and client address.
    pub async fn serve(self, client: TcpStream) {
        // The client's address is the real one: the PROXY header's, once read (see `admitted`).
        let span = tracing::info_span!(
            "connection",
            group = %self.group.name,
            target = %self.target,
            client = tracing::field::Empty,
            endpoint = tracing::field::Empty
        );
        async move {
            tracing::debug!(peer = %self.peer, "connection accepted");
            let result = self.run(client).await;
            let t = self.counters.totals();
            let (to_broker, to_client, requests) = (t.to_broker, t.to_client, t.requests);
            match result {
                Ok(closed) => {
                    tracing::debug!(to_broker, to_client, requests, reason = ?closed, "connection closed")
                }
                Err(e) if e.is_disconnect() => {
                    tracing::debug!(to_broker, to_client, requests, "connection ended: {e}")
                }
                Err(e) => {
                    let side = e.side();
                    self.counters.ended_by_error(side.name(), e.refusal());
                    if e.is_refusal() {
                        self.group.counters.refused(broker_of(self.target));
                    }
                    // A flood of failing connections must not fill the disk (throttle.rs).
                    let Some(suppressed) = self.group.access.throttle().admit() else { return };
                    let more = crate::throttle::suppressed_note(suppressed);
                    let peer = self.peer;
                    match side.level() {
                        Level::ERROR => {
                            tracing::error!(%side, %peer, to_broker, to_client, requests, "closing connection: {e}{more}")
                        }
                        Level::WARN => {
                            tracing::warn!(%side, %peer, to_broker, to_client, requests, "closing connection: {e}{more}")
                        }
                        _ => tracing::info!(%side, %peer, to_broker, to_client, requests, "closing connection: {e}{more}"),
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn run(&self, mut client: TcpStream) -> Result<Closed, SessionError> {
        upstream::tune(&client, self.group.keepalive).map_err(SessionError::client)?;
        // Bytes arriving on either socket end a worker's busy poll (runtime.rs).
        crate::runtime::watch(&client);
        // From accept, one deadline covers the PROXY header, the TLS handshake and the first
        // request's header: a client that sends nothing, or a byte a second, holds no broker
        // connection and goes at the deadline.
        let handshake = self.group.access.handshake();
        let deadline = tokio::time::Instant::now() + handshake;
        let _slot = self.group.access.enter()?;
        // The steps before the pumps are boxed: once per connection, and their timers and states
        // would otherwise be part of every idle connection's future (benches/README.md).
        let who =
            match Box::pin(tokio::time::timeout_at(deadline, self.group.access.admit(&mut client, self.peer))).await {
                Err(_) => return Err(SessionError::Handshake(handshake)),
                Ok(Err((refusal, who))) => {
                    if let Some(who) = who {
                        name_in_span(&who);
                    }
                    return Err(refusal.into());
                }
                Ok(Ok(who)) => who,
            };
        name_in_span(&who);
        if who.local {
            tracing::debug!("a load balancer's health check (PROXY LOCAL): closing");
            return Ok(Closed::HealthCheck);
        }
        let client = match &self.group.tls {
            Some(tls) => Stream::Tls(Box::new(
                Box::pin(tokio::time::timeout_at(deadline, tls.accept(client)))
                    .await
                    .map_err(|_| SessionError::Handshake(handshake))??,
            )),
            None => Stream::Tcp(client),
        };
        let (mut client_rd, client_wr) = client.split();
        // The broker is dialed for a client that has said something in Kafka, not on accept.
        let mut first = BytesMut::new();
        let first_request = Box::pin(tokio::time::timeout_at(deadline, self.first_request(&mut client_rd, &mut first)));
        let first_request = tokio::select! {
            biased;
            // Draining: a client that has not asked anything yet is closed, nothing dialed.
            _ = self.drain.cancelled() => return Ok(Closed::Drained),
            r = first_request => r,
        };
        match first_request {
            Err(_) => return Err(SessionError::Handshake(handshake)),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(false)) => return Ok(Closed::ByClient),
            Ok(Ok(true)) => {}
        }
        let dialing = Instant::now();
        let upstream = self.group.dialer.dial(self.target).await;
        self.counters.dialed(dialing.elapsed(), upstream.is_ok());
        let upstream = upstream?;
        crate::runtime::watch(upstream.tcp());
        let (upstream_rd, upstream_wr) = upstream.split();
        let start = Start { buf: first, deadline: Some(deadline) };
        self.pump(client_rd, client_wr, upstream_rd, upstream_wr, start).await
    }

    /// Reads until the first request's header is in `buf` (false: the client closed first), and
    /// refuses what cannot be one before anything is dialed: a second PROXY header, or one on a
    /// listener that expects none, TLS on a plaintext listener, a malformed or oversized frame, a
    /// version the gateway could not rewrite.
    async fn first_request(&self, from: &mut impl Source, buf: &mut BytesMut) -> Result<bool, SessionError> {
        let limits = self.group.limits;
        loop {
            if !fill(from, buf, usize::MAX).await.map_err(SessionError::client)? {
                return Ok(false);
            }
            // Checked before the size: a large frame limit could take a header's first bytes for one.
            if proxy::looks_like_header(buf) {
                return Err(match self.group.access.rules().proxy_protocol {
                    crate::config::ProxyProtocol::Required => SessionError::ProxyHeaderAgain,
                    crate::config::ProxyProtocol::Off => SessionError::UnexpectedProxyHeader,
                });
            }
            let len = match frame::frame_len(buf, MIN_REQUEST, limits.request) {
                Ok(Peek::Ready(len)) => len,
                Ok(Peek::NeedMore) => continue,
                Err(_) if buf.starts_with(&[0x16, 0x03]) => return Err(SessionError::TlsOnPlaintext),
                Err(e) => return Err(e.into()),
            };
            if let Peek::Ready(head) = frame::peek_request(buf, len)? {
                self.group.caps.plan(head.api_key, head.api_version)?;
                return Ok(true);
            }
        }
    }

    /// Runs both directions until one of them ends (or, with `access.idle_timeout_secs`, the client
    /// has been idle that long).
    async fn pump(
        &self,
        client_rd: impl Source,
        client_wr: impl Sink,
        upstream_rd: impl Source,
        upstream_wr: impl Sink,
        start: Start,
    ) -> Result<Closed, SessionError> {
        let inflight = Inflight::default();
        let (client_wr, mut upstream_wr) = (self.counters.to_client(client_wr), self.counters.to_broker(upstream_wr));
        // Lent, so that a drain's end of the requests leaves the broker's connection open.
        let requests = self.requests(client_rd, &mut upstream_wr, &inflight, start);
        let responses = self.responses(upstream_rd, client_wr, &inflight);
        let idle = self.group.access.rules().idle_timeout;
        // Boxed, and only with a timeout: its timer would otherwise cost every connection.
        let idle_watch = async { Box::pin(idle_watch(idle, &self.counters, &inflight)).await };
        tokio::pin!(requests, responses, idle_watch);
        let mut draining = false;
        loop {
            tokio::select! {
                r = &mut requests, if !draining => match r {
                    // No request goes out any more; the answers to those that did still come back.
                    Ok(Closed::Drained) if !inflight.is_empty() => draining = true,
                    r => return r,
                },
                r = &mut responses => return r,
                closed = &mut idle_watch, if idle.is_some() => return Ok(closed),
            }
        }
    }

    /// Client to broker: every byte is forwarded as it came; headers are only read, to note which
    /// responses will need a rewrite and to refuse versions the gateway could not rewrite.
    async fn requests(
        &self,
        mut from: impl Source,
        mut to: impl Sink,
        inflight: &Inflight,
        start: Start,
    ) -> Result<Closed, SessionError> {
        let limits = self.group.limits;
        let handshake = self.group.access.handshake();
        let Start { mut buf, deadline: mut first } = start;
        let mut place = Place::default();
        // The first request's header is already in `buf`: it is handled before anything is read.
        let mut unread = !buf.is_empty();
        let mut started = 0u32;
        // One wait for the drain for the whole pump, polled again at each read: made anew per read,
        // it would register with the token and leave it again for every request.
        let drain = self.drain.cancelled();
        tokio::pin!(drain);
        loop {
            if !std::mem::take(&mut unread) {
                let limit = place.read_limit();
                let within = place.rest > 0 || !buf.is_empty();
                // Timed reads are boxed: a timer kept in the pump's state would cost every idle
                // connection its size (benches/README.md, "Connection scale"), and they happen
                // only within a request, once per read of a frame larger than a read.
                let read = async {
                    let read = fill(&mut from, &mut buf, limit);
                    if let Some(deadline) = first {
                        // The first request must be whole by the handshake deadline.
                        Box::pin(tokio::time::timeout_at(deadline, read))
                            .await
                            .map_err(|_| SessionError::FirstIncomplete(handshake))
                    } else if within {
                        // Within a request: a pause as long as the handshake timeout ends the connection.
                        Box::pin(tokio::time::timeout(handshake, read))
                            .await
                            .map_err(|_| SessionError::Stalled(handshake))
                    } else {
                        // Between requests a client may be quiet as long as it likes (or the idle timeout).
                        Ok(read.await)
                    }
                };
                // A drain stops here only between frames: what is in the buffer then is at most the
                // start of a frame not a byte of which reached the broker.
                let filled = tokio::select! {
                    biased;
                    _ = &mut drain, if place.rest == 0 => {
                        inflight.stop();
                        return Ok(Closed::Drained);
                    }
                    filled = read => filled?,
                };
                if !filled.map_err(SessionError::client)? {
                    return Ok(Closed::ByClient);
                }
            }
            while place.frame_done(buf.len()) {
                let next = &buf[place.ready..];
                if inflight.raw_next() {
                    // A bare SASL token after SaslHandshake v0: a size and bytes, nothing to read.
                    let Peek::Ready(len) = frame::frame_len(next, 0, limits.request)? else { break };
                    inflight.push_raw();
                    place.rest = len;
                    continue;
                }
                let len = match frame::frame_len(next, MIN_REQUEST, limits.request) {
                    Ok(Peek::Ready(len)) => len,
                    Ok(Peek::NeedMore) => break,
                    // What a TLS ClientHello's first bytes make of a size prefix.
                    Err(_) if next.starts_with(&[0x16, 0x03]) => return Err(SessionError::TlsOnPlaintext),
                    Err(e) => return Err(e.into()),
                };
                let Peek::Ready(head) = frame::peek_request(next, len)? else { break };
                let action = self.group.caps.plan(head.api_key, head.api_version)?;
                if head.api_key == SASL_HANDSHAKE && head.api_version == 0 {
                    // Its mechanism says how many bare tokens follow; the frame is a few bytes.
                    if next.len() < len {
                        break;
                    }
                    let mechanism = sasl::handshake_mechanism(&next[..len]).map_err(FrameError::BadHeader)?;
                    let tokens = sasl::raw_tokens(mechanism).ok_or_else(|| SessionError::RawSasl(mechanism.into()))?;
                    inflight.expect_raw(tokens);
                }
                trace!(
                    api_key = head.api_key,
                    version = head.api_version,
                    correlation_id = head.correlation_id,
                    ?action,
                    "request"
                );
                self.counters.request(head.api_key, head.api_version);
                started += 1;
                if head.expects_response {
                    // Before the bytes leave: the response may come back before this loop ends.
                    inflight.push(Pending {
                        correlation_id: head.correlation_id,
                        api_key: head.api_key,
                        api_version: head.api_version,
                        action,
                        sent: self.counters.clock(),
                    });
                }
                place.rest = len;
            }
            if first.is_some() && (started > 1 || started == 1 && place.rest == 0) {
                first = None;
            }
            if place.ready > 0 {
                to.write_all(&buf[..place.ready]).await.map_err(SessionError::broker)?;
                // A TLS sink may hold the bytes until flushed; a socket's flush does nothing.
                to.flush().await.map_err(SessionError::broker)?;
                buf.advance(std::mem::take(&mut place.ready));
            }
            // The first request moves through the buffer, under its deadline; later ones' bulk may
            // move in the kernel, where a pause as long as the handshake timeout ends it too.
            let splice_min = if first.is_some() { 0 } else { limits.splice_min };
            match splice_rest(&from, &to, &buf, &mut place, splice_min, Some(handshake)).await {
                Ok(Spliced::Done) => {}
                // The client closed within a request: as at any other close, nothing more to send.
                Ok(Spliced::SourceEnded) => return Ok(Closed::ByClient),
                Err((End::From, e)) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(SessionError::Stalled(handshake));
                }
                Err((side, e)) => {
                    return Err(SessionError::Io { side: side.of(Side::Client, Side::Broker), source: e });
                }
            }
            release(&mut buf);
        }
    }

    /// Broker to client: responses are matched to their requests in order; those marked for rewrite
    /// are read whole, rewritten and learned from, all others are forwarded as they came.
    async fn responses(
        &self,
        mut from: impl Source,
        mut to: impl Sink,
        inflight: &Inflight,
    ) -> Result<Closed, SessionError> {
        let limits = self.group.limits;
        let mut buf = BytesMut::new();
        let mut place = Place::default();
        let mut answered = false;
        // The forwarded response whose rest is still to come: timed when its last byte is passed on.
        let mut passing: Option<Pending> = None;
        loop {
            if !fill(&mut from, &mut buf, place.read_limit()).await.map_err(SessionError::broker)? {
                return match (answered, inflight.is_empty(), buf.is_empty() && place.rest == 0) {
                    (false, false, _) => Err(SessionError::NoAnswer),
                    (_, _, true) => Ok(Closed::ByBroker),
                    (_, _, false) => Err(SessionError::Truncated),
                };
            }
            // A TLS alert (0x15 0x03) or handshake (0x16 0x03) where a plaintext Kafka answer belongs.
            if !answered && from.socket().is_some() && matches!(buf[..], [0x15 | 0x16, 0x03, ..]) {
                return Err(SessionError::BrokerSpeaksTls);
            }
            while place.frame_done(buf.len()) {
                if let Some(done) = passing.take() {
                    self.counters.answered(done.api_key, done.sent);
                }
                let next = &buf[place.ready..];
                if inflight.next_action() == Some(Action::RawToken) {
                    // The answer to a bare SASL token is a bare token, possibly empty.
                    let Peek::Ready(len) =
                        frame::frame_len(next, 0, limits.request).map_err(SessionError::BadResponse)?
                    else {
                        break;
                    };
                    inflight.answer_raw(len - frame::SIZE_LEN);
                    (answered, place.rest) = (true, len);
                    continue;
                }
                // Forwarded responses may be as large as the client asked for; the limit applies to
                // what the gateway must hold in memory to rewrite.
                let Peek::Ready(len) =
                    frame::frame_len(next, MIN_RESPONSE, i32::MAX as usize).map_err(SessionError::BadResponse)?
                else {
                    break;
                };
                let Peek::Ready(correlation_id) = frame::peek_correlation_id(next) else { break };
                answered = true;
                let pending = match inflight.answer(correlation_id)? {
                    Answer::Pending(pending) => pending,
                    Answer::Stray => {
                        // Nobody asked for it: dropped, as the client would drop it.
                        if let Some(left_out) = STRAY.admit() {
                            warn!(
                                correlation_id,
                                left_out,
                                "a response answers no request (a broker answering an acks=0 Produce does that): dropped"
                            );
                        }
                        if len > limits.response {
                            return Err(SessionError::ResponseTooLarge { size: len, limit: limits.response });
                        }
                        to.write_all(&buf[..place.ready]).await.map_err(SessionError::client)?;
                        buf.advance(std::mem::take(&mut place.ready));
                        drop(read_whole(&mut from, &mut buf, len).await?);
                        continue;
                    }
                };
                if pending.action == Action::Forward {
                    place.rest = len;
                    passing = Some(pending);
                    continue;
                }
                if len > limits.response {
                    return Err(SessionError::ResponseTooLarge { size: len, limit: limits.response });
                }
                // Send what precedes this frame, then hold the frame whole, within the budget: until
                // there is room, nothing more is read from the broker (back-pressure).
                to.write_all(&buf[..place.ready]).await.map_err(SessionError::client)?;
                buf.advance(std::mem::take(&mut place.ready));
                let budget = &self.group.budget;
                // Boxed, as the write below: held answers are rare next to forwarded ones, and
                // their waits would otherwise enlarge every idle connection's state.
                let reserved = Box::pin(budget.reserve(len)).await?;
                let _held = self.counters.hold(len);
                let response = read_whole(&mut from, &mut buf, len).await?;
                let pieces = self.answer(&pending, &response)?;
                drop(response);
                let write = async {
                    for piece in pieces {
                        to.write_all(&piece).await?;
                    }
                    io::Result::Ok(())
                };
                match Box::pin(tokio::time::timeout(budget.wait(), write)).await {
                    Ok(written) => written.map_err(SessionError::client)?,
                    Err(_) => return Err(SessionError::SlowReader { bytes: len, waited: budget.wait() }),
                }
                drop(reserved);
                self.counters.answered(pending.api_key, pending.sent);
            }
            if place.ready > 0 {
                to.write_all(&buf[..place.ready]).await.map_err(SessionError::client)?;
                buf.advance(std::mem::take(&mut place.ready));
            }
            // A TLS sink may hold the bytes until flushed; a socket's flush does nothing.
            to.flush().await.map_err(SessionError::client)?;
            match splice_rest(&from, &to, &buf, &mut place, limits.splice_min, None).await {
                Ok(Spliced::Done) if place.rest == 0 => {
                    if let Some(done) = passing.take() {
                        self.counters.answered(done.api_key, done.sent);
                    }
                    if inflight.drained() && buf.is_empty() {
                        return Ok(Closed::Drained);
                    }
                }
                Ok(Spliced::Done) => {}
                Ok(Spliced::SourceEnded) => return Err(SessionError::Truncated),
                Err((side, e)) => {
                    return Err(SessionError::Io { side: side.of(Side::Broker, Side::Client), source: e });
                }
            }
            release(&mut buf);
        }
    }

    /// What the client gets for a response held whole: the rewritten frame, once every broker it
    /// names is learned (its listener open), or the gateway's own KIP-511 answer.
    fn answer(&self, pending: &Pending, response: &Bytes) -> Result<Vec<Bytes>, SessionError> {
        let kind = match pending.action {
            Action::Rewrite(kind) => kind,
            Action::ApiVersionsFallback => return Ok(vec![api_versions::fallback(pending.correlation_id).freeze()]),
            Action::Forward | Action::RawToken => unreachable!("forwarded responses are never held"),
        };
        let names = &*self.group.names;
        let rewritten = self.group.caps.rewrite(kind, pending.api_version, response, names);
        if let Some(recorder) = &self.group.recorder {
            recorder.record(pending, response, &rewritten, names.racks());
        }
        let learner = self.group.learner.upgrade();
        let rewritten = rewritten.inspect_err(|e| {
            if let (RewriteError::Name { .. }, Some(learner)) = (e, &learner) {
                learner.refresh_soon();
            }
        })?;
        if let Some(learner) = learner {
            learner.learn(&self.group.name, &rewritten.named)?;
        }
        self.counters.rewritten(kind);
        Ok(rewritten.pieces)
    }
}

/// Where a session's request pump starts: what was read before the broker was dialed (the first
/// request's header, at least), and the deadline by which that request must be whole.
#[derive(Default)]
struct Start {
    buf: BytesMut,
    deadline: Option<tokio::time::Instant>,
}

/// Ends a connection whose client has sent no request, and awaits no answer, for `idle` (between
/// one and one and a quarter times it). It looks at the connection's request count four times per
/// period, so a busy connection costs nothing more per request.
async fn idle_watch(idle: Option<Duration>, counters: &SessionCounters, inflight: &Inflight) -> Closed {
    let Some(idle) = idle else { return std::future::pending().await };
    let mut seen = counters.totals().requests;
    let mut quiet = 0;
    loop {
        tokio::time::sleep(idle / 4).await;
        let requests = counters.totals().requests;
        if requests != seen || !inflight.is_empty() {
            (seen, quiet) = (requests, 0);
            continue;
        }
        quiet += 1;
        if quiet == 4 {
            tracing::debug!("no request for {idle:?} (access.idle_timeout_secs): closing");
            return Closed::Idle;
        }
    }
}

/// Puts who is behind a connection into its span, so that every line of it names them.
fn name_in_span(who: &Admitted) {
    let span = tracing::Span::current();
    span.record("client", tracing::field::display(who.client));
    if let Some(endpoint) = &who.endpoint {
        span.record("endpoint", tracing::field::display(endpoint));
    }
}

/// A port's broker for metric labels: its node id, or None for the bootstrap port.
fn broker_of(target: Target) -> Option<i32> {
    match target {
        Target::Bootstrap => None,
        Target::Broker(n) => Some(n),
    }
}

/// Reads more bytes into `buf`, borrowing a pooled buffer if it has none, at most `limit` of them.
/// False at end of stream.
async fn fill(from: &mut impl Source, buf: &mut BytesMut, limit: usize) -> io::Result<bool> {
    if buf.is_empty() {
        from.ready().await?;
        if buf.capacity() == 0 {
            *buf = POOL.with_borrow_mut(Vec::pop).unwrap_or_default();
        }
    }
    if buf.capacity() - buf.len() < MIN_READ {
        // Reclaims the front of a buffer whose bytes were written, without allocating.
        buf.reserve(READ_CHUNK);
    }
    Ok(from.read_buf(&mut buf.limit(limit)).await? > 0)
}

/// Gives a drained buffer back to the worker's pool.
fn release(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > 0 {
        let drained = std::mem::take(buf);
        POOL.with_borrow_mut(|pool| {
            if pool.len() < POOL_PER_THREAD {
                pool.push(drained);
            }
        });
    }
}

/// How a [`splice_rest`] ended, when no socket failed.
enum Spliced {
    /// Nothing to splice, or all of the frame's rest moved.
    Done,
    /// The source ended within the frame.
    SourceEnded,
}

/// Which socket of a splice failed.
#[derive(Clone, Copy)]
enum End {
    From,
    To,
}

impl End {
    fn of(self, from: Side, to: Side) -> Side {
        match self {
            End::From => from,
            End::To => to,
        }
    }
}

/// Moves the rest of a large frame that goes on past the buffer from socket to socket in the kernel
/// (src/splice.rs), when both sides are sockets, the rest is at least `min` bytes (0 = never) and a
/// pipe can be had.
async fn splice_rest(
    from: &impl Source,
    to: &impl Sink,
    buf: &BytesMut,
    place: &mut Place,
    min: usize,
    stall: Option<Duration>,
) -> Result<Spliced, (End, io::Error)> {
    if min == 0 || place.rest < min || !buf.is_empty() {
        return Ok(Spliced::Done);
    }
    let sink = to;
    let (Some(from), Some(to)) = (from.socket(), to.socket()) else { return Ok(Spliced::Done) };
    let Some(pipe) = Pipe::take() else { return Ok(Spliced::Done) };
    // Boxed: only large frames are spliced, and the splice's state would otherwise be part of
    // every connection's.
    match Box::pin(pipe.forward(from, to, place.rest, stall)).await {
        Ok(Moved::All) => {
            sink.moved(std::mem::take(&mut place.rest));
            place.spliced = true;
            Ok(Spliced::Done)
        }
        Ok(Moved::Ended(moved)) => {
            sink.moved(moved);
            Ok(Spliced::SourceEnded)
        }
        Ok(Moved::Refused) => Ok(Spliced::Done),
        Err(Failed::Reading(e)) => Err((End::From, e)),
        Err(Failed::Writing(e)) => Err((End::To, e)),
    }
}

/// Where a pump stands in its stream: the first `ready` bytes of its buffer are whole frames or the
/// start of one, to be written as they are, and `rest` more bytes of the current frame are still to
/// come (they are forwarded as they arrive, never gathered).
#[derive(Default)]
struct Place {
    ready: usize,
    rest: usize,
    /// The last frame's bulk was spliced: the next is likely large too (see `AFTER_SPLICE_READ`).
    spliced: bool,
}

impl Place {
    /// How many bytes the next read may take; it resets the hint.
    fn read_limit(&mut self) -> usize {
        if std::mem::take(&mut self.spliced) { AFTER_SPLICE_READ } else { usize::MAX }
    }

    /// Counts the current frame's bytes among the `buffered` ones as ready. True when the frame is
    /// complete, so that the next one starts at `ready`; false while it goes on past the buffer.
    fn frame_done(&mut self, buffered: usize) -> bool {
        let take = self.rest.min(buffered - self.ready);
        self.ready += take;
        self.rest -= take;
        self.rest == 0
    }
}

/// Takes the `len`-byte frame that starts at the front of `buf` out whole. A frame larger than what
/// `buf` holds is read into one allocation of exactly its size, never past its end, so `buf` stays
/// the size of a read chunk: grown to a large response, a pooled buffer would keep that memory for
/// as long as the process runs.
async fn read_whole(from: &mut impl Source, buf: &mut BytesMut, len: usize) -> Result<Bytes, SessionError> {
    if buf.len() >= len {
        return Ok(buf.split_to(len).freeze());
    }
    let mut whole = BytesMut::with_capacity(len);
    whole.extend_from_slice(buf);
    buf.clear();
    while whole.len() < len {
        let room = len - whole.len();
        if from.read_buf(&mut (&mut whole).limit(room)).await.map_err(SessionError::broker)? == 0 {
            return Err(SessionError::Truncated);
        }
    }
    Ok(whole.freeze())
}

/// Sessions over in-memory streams, for tests and benchmarks: the pumps of a real session, with no
/// socket, no dialing and no learning.
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use super::*;
    use crate::topology::Topology;
    use crate::upstream::Link;
    use tokio::io::{AsyncRead, AsyncWrite};

    struct NoLearning;

    impl Learn for NoLearning {
        fn learn(&self, _: &str, _: &[crate::broker::Named<'_>]) -> Result<(), LearnError> {
            Ok(())
        }

        fn refresh_soon(&self) {}
    }

    /// A group that names brokers with `names`, learns nothing, and counts (as a running
    /// gateway does: benches measure the pumps with counting on).
    pub fn group(limits: Limits, names: Arc<dyn Advertise + Send + Sync>) -> Arc<Group> {
        counting(limits, names, GroupCounters::new(&crate::metrics::Metrics::new(), "test"))
    }

    /// The same, holding responses within `budget`.
    pub fn with_budget(limits: Limits, names: Arc<dyn Advertise + Send + Sync>, budget: Arc<Budget>) -> Arc<Group> {
        let group = counting(limits, names, GroupCounters::off());
        let mut group = Arc::into_inner(group).expect("not shared yet");
        group.budget = budget;
        Arc::new(group)
    }

    /// The same, counting into `counters`.
    pub fn counting(limits: Limits, names: Arc<dyn Advertise + Send + Sync>, counters: GroupCounters) -> Arc<Group> {
        let learner: Weak<dyn Learn> = Weak::<NoLearning>::new();
        Arc::new(Group {
            name: "test".into(),
            names,
            learner,
            dialer: Arc::new(Dialer::new(
                Vec::new(),
                Arc::new(Topology::default()),
                Link::plain(Duration::from_secs(1)),
            )),
            tls: None,
            limits,
            caps: Caps::default(),
            keepalive: None,
            recorder: None,
            counters,
            access: Arc::new(Gate::new(crate::config::Access::default(), Duration::from_secs(10))),
            budget: Budget::unlimited(),
        })
    }

    /// Runs the pumps of a session of `group` between two streams until one ends, or until `drain`
    /// is cancelled and what is in flight is answered.
    pub async fn proxy_in(
        group: Arc<Group>,
        client: impl AsyncRead + AsyncWrite,
        broker: impl AsyncRead + AsyncWrite,
        drain: CancellationToken,
    ) -> Result<Closed, SessionError> {
        let session = Session::new(group, Target::Bootstrap, SocketAddr::from(([127, 0, 0, 1], 0)), drain);
        let ((crd, cwr), (brd, bwr)) = (tokio::io::split(client), tokio::io::split(broker));
        session.pump(crd, cwr, brd, bwr, Start::default()).await
    }

    /// Runs a session's pumps between a client's and a broker's end of two streams until one ends.
    pub async fn proxy(
        client: impl AsyncRead + AsyncWrite,
        broker: impl AsyncRead + AsyncWrite,
        limits: Limits,
        names: Arc<dyn Advertise + Send + Sync>,
    ) -> Result<Closed, SessionError> {
        proxy_in(group(limits, names), client, broker, CancellationToken::new()).await
    }

    /// Runs a session's pumps over connected sockets (which splice, and half-close when a write
    /// end is dropped), for tests of this crate.
    #[cfg(test)]
    pub(crate) async fn proxy_sockets(
        client: TcpStream,
        broker: TcpStream,
        limits: Limits,
        names: Arc<dyn Advertise + Send + Sync>,
        drain: CancellationToken,
    ) -> Result<Closed, SessionError> {
        let session =
            Session::new(group(limits, names), Target::Bootstrap, SocketAddr::from(([127, 0, 0, 1], 0)), drain);
        let ((crd, cwr), (brd, bwr)) = (Stream::Tcp(client).split(), Stream::Tcp(broker).split());
        session.pump(crd, cwr, brd, bwr, Start::default()).await
    }
}

#[cfg(test)]
mod tests;
