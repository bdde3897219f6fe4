//! Beside the data path: the admin endpoint (`admin.bind`, loopback by default), an HTTP/1.1
//! server on its own port. `GET /metrics` (Prometheus' text format), `/livez` (the process
//! serves), `/readyz` (200 when clients should be sent here, else 503 and why), `/topology` (what
//! `check` prints, live, as JSON). And its client, for `health` and `check --admin`.
//!
//! It knows the gateway only as an [`Observe`]: nothing here imports the gateway or a session.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::readiness::NotReady;
use crate::report::Report;

/// What the admin endpoint asks of the running gateway.
pub trait Observe: Send + Sync + 'static {
    /// Ok when clients should be sent here.
    fn readiness(&self) -> Result<(), NotReady>;
    /// Per listener group and broker: what `check` prints, with open connections.
    fn topology(&self) -> Report;
    /// The metrics, in Prometheus' text format.
    fn metrics(&self) -> String;
}

/// A slow or silent admin client is dropped after this long without a whole request header.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The running admin endpoint; it stops when dropped.
pub struct Admin {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Admin {
    /// Where it listens (the port the kernel chose, if `admin.bind` named port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Binds `bind` and serves `observe` until the returned [`Admin`] is dropped.
pub async fn serve(bind: SocketAddr, observe: Arc<dyn Observe>) -> std::io::Result<Admin> {
    let listener = TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    info!(%addr, "admin endpoint listening: /metrics /livez /readyz /topology");
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                _ = stopped.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        warn!("admin endpoint: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let observe = Arc::clone(&observe);
            let stopped = stopped.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let observe = Arc::clone(&observe);
                    async move { Ok::<_, Infallible>(answer(&request, &*observe)) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    _ = stopped.cancelled() => {}
                    r = connection => if let Err(e) = r {
                        debug!(%peer, "admin connection: {e}");
                    }
                }
            });
        }
    });
    Ok(Admin { addr, stop })
}

fn answer(request: &Request<Incoming>, observe: &dyn Observe) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    match request.uri().path() {
        "/livez" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match observe.readiness() {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")),
        },
        "/metrics" => with_type(StatusCode::OK, crate::metrics::CONTENT_TYPE, observe.metrics()),
        "/topology" => {
            let json = serde_json::to_string_pretty(&observe.topology()).expect("a report serializes");
            with_type(StatusCode::OK, "application/json", json + "\n")
        }
        _ => text(StatusCode::NOT_FOUND, "not found: /metrics /livez /readyz /topology\n".into()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    with_type(status, "text/plain; charset=utf-8", body)
}

fn with_type(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

/// A failure to ask an admin endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to the admin endpoint at {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("the admin endpoint at {addr}: {source}")]
    Http { addr: String, source: hyper::Error },
    #[error("the admin endpoint at {addr} did not answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("the admin endpoint at {addr} answered {path} with {status}: {body}")]
    Status { addr: String, path: String, status: u16, body: String },
    #[error("the admin endpoint at {addr} answered {path} with what is not a report: {source}")]
    Json { addr: String, path: String, source: serde_json::Error },
}

/// `GET path` from the admin endpoint at `addr` (`host:port`): the status and the body.
pub async fn get(addr: &str, path: &str, timeout: Duration) -> Result<(u16, String), ClientError> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect { addr: addr.to_owned(), source })?;
        let http = |source| ClientError::Http { addr: addr.to_owned(), source };
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(http)?;
        tokio::spawn(connection);
        let request =
            Request::get(path).header(HOST, addr).body(http_body_util::Empty::<Bytes>::new()).expect("a valid request");
        let response = sender.send_request(request).await.map_err(http)?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.map_err(http)?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(ClientError::Timeout { addr: addr.to_owned(), timeout }))
}

/// The live topology of the gateway whose admin endpoint is at `addr`.
pub async fn topology(addr: &str, timeout: Duration) -> Result<Report, ClientError> {
    let path = "/topology";
    let (status, body) = get(addr, path, timeout).await?;
    if status != 200 {
        return Err(ClientError::Status { addr: addr.to_owned(), path: path.into(), status, body });
    }
    serde_json::from_str(&body).map_err(|source| ClientError::Json { addr: addr.to_owned(), path: path.into(), source })
}

/// Where a client on this host reaches an endpoint bound to `bind`: a wildcard bind on loopback.
pub fn reachable(bind: SocketAddr) -> SocketAddr {
    let ip = match bind.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    SocketAddr::new(ip, bind.port())
}

#[cfg(test)]
mod tests;
