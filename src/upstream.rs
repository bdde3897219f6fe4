//! The broker side of a session: what a listener's connections reach ([`Target`]), dialing it
//! ([`Dialer`]), and the gateway's own small Kafka client that asks the cluster which brokers it has
//! (ApiVersions, then Metadata).
//!
//! The gateway only ever dials configured bootstrap servers and addresses the cluster advertises,
//! never an address a client sent.

use std::fmt;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, MetadataRequest, MetadataResponse, RequestHeader, SaslAuthenticateRequest,
    SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Encodable, Message, StrBytes};
use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::broker::{Broker, HostPort, NameError, Rack};
use crate::config::Sasl;
use crate::rewrite::{RewriteError, api_versions, metadata};
use crate::sasl::{self, Exchange, SaslError};
use crate::stream::Stream;
use crate::tls::{Connector, TlsError};
use crate::topology::Topology;
use crate::wire::{SIZE_LEN, WireError};

/// The client id the gateway's own requests carry, visible in broker logs.
const CLIENT_ID: &str = "kafka-gateway";
/// The newest Metadata version the gateway asks for: v1+ brings racks, v13 is what it decodes.
const METADATA_MAX: i16 = MetadataResponse::VERSIONS.max;
/// The gateway's own responses are small; anything larger is not a Metadata answer.
const MAX_OWN_RESPONSE: usize = 64 * 1024 * 1024;

/// What a listener's connections reach. Ordered bootstrap first, then brokers by node id.
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

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: HostPort, source: std::io::Error },
    #[error("connecting to {addr} timed out after {timeout:?}")]
    ConnectTimeout { addr: HostPort, timeout: Duration },
    #[error("{addr}: {source}")]
    Io { addr: HostPort, source: std::io::Error },
    #[error("{addr} did not answer within {timeout:?}")]
    Timeout { addr: HostPort, timeout: Duration },
    #[error("{addr} sent a response the gateway cannot read: {source}")]
    Protocol { addr: HostPort, source: ProtocolError },
    #[error("{addr} refused {api}: error code {code}")]
    Refused { addr: HostPort, api: &'static str, code: i16 },
    #[error("{addr}: {source}")]
    Tls { addr: HostPort, source: TlsError },
    #[error("{addr}: {source}")]
    Sasl { addr: HostPort, source: SaslError },
    #[error("broker {0} is not known to the gateway (yet)")]
    UnknownBroker(i32),
    #[error("no upstream server answered: {}", Failures(.0))]
    NoneAnswered(Vec<UpstreamError>),
}

/// What was wrong with an answer to the gateway's own request.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error(transparent)]
    Rewrite(#[from] RewriteError),
    #[error("response size {0}")]
    Size(i32),
    #[error("correlation id {got}, expected {expected}")]
    Correlation { got: i32, expected: i32 },
    #[error("no Metadata in ApiVersions")]
    NoMetadata,
    #[error("cannot encode the request: {0:#}")]
    Encode(anyhow::Error),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("the answer starts like a TLS record: the broker's listener speaks TLS; configure [upstream.tls]")]
    TlsAnswer,
    #[error(
        "the server closed the connection without answering (a TLS listener does that to plaintext: \
         configure [upstream.tls]; a SASL listener to an unauthenticated client: configure [upstream.sasl])"
    )]
    Closed,
}

/// Several failures, one after the other.
struct Failures<'a>(&'a [UpstreamError]);

impl fmt::Display for Failures<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// How the gateway reaches the brokers: timeouts, keepalive, TLS, and the SASL its own connections
/// authenticate with.
#[derive(Clone)]
pub struct Link {
    pub connect_timeout: Duration,
    pub keepalive: Option<Duration>,
    pub tls: Option<Arc<Connector>>,
    pub sasl: Option<Sasl>,
}

impl Link {
    /// The link `[upstream]` describes, its TLS material loaded.
    pub fn load(config: &crate::config::Config) -> Result<Self, TlsError> {
        let upstream = &config.upstream;
        Ok(Self {
            connect_timeout: upstream.connect_timeout,
            keepalive: config.tcp_keepalive,
            tls: upstream.tls.as_ref().map(Connector::load).transpose()?.map(Arc::new),
            sasl: upstream.sasl.clone(),
        })
    }

    /// Plain TCP, no SASL: what tests and tools reach a gateway or a test broker with.
    pub fn plain(connect_timeout: Duration) -> Self {
        Self { connect_timeout, keepalive: None, tls: None, sasl: None }
    }

    /// Dials `addr` and applies the socket options of both sides of a session, then TLS if the
    /// link has it (its certificate checked for `addr`'s host, as a client would).
    pub async fn connect(&self, addr: &HostPort) -> Result<Stream, UpstreamError> {
        let limit = self.connect_timeout;
        let tcp = match timeout(limit, TcpStream::connect((addr.host.as_str(), addr.port))).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => return Err(UpstreamError::Connect { addr: addr.clone(), source }),
            Err(_) => return Err(UpstreamError::ConnectTimeout { addr: addr.clone(), timeout: limit }),
        };
        tune(&tcp, self.keepalive).map_err(|source| UpstreamError::Io { addr: addr.clone(), source })?;
        let Some(tls) = &self.tls else { return Ok(Stream::Tcp(tcp)) };
        match timeout(limit, tls.connect(&addr.host, tcp)).await {
            Ok(Ok(stream)) => Ok(Stream::Tls(Box::new(stream))),
            Ok(Err(source)) => Err(UpstreamError::Tls { addr: addr.clone(), source }),
            Err(_) => Err(UpstreamError::ConnectTimeout { addr: addr.clone(), timeout: limit }),
        }
    }
}

/// Dials what a target reaches: a known broker at the address the cluster advertises for it, or
/// the bootstrap servers in turn (then every known broker), starting one further each time so that
/// connections spread over them.
pub struct Dialer {
    /// Replaced by a reload; read at every dial.
    bootstrap: RwLock<Vec<HostPort>>,
    topology: Arc<Topology>,
    link: RwLock<Arc<Link>>,
    next: AtomicUsize,
}

impl Dialer {
    pub fn new(bootstrap: Vec<HostPort>, topology: Arc<Topology>, link: Link) -> Self {
        Self {
            bootstrap: RwLock::new(bootstrap),
            topology,
            link: RwLock::new(Arc::new(link)),
            next: AtomicUsize::new(0),
        }
    }

    pub async fn dial(&self, target: Target) -> Result<Stream, UpstreamError> {
        let link = self.link();
        match target {
            Target::Broker(node_id) => {
                let addr = self.topology.upstream(node_id).ok_or(UpstreamError::UnknownBroker(node_id))?;
                let stream = link.connect(&addr).await?;
                tracing::debug!(node_id, upstream = %addr, "connected to broker");
                Ok(stream)
            }
            Target::Bootstrap => {
                let configured = self.bootstrap.read().unwrap_or_else(|p| p.into_inner()).len();
                let mut candidates = self.candidates();
                let start = self.next.fetch_add(1, Ordering::Relaxed) % configured.max(1);
                candidates[..configured].rotate_left(start);
                let mut failures = Vec::new();
                for addr in &candidates {
                    // Host names are resolved at every attempt: a headless service's addresses change.
                    match link.connect(addr).await {
                        Ok(stream) => {
                            tracing::debug!(upstream = %addr, "connected to bootstrap server");
                            return Ok(stream);
                        }
                        Err(e) => failures.push(e),
                    }
                }
                Err(UpstreamError::NoneAnswered(failures))
            }
        }
    }

    /// The configured bootstrap servers, then every known broker not among them.
    pub fn candidates(&self) -> Vec<HostPort> {
        let mut all = self.bootstrap.read().unwrap_or_else(|p| p.into_inner()).clone();
        for broker in self.topology.snapshot().into_values() {
            if !all.contains(&broker.upstream) {
                all.push(broker.upstream);
            }
        }
        all
    }

    /// How brokers are reached now.
    pub fn link(&self) -> Arc<Link> {
        Arc::clone(&self.link.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// A reload's new bootstrap servers, for the next connections and discoveries.
    pub fn set_bootstrap(&self, servers: Vec<HostPort>) {
        *self.bootstrap.write().unwrap_or_else(|p| p.into_inner()) = servers;
    }

    /// A reload's new link (TLS, SASL, timeouts), for the next connections.
    pub fn set_link(&self, link: Link) {
        *self.link.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(link);
    }
}

/// No Nagle delay (Kafka clients and brokers set it too), and keepalive so that idle connections
/// survive load balancers that forget quiet flows.
pub fn tune(stream: &TcpStream, keepalive: Option<Duration>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    if let Some(idle) = keepalive {
        let params = TcpKeepalive::new().with_time(idle).with_interval(Duration::from_secs(10)).with_retries(6);
        SockRef::from(stream).set_tcp_keepalive(&params)?;
    }
    Ok(())
}

/// The cluster as one broker describes it.
#[derive(Debug, Clone)]
pub struct ClusterView {
    /// The server that answered.
    pub answered_by: HostPort,
    pub cluster_id: Option<String>,
    pub brokers: Vec<Broker>,
    /// Brokers advertised at something that is not an address.
    pub unusable: Vec<NameError>,
}

/// Asks the servers in turn for the cluster's brokers; the first that answers describes it.
pub async fn describe_cluster(servers: &[HostPort], link: &Link) -> Result<ClusterView, UpstreamError> {
    let mut failures = Vec::new();
    for addr in servers {
        match describe_via(addr, link).await {
            Ok(view) => return Ok(view),
            Err(e) => failures.push(e),
        }
    }
    Err(UpstreamError::NoneAnswered(failures))
}

/// Asks one server for the cluster's brokers.
pub async fn describe_via(addr: &HostPort, link: &Link) -> Result<ClusterView, UpstreamError> {
    let mut conn = Connection::open(addr, link).await?;
    let protocol = |e: RewriteError| UpstreamError::Protocol { addr: addr.clone(), source: e.into() };
    // Answers are read by the same walkers as rewrites: broker bytes never meet a decoder that
    // allocates by lengths from the wire.
    let frame = conn.call_raw(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default()).await?;
    let (error_code, api_keys) = api_versions::read(&frame, 0).map_err(protocol)?;
    if error_code != 0 {
        return Err(UpstreamError::Refused { addr: addr.clone(), api: "ApiVersions", code: error_code });
    }
    let version = api_keys
        .iter()
        .find(|(key, _, _)| *key == ApiKey::Metadata as i16)
        .map(|(_, _, max)| (*max).min(METADATA_MAX))
        .ok_or_else(|| UpstreamError::Protocol { addr: addr.clone(), source: ProtocolError::NoMetadata })?;
    // v0 has no way to ask for no topics (empty means all); v1+ asks for none.
    let request = MetadataRequest::default().with_topics((version >= 1).then(Vec::new));
    let frame = conn.call_raw(ApiKey::Metadata, version, &request).await?;
    let (named, cluster_id) = metadata::read(&frame, version).map_err(protocol)?;
    let (mut brokers, mut unusable) = (Vec::new(), Vec::new());
    for b in &named {
        let rack = match b.rack {
            Rack::Reported(rack) => rack.map(str::to_owned),
            Rack::Unreported => None,
        };
        match b.upstream() {
            Ok(upstream) => brokers.push(Broker { node_id: b.node_id, upstream, rack }),
            Err(e) => unusable.push(e),
        }
    }
    Ok(ClusterView { answered_by: addr.clone(), cluster_id: cluster_id.map(str::to_owned), brokers, unusable })
}

/// One connection of the gateway's own client: one request at a time.
pub struct Connection {
    stream: Stream,
    addr: HostPort,
    limit: Duration,
    next_id: i32,
}

impl Connection {
    /// Connects to `addr` (TLS if the link has it) and authenticates with the link's SASL;
    /// `connect_timeout` bounds the connect and every later exchange.
    pub async fn open(addr: &HostPort, link: &Link) -> Result<Self, UpstreamError> {
        let stream = link.connect(addr).await?;
        let mut conn = Self { stream, addr: addr.clone(), limit: link.connect_timeout, next_id: 1 };
        if let Some(sasl) = &link.sasl {
            conn.authenticate(sasl).await?;
        }
        Ok(conn)
    }

    /// SaslHandshake v1, then SaslAuthenticate v1 until the mechanism has said everything.
    async fn authenticate(&mut self, config: &Sasl) -> Result<(), UpstreamError> {
        let addr = self.addr.clone();
        let sasl = |source| UpstreamError::Sasl { addr: addr.clone(), source };
        let wire = |e: WireError| UpstreamError::Protocol { addr: addr.clone(), source: e.into() };
        let mechanism = config.mechanism.name();
        let request = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
        let frame = self.call_raw(ApiKey::SaslHandshake, 1, &request).await?;
        let (code, offered) = sasl::read_handshake(&frame).map_err(wire)?;
        match code {
            0 => {}
            // UNSUPPORTED_SASL_MECHANISM
            33 => {
                let offered = offered.into_iter().map(str::to_owned).collect();
                return Err(sasl(SaslError::Unsupported { wanted: mechanism, offered }));
            }
            code => return Err(sasl(SaslError::Handshake(code))),
        }
        let mut exchange = Exchange::start(config).map_err(sasl)?;
        let mut token = exchange.step(None).map_err(sasl)?;
        while let Some(bytes) = token {
            let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes));
            let frame = self.call_raw(ApiKey::SaslAuthenticate, 1, &request).await?;
            let (code, message, answer) = sasl::read_authenticate(&frame).map_err(wire)?;
            if code != 0 {
                return Err(sasl(exchange.refused(message)));
            }
            token = if exchange.is_done() { None } else { exchange.step(Some(answer)).map_err(sasl)? };
        }
        Ok(())
    }

    /// Sends one request and returns its response frame (size prefix included), after checking
    /// the correlation id.
    pub async fn call_raw<Req: Encodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Bytes, UpstreamError> {
        let protocol = |source| UpstreamError::Protocol { addr: self.addr.clone(), source };
        let correlation_id = self.next_id;
        self.next_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut out = BytesMut::new();
        out.put_i32(0);
        header.encode(&mut out, key.request_header_version(version)).map_err(|e| protocol(ProtocolError::Encode(e)))?;
        request.encode(&mut out, version).map_err(|e| protocol(ProtocolError::Encode(e)))?;
        let size = (out.len() - SIZE_LEN) as i32;
        out[..SIZE_LEN].copy_from_slice(&size.to_be_bytes());

        let exchange = async {
            self.stream.write_all(&out).await?;
            self.stream.flush().await?;
            let size = match self.stream.read_i32().await {
                Err(e) if matches!(e.kind(), ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset) => {
                    return Ok(Err(ProtocolError::Closed));
                }
                size => size?,
            };
            // 0x15 0x03 (a TLS alert) or 0x16 0x03 (a handshake): a TLS listener answered plaintext.
            if matches!(size.to_be_bytes(), [0x15 | 0x16, 0x03, _, _]) && self.stream.is_tcp() {
                return Ok(Err(ProtocolError::TlsAnswer));
            }
            let len = usize::try_from(size).ok().filter(|&l| (4..=MAX_OWN_RESPONSE).contains(&l));
            let Some(len) = len else {
                return Ok(Err(ProtocolError::Size(size)));
            };
            let mut frame = vec![0; SIZE_LEN + len];
            frame[..SIZE_LEN].copy_from_slice(&size.to_be_bytes());
            self.stream.read_exact(&mut frame[SIZE_LEN..]).await?;
            Ok::<_, std::io::Error>(Ok(Bytes::from(frame)))
        };
        let frame = match timeout(self.limit, exchange).await {
            Err(_) => return Err(UpstreamError::Timeout { addr: self.addr.clone(), timeout: self.limit }),
            Ok(Err(source)) => return Err(UpstreamError::Io { addr: self.addr.clone(), source }),
            Ok(Ok(Err(e))) => return Err(protocol(e)),
            Ok(Ok(Ok(frame))) => frame,
        };
        let got = i32::from_be_bytes(frame[SIZE_LEN..SIZE_LEN + 4].try_into().expect("4 bytes"));
        if got != correlation_id {
            return Err(protocol(ProtocolError::Correlation { got, expected: correlation_id }));
        }
        Ok(frame)
    }

    /// The connection itself, to read what comes after (tests).
    #[cfg(feature = "testing")]
    pub fn into_stream(self) -> Stream {
        self.stream
    }

    /// Sends one request and decodes its response with kafka-protocol, for tests.
    #[cfg(feature = "testing")]
    pub async fn call<
        Req: Encodable,
        Resp: kafka_protocol::protocol::Decodable + kafka_protocol::protocol::HeaderVersion,
    >(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Req,
    ) -> anyhow::Result<Resp> {
        use kafka_protocol::protocol::Decodable;
        let frame = self.call_raw(key, version, request).await?;
        let mut body = frame.slice(SIZE_LEN..);
        kafka_protocol::messages::ResponseHeader::decode(&mut body, Resp::header_version(version))?;
        Resp::decode(&mut body, version)
    }
}
