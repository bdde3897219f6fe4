//! Connection scale: N client connections held open through the gateway, the gateway's memory per
//! idle connection pair, and whether new connections still get through. Each connection first does
//! what a real client (librdkafka) does on a new connection: ApiVersions v3 and Metadata v12, both
//! answered by the stand-in as a broker would and rewritten by the gateway (held whole, walked,
//! the broker learned), then a ListOffsets passed through; so every path a connection's buffers
//! take has been used before it idles.
//!
//! `scripts/bench-connections [--tls] [N]`. The gateway holds two descriptors per client (client
//! and upstream side), so N defaults to 10,000 or what the open-file hard limit leaves room for. The
//! stand-in broker runs in its own process, so that this one holds only the client sides.
//!
//! With `--tls`, every pair is TLS on both sides: clients reach the gateway over TLS, and the
//! gateway reaches a stand-in that speaks TLS itself (rustls), each checking the run's certificate
//! (benches/e2e/pki.rs).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

#[path = "e2e/pki.rs"]
mod pki;

/// Below Linux's ephemeral range, which the 10,000 client connections draw their ports from.
const PORT: u16 = 29_400;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap()
}

/// A broker stand-in that answers ApiVersions and Metadata (naming itself as broker 1) as a broker
/// would, every other request with a small frame, and holds the connection; with `tls`, after a
/// TLS handshake.
async fn hold(listener: TcpListener, tls: Option<TlsAcceptor>) {
    let me = listener.local_addr().unwrap();
    loop {
        let (tcp, _) = listener.accept().await.unwrap();
        // A TLS server writes its session tickets and then the answer: without this, Nagle holds
        // the answer back for the gateway's delayed ACK (40 ms a connection).
        tcp.set_nodelay(true).unwrap();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(tcp).await {
                        answer(stream, me).await;
                    }
                }
                None => answer(tcp, me).await,
            }
        });
    }
}

async fn answer(mut stream: impl AsyncRead + AsyncWrite + Unpin, me: std::net::SocketAddr) {
    use kafka_gateway::rewrite::encode;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    let mut buf = vec![0; 1024];
    while let Ok(size) = stream.read_i32().await {
        if stream.read_exact(&mut buf[..size as usize]).await.is_err() {
            return;
        }
        let (key, version) = (i16::from_be_bytes([buf[0], buf[1]]), i16::from_be_bytes([buf[2], buf[3]]));
        let correlation_id = i32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let header = ResponseHeader::default().with_correlation_id(correlation_id);
        let reply = match key {
            18 => {
                let keys = [(0, 0, 11), (1, 0, 17), (2, 0, 9), (3, 0, 12), (18, 0, 4)].map(|(k, min, max)| {
                    ApiVersion::default().with_api_key(k).with_min_version(min).with_max_version(max)
                });
                let answer = ApiVersionsResponse::default().with_api_keys(keys.to_vec());
                encode(&header, &answer, version, &[]).unwrap().to_vec()
            }
            3 => {
                let broker = MetadataResponseBroker::default()
                    .with_node_id(BrokerId(1))
                    .with_host(StrBytes::from_string(me.ip().to_string()))
                    .with_port(i32::from(me.port()))
                    .with_rack(Some(StrBytes::from_static_str("r")));
                let answer = MetadataResponse::default()
                    .with_brokers(vec![broker])
                    .with_cluster_id(Some(StrBytes::from_static_str("scale")));
                encode(&header, &answer, version, &[]).unwrap().to_vec()
            }
            _ => {
                let mut reply = 14i32.to_be_bytes().to_vec();
                reply.extend(correlation_id.to_be_bytes());
                reply.extend([0u8; 10]);
                reply
            }
        };
        if stream.write_all(&reply).await.is_err() || stream.flush().await.is_err() {
            return;
        }
    }
}

/// The stand-in's TLS: the run's certificate and key.
fn acceptor(cert: &str, key: &str) -> TlsAcceptor {
    let chain = CertificateDer::pem_file_iter(cert).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

/// The clients' TLS: the run's CA.
fn connector(ca: &std::path::Path) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// A client connection to the gateway: plain, or TLS when the run is.
enum Client {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Client {
    async fn connect(tls: Option<&TlsConnector>) -> std::io::Result<Self> {
        let tcp = TcpStream::connect(("127.0.0.1", PORT)).await?;
        tcp.set_nodelay(true)?;
        match tls {
            None => Ok(Client::Tcp(tcp)),
            Some(tls) => {
                let name = ServerName::try_from("127.0.0.1").unwrap();
                Ok(Client::Tls(Box::new(tls.connect(name, tcp).await?)))
            }
        }
    }

    async fn greet(&mut self, correlation_id: i32) {
        match self {
            Client::Tcp(tcp) => greet(tcp, correlation_id).await,
            Client::Tls(tls) => greet(&mut **tls, correlation_id).await,
        }
    }

    async fn exchange(&mut self, correlation_id: i32) {
        match self {
            Client::Tcp(tcp) => exchange(tcp, correlation_id).await,
            Client::Tls(tls) => exchange(&mut **tls, correlation_id).await,
        }
    }
}

/// A flexible request (header v2: client id, then tagged fields) of `key` at `version`.
fn flexible_request(key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut f = vec![0, 0, 0, 0];
    f.extend(key.to_be_bytes());
    f.extend(version.to_be_bytes());
    f.extend(correlation_id.to_be_bytes());
    f.extend(7i16.to_be_bytes());
    f.extend(b"rdkafka");
    f.push(0); // header tags
    f.extend(body);
    let size = (f.len() - 4) as i32;
    f[..4].copy_from_slice(&size.to_be_bytes());
    f
}

/// A ListOffsets v1 request (passed through untouched), `correlation_id` as given.
fn request(correlation_id: i32) -> Vec<u8> {
    let mut f = vec![0, 0, 0, 0, 0, 2, 0, 1];
    f.extend(correlation_id.to_be_bytes());
    f.extend([0, 4]);
    f.extend(b"scal");
    f.extend([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
    let size = (f.len() - 4) as i32;
    f[..4].copy_from_slice(&size.to_be_bytes());
    f
}

/// What librdkafka sends first on a connection, ApiVersions v3 and Metadata v12 (all topics), each
/// answered before the next.
async fn greet(stream: &mut (impl AsyncRead + AsyncWrite + Unpin), correlation_id: i32) {
    // client_software_name "librdkafka", client_software_version "2.12.0", no tags.
    let api_versions = flexible_request(18, 3, correlation_id, b"\x0blibrdkafka\x072.12.0\x00");
    // topics: null (all), allow_auto_topic_creation, include_topic_authorized_operations, no tags.
    let metadata = flexible_request(3, 12, correlation_id, &[0, 1, 0, 0]);
    for request in [api_versions, metadata] {
        stream.write_all(&request).await.unwrap();
        stream.flush().await.unwrap();
        let size = stream.read_i32().await.unwrap();
        let mut body = vec![0; size as usize];
        stream.read_exact(&mut body).await.unwrap();
        assert_eq!(&body[..4], &correlation_id.to_be_bytes());
    }
}

async fn exchange(stream: &mut (impl AsyncRead + AsyncWrite + Unpin), correlation_id: i32) {
    stream.write_all(&request(correlation_id)).await.unwrap();
    stream.flush().await.unwrap();
    let size = stream.read_i32().await.unwrap();
    let mut body = vec![0; size as usize];
    stream.read_exact(&mut body).await.unwrap();
    assert_eq!(&body[..4], &correlation_id.to_be_bytes());
}

/// Pages of kernel memory held by all TCP sockets' buffers (not part of any process's RSS).
fn tcp_pages() -> u64 {
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").unwrap();
    let tcp = sockstat.lines().find(|l| l.starts_with("TCP:")).unwrap();
    tcp.split_whitespace().skip_while(|w| *w != "mem").nth(1).unwrap().parse().unwrap()
}

/// Descriptors a process has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap() as usize;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    if args.first().map(String::as_str) == Some("--stand-in") {
        // --stand-in [CERT KEY]
        let tls = (args.len() == 3).then(|| acceptor(&args[1], &args[2]));
        return rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            println!("{}", listener.local_addr().unwrap());
            hold(listener, tls).await
        });
    }
    let tls = args.first().map(String::as_str) == Some("--tls");
    if tls {
        args.remove(0);
    }
    let pki = tls.then(pki::Pki::new);
    // The gateway's two descriptors per pair, beside its listeners, log and runtime.
    let n: usize = args.first().map_or((limit.saturating_sub(64) / 2).min(10_000), |a| a.parse().expect("N"));
    let mut stand_in = Command::new(std::env::current_exe().unwrap());
    stand_in.arg("--stand-in");
    if let Some(pki) = &pki {
        stand_in.arg(&pki.cert).arg(&pki.key);
    }
    let mut stand_in = stand_in.stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stand_in.stdout.take().unwrap()), &mut line).unwrap();
    let upstream: std::net::SocketAddr = line.trim().parse().unwrap();
    rt.block_on(async move {

        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("gateway.toml");
        let (upstream_tls, listener_tls) = match &pki {
            Some(pki) => (
                format!("[upstream.tls]\nca = \"{}\"\n", pki.ca.display()),
                format!("[listeners.scale.tls]\ncert = \"{}\"\nkey = \"{}\"\n", pki.cert.display(), pki.key.display()),
            ),
            None => Default::default(),
        };
        std::fs::write(
            &config,
            format!(
                "[upstream]\nbootstrap_servers = [\"{upstream}\"]\nconnect_timeout_ms = 2000\n{upstream_tls}\
                 [listeners.scale]\nbind = \"127.0.0.1\"\nbootstrap_port = {PORT}\nbroker_port_base = {}\n\
                 advertised = \"127.0.0.1:{{port}}\"\n{listener_tls}[admin]\nbind = \"127.0.0.1:{}\"\n",
                PORT + 1,
                PORT - 1
            ),
        )
        .unwrap();
        let connector = pki.as_ref().map(|pki| connector(&pki.ca));
        // GATEWAY_BIN: another build of the gateway to compare (e.g. the main branch's).
        let bin = std::env::var_os("GATEWAY_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_kafka-gateway").into());
        let mut gateway: Child = Command::new(bin)
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pid = gateway.id();
        while TcpStream::connect(("127.0.0.1", PORT)).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Let the gateway's first discovery against the stand-in time out.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let before = rss_kib(pid);
        let fds_before = open_fds(pid);
        let tcp_before = tcp_pages();

        let start = Instant::now();
        let mut clients = Vec::with_capacity(n);
        let mut failures = 0;
        for i in 0..n {
            match Client::connect(connector.as_ref()).await {
                Ok(mut stream) => {
                    stream.greet(i as i32).await;
                    stream.exchange(i as i32).await;
                    clients.push(stream);
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        eprintln!("connection {i} failed: {e}");
                    }
                }
            }
        }
        let opened = start.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = rss_kib(pid);
        let tcp_after = tcp_pages();
        let upstream_pairs = (open_fds(pid) - fds_before) as f64 / 2.0;

        // One more, and every held connection still answers.
        let mut late = Client::connect(connector.as_ref()).await.expect("a new connection after N");
        late.exchange(-1).await;
        for (i, stream) in clients.iter_mut().enumerate().step_by(97) {
            stream.exchange(i as i32).await;
        }
        let mode = if pki.is_some() { "TLS on both sides" } else { "plaintext" };
        println!("{mode}; open-file hard limit {limit}; {n} connections opened through the gateway in {opened:.1?}, {failures} failed; the gateway holds {upstream_pairs} descriptor pairs more than idle");
        println!(
            "gateway RSS {:.1} MiB idle, {:.1} MiB with {n} idle connection pairs: {:.1} KiB per pair",
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            (after - before) as f64 / n as f64
        );
        println!(
            "kernel TCP buffers of all sockets (four per pair: client, two in the gateway, stand-in): {:+.1} MiB",
            (tcp_after as f64 - tcp_before as f64) * 4.0 / 1024.0
        );
        println!("a new connection and every 97th held one still answered");
        let _ = gateway.kill();
        let _ = gateway.wait();
    });
    let _ = stand_in.kill();
    let _ = stand_in.wait();
}
