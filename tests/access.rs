//! Who may connect, with real parts: PROXY protocol v2 headers as each cloud's load balancer writes
//! them, haproxy (Debian's) with `send-proxy-v2` in front of the gateway carrying real clients from a
//! private-link namespace, connections refused before a byte reaches the broker, and clients that
//! never speak (or speak a byte at a time) closed at the handshake deadline while a producer beside
//! them loses nothing.

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kafka_gateway::admin::Observe;
use kafka_gateway::proxy::build::{Tlv, v2};
use kafka_gateway::{Config, Gateway};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An ApiVersions v0 request (the first thing every client sends), header client id "test".
fn api_versions(correlation_id: i32) -> Vec<u8> {
    request_frame(18, 0, correlation_id, &[])
}

/// A gateway on loopback in front of `fake`, with `access` as the group's access table and
/// `gateway` as its [gateway] table.
async fn gateway_before(fake: &FakeBroker, access: &str, gateway: &str) -> (std::sync::Arc<Gateway>, SocketAddr) {
    let base = free_ports(4);
    let config = Config::from_toml(&format!(
        r#"
        [upstream]
        bootstrap_servers = ["{}"]
        [listeners.pl]
        bind = "127.0.0.1"
        bootstrap_port = {base}
        broker_port_base = {base}
        advertised = "b{{node_id}}.example:{{port}}"
        [listeners.pl.access]
        {access}
        [gateway]
        {gateway}
        "#,
        fake.addr
    ))
    .unwrap();
    let gateway = Gateway::start(config).await.unwrap();
    (gateway, SocketAddr::from(([127, 0, 0, 1], base)))
}

/// Requests the test's clients got to the broker (the gateway's own discovery names itself
/// "kafka-gateway"; the test's requests are "test").
fn client_requests(fake: &FakeBroker) -> usize {
    fake.received.lock().unwrap().iter().filter(|f| f.windows(6).any(|w| w == b"\0\x04test")).count()
}

/// The sum of a family's series in the gateway's metrics that carry every one of `labels`
/// (`name="value"`); 0 when there are none.
fn metric(gateway: &Gateway, family: &str, labels: &[&str]) -> f64 {
    Observe::metrics(gateway)
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) && labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(_, v)| v.parse::<f64>().unwrap())
        .sum()
}

/// Sends `bytes`, and expects the gateway to close the connection without answering.
async fn refused(addr: SocketAddr, bytes: &[u8]) {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    // The gateway may close before all is written (it reads only what it needs to refuse).
    let _ = conn.write_all(bytes).await;
    let mut rest = Vec::new();
    match tokio::time::timeout(Duration::from_secs(15), conn.read_to_end(&mut rest)).await {
        Ok(_) => assert!(rest.is_empty(), "{:02x?}… was answered: {rest:02x?}", &bytes[..bytes.len().min(16)]),
        Err(_) => panic!("{:02x?}…: the connection stayed open", &bytes[..bytes.len().min(16)]),
    }
}

/// Sends `header` and an ApiVersions request, and expects the answer.
async fn admitted(addr: SocketAddr, header: &[u8]) -> TcpStream {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(header).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(15), exchange(&mut conn, &api_versions(7)))
        .await
        .expect("an answer")
        .expect("an answer, not a close");
    assert_eq!(&answer[4..8], &7i32.to_be_bytes());
    conn
}

fn client_v4(last: u8) -> Option<SocketAddr> {
    Some(SocketAddr::from(([10, 20, 30, last], 40_000 + u16::from(last))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_clouds_endpoint_is_admitted_or_refused_as_the_rules_say_and_nothing_refused_reaches_the_broker() {
    let logs = Logs::capture();
    let fake = FakeBroker::start(0, vec![(1, "127.0.0.1".into(), 1, None)]).await;
    let (gateway, addr) = gateway_before(
        &fake,
        r#"proxy_protocol = "required"
        allow_endpoints = ["vpce-0a1b2c3d4e5f67890", "azure:1234567", "psc:9876543210"]
        allow_sources = ["10.20.30.0/24"]"#,
        "",
    )
    .await;

    // Each cloud's header, as its load balancer writes it, with and without a CRC32c.
    let mut held = Vec::new();
    for (i, tlv) in
        [Tlv::Aws("vpce-0a1b2c3d4e5f67890"), Tlv::Azure(1_234_567), Tlv::Gcp(9_876_543_210)].into_iter().enumerate()
    {
        held.push(admitted(addr, &v2(false, client_v4(i as u8 + 1), std::slice::from_ref(&tlv), false)).await);
        held.push(admitted(addr, &v2(false, client_v4(i as u8 + 1), &[tlv], true)).await);
    }
    assert_eq!(client_requests(&fake), 6);
    // Every line of an admitted connection names the real client and its endpoint.
    assert!(logs.wait_for("client=10.20.30.2:40002 endpoint=azure:1234567").await, "no line names the client");
    assert!(logs.wait_for("endpoint=vpce-0a1b2c3d4e5f67890").await);
    assert!(logs.wait_for("endpoint=psc:9876543210").await);

    // Refused: other endpoints of each cloud, no endpoint, a source outside the list, no header,
    // a v1 header (no endpoint in it). Each is closed before the gateway dials anything.
    let request = api_versions(9);
    let refusals: Vec<(Vec<u8>, &str)> = vec![
        (
            v2(false, client_v4(1), &[Tlv::Aws("vpce-00000000000000000")], false),
            "endpoint vpce-00000000000000000 is not in",
        ),
        (v2(false, client_v4(1), &[Tlv::Azure(7)], true), "endpoint azure:7 is not in"),
        (v2(false, client_v4(1), &[Tlv::Gcp(7)], false), "endpoint psc:7 is not in"),
        (v2(false, client_v4(1), &[], false), "names no private-link endpoint"),
        (
            v2(false, Some("192.0.2.1:5".parse().unwrap()), &[Tlv::Gcp(9_876_543_210)], false),
            "source 192.0.2.1 is not in",
        ),
        (request.clone(), "no PROXY protocol header"),
        (b"PROXY TCP4 10.20.30.1 10.0.0.1 5000 9092\r\n".to_vec(), "names no private-link endpoint"),
    ];
    for (header, reason) in &refusals {
        let mut bytes = header.clone();
        bytes.extend(&request);
        refused(addr, &bytes).await;
        assert!(logs.wait_for(reason).await, "no line says {reason:?}");
    }
    // Nothing of theirs reached the broker; the admitted connections still work.
    assert_eq!(client_requests(&fake), 6);
    for conn in &mut held {
        exchange(conn, &api_versions(8)).await.unwrap();
    }
    assert_eq!(client_requests(&fake), 12);
    assert_eq!(metric(&gateway, "kafka_gateway_connections_total", &[r#"outcome="refused""#]), 7.0);
    assert_eq!(metric(&gateway, "kafka_gateway_connections_total", &[r#"outcome="served""#]), 6.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_truncated_oversized_and_duplicated_headers_close_only_their_connection() {
    let logs = Logs::capture();
    let fake = FakeBroker::start(0, vec![(1, "127.0.0.1".into(), 1, None)]).await;
    let (_gateway, addr) = gateway_before(&fake, r#"proxy_protocol = "required""#, "handshake_timeout_secs = 3").await;
    let good = v2(false, client_v4(1), &[Tlv::Aws("vpce-1")], true);
    let mut bystander = admitted(addr, &good).await;
    let request = api_versions(5);

    let mut bad_crc = good.clone();
    *bad_crc.last_mut().unwrap() ^= 0xff;
    let mut oversized = good[..16].to_vec();
    oversized[14..16].copy_from_slice(&60_000u16.to_be_bytes());
    oversized.extend(vec![0; 8192]);
    let mut bad_version = good.clone();
    bad_version[12] = 0x31;
    let mut short_addresses = good[..16].to_vec();
    short_addresses[15] = 3;
    short_addresses.extend([1, 2, 3]);
    let duplicated_tlv = v2(false, client_v4(1), &[Tlv::Aws("vpce-1"), Tlv::Aws("vpce-2")], false);
    // A load balancer that prepends its header to one a client already sent.
    let doubled = [good.clone(), v2(false, client_v4(9), &[Tlv::Aws("vpce-9")], false)].concat();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (bad_crc, "CRC32c does not match"),
        (oversized, "above the gateway's limit of 4096"),
        (bad_version, "version is not 2"),
        (short_addresses, "addresses are longer than the header"),
        (duplicated_tlv, "two endpoint TLVs"),
        (doubled, "a second PROXY protocol header follows the first"),
        (b"PROXY TCP4 10.20.30.1 10.0.0.1 05000 9092\r\n".to_vec(), "malformed PROXY v1 header"),
        (
            b"PROXY TCP4 10.20.30.1 ".iter().copied().chain(std::iter::repeat_n(b'1', 120)).collect(),
            "no CRLF within 107",
        ),
    ];
    for (header, reason) in &cases {
        refused(addr, &[header.as_slice(), &request].concat()).await;
        assert!(logs.wait_for(reason).await, "no line says {reason:?}");
    }
    // Truncated: the connection ends within the header, or the header stops and never goes on.
    refused(addr, &good[..20]).await;
    let mut cut = TcpStream::connect(addr).await.unwrap();
    cut.write_all(&good[..20]).await.unwrap();
    cut.shutdown().await.unwrap();
    assert!(logs.wait_for("the connection closed within the PROXY header").await);
    refused(addr, &good[..good.len() - 1]).await;
    assert!(logs.wait_for("no request within 3s of connecting").await);

    // Only the test's two good connections' requests reached the broker, and the bystander works.
    exchange(&mut bystander, &request).await.unwrap();
    assert_eq!(client_requests(&fake), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_check_is_closed_cleanly_and_a_header_where_none_is_expected_is_named() {
    let logs = Logs::capture();
    let fake = FakeBroker::start(0, vec![(1, "127.0.0.1".into(), 1, None)]).await;
    let (_with, addr) = gateway_before(&fake, r#"proxy_protocol = "required""#, "").await;
    // LOCAL: the load balancer's own connection. Closed at once, nothing dialed, not an error.
    refused(addr, &v2(true, None, &[], false)).await;
    assert!(logs.wait_for("health check (PROXY LOCAL)").await);
    assert!(!logs.text().contains("closing connection: "), "a health check was logged as an error");
    let (_without, plain) = gateway_before(&fake, "", "").await;
    refused(plain, &[v2(false, client_v4(1), &[], false), api_versions(1)].concat()).await;
    assert!(logs.wait_for("sent a PROXY protocol header to a listener without").await);
    assert_eq!(client_requests(&fake), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_refuses_the_next_and_the_idle_timeout_closes_quiet_clients() {
    let logs = Logs::capture();
    let fake = FakeBroker::start(0, vec![(1, "127.0.0.1".into(), 1, None)]).await;
    let (gateway, addr) = gateway_before(&fake, "max_connections = 3\nidle_timeout_secs = 2", "").await;
    let mut busy = admitted(addr, b"").await;
    let quiet = admitted(addr, b"").await;
    let _third = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    refused(addr, &api_versions(1)).await;
    assert!(logs.wait_for("already has 3 connections open").await);
    // The busy one asks every half second for 5 s and stays; the quiet one is closed.
    for i in 0..10 {
        exchange(&mut busy, &api_versions(100 + i)).await.expect("the busy connection stays open");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut quiet = quiet;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), quiet.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0))), "the quiet connection is still open: {closed:?}");
    // The unused third one was closed at the handshake deadline (10 s) or by now holds no slot
    // for long: a new client gets in once the quiet one's slot is back.
    assert!(
        eventually(Duration::from_secs(15), || metric(&gateway, "kafka_gateway_connections_open", &[]) <= 2.0).await
    );
    admitted(addr, b"").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_lines_are_throttled_with_a_count_of_what_was_suppressed() {
    let logs = Logs::capture();
    let fake = FakeBroker::start(0, vec![(1, "127.0.0.1".into(), 1, None)]).await;
    let (gateway, addr) = gateway_before(&fake, r#"proxy_protocol = "required""#, "").await;
    for _ in 0..200 {
        refused(addr, &api_versions(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    refused(addr, &api_versions(1)).await;
    assert!(logs.wait_for("similar lines suppressed before this one").await);
    let lines = logs.text().lines().filter(|l| l.contains("no PROXY protocol header")).count();
    assert!(lines < 40, "{lines} lines for 201 refusals");
    assert_eq!(metric(&gateway, "kafka_gateway_connections_total", &[r#"outcome="refused""#]), 201.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_speak_or_a_byte_at_a_time_are_closed_at_the_deadline_while_a_producer_loses_nothing() {
    let logs = Logs::capture();
    let mock = mock_cluster();
    mock.create_topic("steady", 3, 3).unwrap();
    let (open, pl) = (free_ports(4), free_ports(4));
    let config = Config::from_toml(&format!(
        r#"
        [upstream]
        bootstrap_servers = "{}"
        [listeners.open]
        bind = "127.0.0.1"
        bootstrap_port = {open}
        broker_port_base = {open}
        advertised = "127.0.0.1:{{port}}"
        [listeners.pl]
        bind = "127.0.0.1"
        bootstrap_port = {pl}
        broker_port_base = {pl}
        advertised = "127.0.0.1:{{port}}"
        access = {{ proxy_protocol = "required" }}
        [gateway]
        handshake_timeout_secs = 3
        "#,
        mock.bootstrap_servers()
    ))
    .unwrap();
    let gateway = Gateway::start(config).await.unwrap();
    let (open, pl) = (SocketAddr::from(([127, 0, 0, 1], open)), SocketAddr::from(([127, 0, 0, 1], pl)));
    let client = example("kafka_client");
    let producer = tokio::process::Command::new(&client)
        .args(["produce", "--bootstrap", &open.to_string(), "--topic", "steady", "--count", "30000"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // 40 that never send, 10 that send a request's first bytes one a second, 10 that send a PROXY
    // header one byte a second, and one that announces a 50 MiB request and sends 1 KiB of it (on
    // the PROXY listener, whose refusal lines are fewer than the throttle's burst).
    let mut slow = Vec::new();
    for i in 0..61 {
        let addr = if i >= 50 { pl } else { open };
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let trickle: Vec<u8> = match i {
            0..40 => Vec::new(),
            40..50 => api_versions(1),
            50..60 => v2(false, client_v4(1), &[], false),
            _ => {
                let mut big = request_frame(0, 7, 1, &[0; 1024]);
                big[..4].copy_from_slice(&(50i32 << 20).to_be_bytes());
                conn.write_all(&[v2(false, client_v4(2), &[], false), big].concat()).await.unwrap();
                Vec::new()
            }
        };
        slow.push(tokio::spawn(async move {
            for byte in trickle {
                if conn.write_all(&[byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let mut rest = Vec::new();
            tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut rest)).await.map(|r| (r.is_ok(), rest))
        }));
    }
    for (i, closed) in slow.into_iter().enumerate() {
        let (_, rest) = closed.await.unwrap().unwrap_or_else(|_| panic!("slow client {i} was never closed"));
        assert!(rest.is_empty(), "slow client {i} got an answer");
    }
    assert!(logs.wait_for("no request within 3s of connecting").await);
    assert!(logs.wait_for("the first request was not whole within 3s").await);
    // The 60 that never sent a request's header made the gateway dial nothing: they were refused.
    // (The 61st had, so its broker was dialed; it was cut when its request was not whole.)
    let refused = metric(&gateway, "kafka_gateway_connections_total", &[r#"outcome="refused""#]);
    assert_eq!(refused, 60.0, "refused connections");

    let produced = producer.wait_with_output().await.unwrap();
    assert_eq!(stdout_of(&produced).trim(), "produced 30000 errors 0");
    let consumed = tokio::process::Command::new(&client)
        .args(["consume", "--bootstrap", &open.to_string(), "--topic", "steady", "--group", "g", "--count", "30000"])
        .output()
        .await
        .unwrap();
    assert_eq!(stdout_of(&consumed).trim(), "consumed 30000 distinct 30000 duplicates 0");
}

/// haproxy (Debian's) in TCP mode on the private link's gateway address, one frontend per port,
/// each sending PROXY v2 to the gateway's port on loopback; the bootstrap backend is health-checked
/// with the PROXY header too (LOCAL).
struct Haproxy {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    fn start(front: std::net::Ipv4Addr, ports: &[u16]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut conf = String::from(
            "global\n  maxconn 2000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 120s\n  timeout server 120s\n",
        );
        for (i, port) in ports.iter().enumerate() {
            let check = if i == 0 { " check check-send-proxy inter 500ms" } else { "" };
            conf +=
                &format!("listen p{port}\n  bind {front}:{port}\n  server gw 127.0.0.1:{port} send-proxy-v2{check}\n");
        }
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("haproxy (Debian's haproxy package; scripts/test-tools installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect((front, ports[0])).is_err() {
            assert!(Instant::now() < deadline, "haproxy did not open {front}:{}", ports[0]);
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, _dir: dir }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_through_haproxy_with_proxy_protocol_v2_come_back_exactly_once() {
    let logs = Logs::capture();
    let mock = mock_cluster();
    mock.create_topic("behind-lb", 3, 3).unwrap();
    let link = PrivateLink::new();
    let client_net = {
        let o = link.gateway_ip.octets();
        format!("{}.{}.{}.{}/30", o[0], o[1], o[2], o[3] - 1)
    };
    // The gateway listens on loopback, only haproxy reaches it, and only the private link's
    // client network is admitted: the address it checks is the one haproxy's header names.
    let mut config = aws_config("127.0.0.1".parse().unwrap(), 9092, &mock.bootstrap_servers());
    config.groups[0].access = Config::from_toml(&format!(
        r#"[upstream]
        bootstrap_servers = ["k:1"]
        [listeners.x]
        broker_port_base = 1
        advertised = "x:{{port}}"
        [listeners.x.access]
        proxy_protocol = "required"
        allow_sources = ["{client_net}"]"#
    ))
    .unwrap()
    .groups[0]
        .access
        .clone();
    let _gateway = start(config).await;
    let _haproxy = Haproxy::start(link.gateway_ip, &[9092, 9093, 9094, 9095]);
    link.set_hosts(&AWS_NAMES);
    let bootstrap = format!("{}:9092", link.gateway_ip);

    let client = example("kafka_client");
    let produced =
        link.run(&client, &["produce", "--bootstrap", &bootstrap, "--topic", "behind-lb", "--count", "10000"]).await;
    assert_eq!(stdout_of(&produced).trim(), "produced 10000 errors 0");
    let consumed = link
        .run(
            &client,
            &["consume", "--bootstrap", &bootstrap, "--topic", "behind-lb", "--group", "g", "--count", "10000"],
        )
        .await;
    assert_eq!(stdout_of(&consumed).trim(), "consumed 10000 distinct 10000 duplicates 0");
    // kcat too (librdkafka 2.0.2), listing the brokers by their names.
    let kcat = link.run(std::path::Path::new("/usr/bin/kcat"), &["-b", &bootstrap, "-L", "-m", "10"]).await;
    let listing = stdout_of(&kcat);
    for name in AWS_NAMES {
        assert!(listing.contains(name), "kcat did not list {name}: {listing}");
    }
    // The gateway saw the namespace's client, never haproxy's loopback address, and haproxy's
    // health checks arrived as LOCAL and were closed without an error.
    let client_ip = {
        let o = link.gateway_ip.octets();
        format!("client={}.{}.{}.{}:", o[0], o[1], o[2], o[3] + 1)
    };
    assert!(logs.wait_for(&client_ip).await, "no line names the client's own address");
    // (A health check is haproxy's own connection, so it is the client of those lines.)
    let text = logs.text();
    let haproxy = text
        .lines()
        .filter(|l| l.contains("client=127.0.0.1"))
        .find(|l| !l.contains("health check") && !l.contains("reason=HealthCheck"));
    assert_eq!(haproxy, None, "a line names haproxy as a relayed client");
    assert!(logs.wait_for("health check (PROXY LOCAL)").await, "haproxy's checks were not seen");
    assert!(!logs.text().contains("closing connection: "), "a connection ended in error");
}
