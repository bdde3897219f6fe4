//! The other end of a session: dialing brokers, and the gateway's own small Kafka client that asks
//! the cluster which brokers it has (ApiVersions, then Metadata).
//!
//! The gateway only ever dials configured bootstrap servers and addresses the cluster advertises,
//! never an address a client sent.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, StrBytes};
use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::config::HostPort;
use crate::frame::SIZE_LEN;
use crate::rewrite::{self, Address, RewriteError, api_versions, metadata};

/// The client id the gateway's own requests carry, visible in broker logs.
const CLIENT_ID: &str = "kafka-gateway";
/// The newest Metadata version the gateway asks for: v1+ brings racks, v13 is what it decodes.
const METADATA_MAX: i16 = MetadataResponse::VERSIONS.max;
/// The gateway's own responses are small; anything larger is not a Metadata answer.
const MAX_OWN_RESPONSE: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("connecting to {addr} timed out after {timeout:?}")]
    ConnectTimeout { addr: String, timeout: Duration },
    #[error("{addr}: {source}")]
    Io { addr: String, source: std::io::Error },
    #[error("{addr} did not answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("{addr} sent a response the gateway cannot read: {reason}")]
    Protocol { addr: String, reason: String },
    #[error("{addr} refused {api}: error code {code}")]
    Refused { addr: String, api: &'static str, code: i16 },
    #[error("no upstream server answered: {0}")]
    NoneAnswered(String),
}

/// Dials `addr` and applies the socket options of both sides of a session.
pub async fn connect(
    addr: &HostPort,
    limit: Duration,
    keepalive: Option<Duration>,
) -> Result<TcpStream, UpstreamError> {
    let stream = match timeout(limit, TcpStream::connect((addr.host.as_str(), addr.port))).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(source)) => return Err(UpstreamError::Connect { addr: addr.to_string(), source }),
        Err(_) => return Err(UpstreamError::ConnectTimeout { addr: addr.to_string(), timeout: limit }),
    };
    tune(&stream, keepalive).map_err(|source| UpstreamError::Io { addr: addr.to_string(), source })?;
    Ok(stream)
}

/// No Nagle delay (Kafka clients and brokers set it too), keepalive so that idle connections
/// survive load balancers that forget quiet flows, and bytes arriving end a worker's busy poll.
pub fn tune(stream: &TcpStream, keepalive: Option<Duration>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    crate::runtime::watch(stream);
    if let Some(idle) = keepalive {
        let params = TcpKeepalive::new().with_time(idle).with_interval(Duration::from_secs(10)).with_retries(6);
        SockRef::from(stream).set_tcp_keepalive(&params)?;
    }
    Ok(())
}

/// The cluster as one broker describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// The server that answered.
    pub answered_by: HostPort,
    pub cluster_id: Option<String>,
    pub brokers: Vec<Address>,
}

/// Asks the first server of `servers` that answers for the cluster's brokers.
pub async fn describe_cluster(servers: &[HostPort], limit: Duration) -> Result<ClusterView, UpstreamError> {
    let mut failures = Vec::new();
    for addr in servers {
        match describe_via(addr, limit).await {
            Ok(view) => return Ok(view),
            Err(e) => failures.push(e.to_string()),
        }
    }
    Err(UpstreamError::NoneAnswered(failures.join("; ")))
}

/// Asks one server for the cluster's brokers.
pub async fn describe_via(addr: &HostPort, limit: Duration) -> Result<ClusterView, UpstreamError> {
    let mut conn = Connection::open(addr, limit).await?;
    let protocol = |e: RewriteError| UpstreamError::Protocol { addr: addr.to_string(), reason: e.to_string() };
    // Answers are read by the same walkers as rewrites: broker bytes never meet a decoder that
    // allocates by lengths from the wire.
    let frame = conn.call_raw(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default()).await?;
    let (error_code, api_keys) = api_versions::read(&frame, 0).map_err(protocol)?;
    if error_code != 0 {
        return Err(UpstreamError::Refused { addr: addr.to_string(), api: "ApiVersions", code: error_code });
    }
    let version = api_keys
        .iter()
        .find(|(key, _, _)| *key == ApiKey::Metadata as i16)
        .map(|(_, _, max)| (*max).min(METADATA_MAX))
        .ok_or_else(|| UpstreamError::Protocol {
            addr: addr.to_string(),
            reason: "no Metadata in ApiVersions".into(),
        })?;
    // v0 has no way to ask for no topics (empty means all); v1+ asks for none.
    let request = MetadataRequest::default().with_topics((version >= 1).then(Vec::new));
    let frame = conn.call_raw(ApiKey::Metadata, version, &request).await?;
    let (brokers, cluster_id) = metadata::read(&frame, version).map_err(protocol)?;
    Ok(ClusterView { answered_by: addr.clone(), cluster_id, brokers })
}

/// One connection of the gateway's own client: one request at a time. Public for tests and tools
/// that speak to a broker, or to the gateway, at a chosen API version.
pub struct Connection {
    stream: TcpStream,
    addr: HostPort,
    limit: Duration,
    next_id: i32,
}

impl Connection {
    /// Connects to `addr`; `limit` bounds the connect and every later exchange.
    pub async fn open(addr: &HostPort, limit: Duration) -> Result<Self, UpstreamError> {
        Ok(Self { stream: connect(addr, limit, None).await?, addr: addr.clone(), limit, next_id: 1 })
    }

    /// Sends one request and decodes its response with kafka-protocol (for tests and tools).
    pub async fn call<Req: Encodable, Resp: Decodable + HeaderVersion>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Resp, UpstreamError> {
        let frame = self.call_raw(key, version, request).await?;
        let protocol = |reason: String| UpstreamError::Protocol { addr: self.addr.to_string(), reason };
        let mut body = frame.slice(SIZE_LEN..);
        ResponseHeader::decode(&mut body, Resp::header_version(version)).map_err(|e| protocol(format!("{e:#}")))?;
        Resp::decode(&mut body, version)
            .map_err(|e| protocol(format!("{} v{version}: {e:#}", rewrite::api_name(key as i16))))
    }

    /// Sends one request and returns its response frame (size prefix included), after checking
    /// the correlation id.
    pub async fn call_raw<Req: Encodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Bytes, UpstreamError> {
        let protocol = |reason: String| UpstreamError::Protocol { addr: self.addr.to_string(), reason };
        let correlation_id = self.next_id;
        self.next_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut out = BytesMut::new();
        out.put_i32(0);
        header.encode(&mut out, key.request_header_version(version)).map_err(|e| protocol(format!("{e:#}")))?;
        request.encode(&mut out, version).map_err(|e| protocol(format!("{e:#}")))?;
        let size = (out.len() - SIZE_LEN) as i32;
        out[..SIZE_LEN].copy_from_slice(&size.to_be_bytes());

        let exchange = async {
            self.stream.write_all(&out).await?;
            let size = self.stream.read_i32().await?;
            let len = usize::try_from(size).ok().filter(|&l| (4..=MAX_OWN_RESPONSE).contains(&l));
            let Some(len) = len else {
                return Ok(Err(format!("response size {size}")));
            };
            let mut frame = vec![0; SIZE_LEN + len];
            frame[..SIZE_LEN].copy_from_slice(&size.to_be_bytes());
            self.stream.read_exact(&mut frame[SIZE_LEN..]).await?;
            Ok::<_, std::io::Error>(Ok(Bytes::from(frame)))
        };
        let frame = match timeout(self.limit, exchange).await {
            Err(_) => return Err(UpstreamError::Timeout { addr: self.addr.to_string(), timeout: self.limit }),
            Ok(Err(source)) => return Err(UpstreamError::Io { addr: self.addr.to_string(), source }),
            Ok(Ok(Err(reason))) => return Err(protocol(reason)),
            Ok(Ok(Ok(frame))) => frame,
        };
        let got = i32::from_be_bytes(frame[SIZE_LEN..SIZE_LEN + 4].try_into().expect("4 bytes"));
        if got != correlation_id {
            return Err(protocol(format!("correlation id {got}, expected {correlation_id}")));
        }
        Ok(frame)
    }
}
