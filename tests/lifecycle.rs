//! The process's life with real parts: signals (a reload on SIGHUP that changes names on open
//! connections and refuses a bad file, SIGUSR1 ignored, SIGTERM draining the requests in flight,
//! a second SIGTERM stopping at once), the gateway binary in front of librdkafka's mock cluster.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use kafka_gateway::broker::HostPort;
use kafka_gateway::upstream::{Connection, Link};
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config_text(bootstrap: &str, base: u16, az1: &str, extra: &str) -> String {
    format!(
        r#"
        [upstream]
        bootstrap_servers = "{bootstrap}"
        [listeners.tidb]
        bind = "127.0.0.1"
        bootstrap_port = {base}
        broker_port_base = {base}
        advertised = "b{{node_id}}.{{az}}.unique_name.aws.plc.tidbcloud.com:{{port}}"
        az_by_rack = {{ "us-west-2a" = "{az1}", "us-west-2c" = "usw2-az2", "us-west-2b" = "usw2-az3" }}
        [admin]
        bind = ""
        {extra}
        "#
    )
}

/// Info, and the session's trace line for each request.
const TRACE_REQUESTS: &str = "info,kafka_gateway::session=trace";

async fn names(conn: &mut Connection) -> Vec<String> {
    let request = MetadataRequest::default().with_topics(Some(vec![]));
    let metadata: MetadataResponse = conn.call(ApiKey::Metadata, 12, &request).await.unwrap();
    metadata.brokers.iter().map(|b| format!("{}:{}", b.host, b.port)).collect()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_names_on_open_connections_and_keeps_serving_through_a_bad_file() {
    let mock = mock_cluster();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let base = free_ports(3);
    write(&path, &config_text(&mock.bootstrap_servers(), base, "usw2-az1", ""));
    let gateway = GatewayProcess::run(&path, &[]);
    assert!(gateway.wait_for("target=broker 3").await, "{}", gateway.log());
    let addr = HostPort { host: "127.0.0.1".into(), port: base + 1 };
    let mut conn = Connection::open(&addr, &Link::plain(Duration::from_secs(5))).await.unwrap();
    assert_eq!(names(&mut conn).await[0], format!("b1.usw2-az1.unique_name.aws.plc.tidbcloud.com:{}", base + 1));

    // A new AZ map: the next answer on the same connection carries the new name.
    write(&path, &config_text(&mock.bootstrap_servers(), base, "usw2-az9", ""));
    gateway.signal("HUP");
    assert!(gateway.wait_for("configuration reloaded").await, "{}", gateway.log());
    assert_eq!(names(&mut conn).await[0], format!("b1.usw2-az9.unique_name.aws.plc.tidbcloud.com:{}", base + 1));

    // A file the gateway refuses: the key is named, the running configuration stays.
    write(&path, &config_text(&mock.bootstrap_servers(), base, "usw2-az1", "[gateway]\nno_such_key = 1"));
    gateway.signal("HUP");
    assert!(gateway.wait_for("configuration reload refused").await, "{}", gateway.log());
    assert!(gateway.log().contains("gateway.no_such_key"), "{}", gateway.log());
    assert_eq!(names(&mut conn).await[0], format!("b1.usw2-az9.unique_name.aws.plc.tidbcloud.com:{}", base + 1));

    // A listener group added, then removed, without a restart.
    let second = free_ports(3);
    let group = format!(
        "[listeners.more]\nbind = \"127.0.0.1\"\nbootstrap_port = {second}\nbroker_port_base = {second}\nadvertised = \"b{{node_id}}.more.example:{{port}}\"\n"
    );
    write(&path, &config_text(&mock.bootstrap_servers(), base, "usw2-az9", &group));
    gateway.signal("HUP");
    assert!(gateway.wait_for("listeners.more added").await, "{}", gateway.log());
    let mut more = Connection::open(
        &HostPort { host: "127.0.0.1".into(), port: second + 2 },
        &Link::plain(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    assert_eq!(names(&mut more).await[1], format!("b2.more.example:{}", second + 2));
    write(&path, &config_text(&mock.bootstrap_servers(), base, "usw2-az9", ""));
    gateway.signal("HUP");
    assert!(gateway.wait_for("listeners.more removed").await, "{}", gateway.log());
    assert!(eventually(Duration::from_secs(10), || std::net::TcpStream::connect(("127.0.0.1", second)).is_err()).await);
    // The group's open connection drained (it had nothing in flight) and closed.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), more.into_stream().read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");

    // Signals that would kill by default are logged and ignored; the first connection still works.
    gateway.signal("USR1");
    assert!(gateway.wait_for("SIGUSR1 ignored").await);
    assert_eq!(names(&mut conn).await.len(), 3);
}

/// A gateway process with one request in flight to broker 1, which takes `delay` to answer it.
struct InFlight {
    _mock: Mock,
    _dir: tempfile::TempDir,
    gateway: GatewayProcess,
    client: tokio::net::TcpStream,
    base: u16,
}

impl InFlight {
    async fn start(drain_secs: u64, delay: Duration) -> Self {
        let mock = mock_cluster();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        let base = free_ports(3);
        let drain = format!("[gateway]\ndrain_secs = {drain_secs}");
        write(&path, &config_text(&mock.bootstrap_servers(), base, "usw2-az1", &drain));
        // Trace lines name each request the gateway forwards: the test signals once it is in flight.
        let gateway = GatewayProcess::run_logging(&path, &[], TRACE_REQUESTS);
        assert!(gateway.wait_for("target=broker 3").await, "{}", gateway.log());
        mock.broker_round_trip_time(1, delay).unwrap();
        let mut client = tokio::net::TcpStream::connect(("127.0.0.1", base + 1)).await.unwrap();
        client.write_all(&request_frame(18, 0, 7, &[])).await.unwrap();
        assert!(gateway.wait_for("correlation_id=7").await, "{}", gateway.log());
        Self { _mock: mock, _dir: dir, gateway, client, base }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_the_requests_in_flight_before_it_closes_and_exits_0() {
    // Bound whole: a field left to `..` would be dropped here, the mock cluster with it.
    let mut running = InFlight::start(20, Duration::from_secs(2)).await;
    let (gateway, client, base) = (&mut running.gateway, &mut running.client, running.base);
    let signalled = Instant::now();
    gateway.signal("TERM");
    // No new connection is taken once it drains...
    assert!(eventually(Duration::from_secs(5), || std::net::TcpStream::connect(("127.0.0.1", base)).is_err()).await);
    // ...but the answer in flight arrives, then the connection closes.
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut answer)).await.unwrap().unwrap();
    assert!(answer.len() > 8 && answer[4..8] == 7i32.to_be_bytes(), "{answer:?}");
    let status = gateway.exit(Duration::from_secs(15)).await.expect("it exits after the drain");
    assert!(status.success(), "{status}");
    assert!(signalled.elapsed() >= Duration::from_millis(1500), "it waited for the answer");
    assert!(gateway.log().contains("stopped after a complete drain"), "{}", gateway.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_stops_at_once() {
    let mut running = InFlight::start(60, Duration::from_secs(30)).await;
    let gateway = &mut running.gateway;
    gateway.signal("TERM");
    assert!(gateway.wait_for("draining").await);
    gateway.signal("TERM");
    let status = gateway.exit(Duration::from_secs(10)).await.expect("a second signal stops at once");
    assert!(status.success(), "{status}");
    assert!(gateway.log().contains("cutting 1 connection(s)"), "{}", gateway.log());
}
