//! Monitoring with real parts: a real Prometheus (Debian's package) scrapes the gateway binary
//! while librdkafka produces and consumes through it against the mock cluster, and its query API
//! must return the counts the clients caused; promtool accepts the exposition and the alert rules
//! (and their unit tests); readiness follows the cluster away and back; the dashboard, the rules
//! and the README name only metrics the gateway exports.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_gateway::admin::{self, Observe};
use kafka_gateway::metrics::FAMILIES;
use kafka_gateway::{Config, Gateway};
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_kafka-gateway");
const T: Duration = Duration::from_secs(5);

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A tool of Debian's prometheus package, which scripts/test-tools installs.
fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()));
    found.unwrap_or_else(|| panic!("{name} is missing: run scripts/test-tools (Debian's prometheus package)"))
}

/// A child process killed and reaped when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `GET path` answers 200, up to `limit`.
async fn until_ok(addr: &str, path: &str, limit: Duration) -> Result<String, String> {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        match admin::get(addr, path, T).await {
            Ok((200, body)) => return Ok(body),
            Ok((status, body)) => last = format!("{status}: {body}"),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last)
}

/// Percent-encodes a PromQL query for a URL.
fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// Prometheus' answer to an instant query: each series' labels and value.
async fn query(prometheus: &str, promql: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let (status, body) = admin::get(prometheus, &format!("/api/v1/query?query={}", encode(promql)), T).await.unwrap();
    assert_eq!(status, 200, "{promql}: {body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["status"], "success", "{body}");
    answer["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let labels = r["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            (labels, r["value"][1].as_str().unwrap().parse().unwrap())
        })
        .collect()
}

/// The one value of a query that sums to one series (None while Prometheus has none).
async fn scalar(prometheus: &str, promql: &str) -> Option<f64> {
    let result = query(prometheus, promql).await;
    assert!(result.len() <= 1, "{promql}: {result:?}");
    result.first().map(|(_, v)| *v)
}

/// Waits until Prometheus' answer to `promql` is `expected` (its scrapes catch up with what the
/// clients did), then asserts it: a count that is never reached, or overshoots, fails.
async fn settles_at(prometheus: &str, promql: &str, expected: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = scalar(prometheus, promql).await;
    while got != Some(expected) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        got = scalar(prometheus, promql).await;
    }
    assert_eq!(got, Some(expected), "{promql}");
}

/// Two listener groups on loopback that cannot collide: `clients` for librdkafka, `probe` for
/// requests counted by hand.
fn two_groups() -> (u16, u16) {
    loop {
        let (a, b) = (free_ports(3), free_ports(3));
        if a.abs_diff(b) > 3 {
            return (a, b);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_counts_of_what_real_clients_did() {
    const MESSAGES: usize = 200;
    const PAYLOAD: usize = 1000;
    const API_VERSIONS: usize = 5;
    const METADATA: usize = 7;

    let mock = mock_cluster();
    mock.create_topic("watched", 3, 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (clients, probe) = two_groups();
    let admin_addr = format!("127.0.0.1:{}", free_ports(0));
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            [upstream]
            bootstrap_servers = "{bootstrap}"
            [listeners.clients]
            bind = "127.0.0.1"
            bootstrap_port = {clients}
            broker_port_base = {clients}
            advertised = "127.0.0.1:{{port}}"
            [listeners.probe]
            bind = "127.0.0.1"
            bootstrap_port = {probe}
            broker_port_base = {probe}
            advertised = "127.0.0.1:{{port}}"
            [admin]
            bind = "{admin_addr}"
            "#,
            bootstrap = mock.bootstrap_servers()
        ),
    )
    .unwrap();
    let _gateway = Running(
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    until_ok(&admin_addr, "/readyz", Duration::from_secs(30)).await.expect("the gateway gets ready");

    // Prometheus on loopback, scraping the admin endpoint every second into a temporary store.
    let prometheus_addr = format!("127.0.0.1:{}", free_ports(0));
    let prometheus_config = dir.path().join("prometheus.yml");
    std::fs::write(
        &prometheus_config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: kafka-gateway\n    static_configs:\n      - targets: ['{admin_addr}']\n"
        ),
    )
    .unwrap();
    let _prometheus = Running(
        Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", prometheus_config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={prometheus_addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    until_ok(&prometheus_addr, "/-/ready", Duration::from_secs(60)).await.expect("Prometheus gets ready");

    // librdkafka through the `clients` group: each message awaited before the next, without
    // batching or idempotence, so that each is exactly one Produce request.
    let bootstrap = format!("127.0.0.1:{clients}");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "false")
        .set("linger.ms", "0")
        .set("batch.num.messages", "1")
        .create()
        .unwrap();
    let payload = vec![b'p'; PAYLOAD];
    for i in 0..MESSAGES {
        let key = i.to_string();
        producer
            .send(FutureRecord::to("watched").key(&key).payload(&payload), Duration::from_secs(30))
            .await
            .unwrap_or_else(|(e, _)| panic!("message {i}: {e}"));
    }
    drop(producer);
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "watchers")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["watched"]).unwrap();
    let mut consumed = 0;
    while consumed < MESSAGES {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await.unwrap().unwrap();
        assert_eq!(message.payload().map(<[u8]>::len), Some(PAYLOAD));
        consumed += 1;
    }
    drop(consumer);

    // Requests counted by hand through the `probe` group: one connection, ApiVersions v0 and
    // Metadata v1 (no topics), every byte each way known.
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", probe)).await.unwrap();
    let (mut sent, mut received, mut correlation) = (0, 0, 0);
    for (api_key, version, body, times) in [(18, 0, &[][..], API_VERSIONS), (3, 1, &[0, 0, 0, 0][..], METADATA)] {
        for _ in 0..times {
            correlation += 1;
            let request = request_frame(api_key, version, correlation, body);
            sent += request.len();
            received += exchange(&mut conn, &request).await.unwrap().len();
        }
    }
    drop(conn);

    let p = prometheus_addr.as_str();
    let probe_requests = |api: &str| format!(r#"sum(kafka_gateway_requests_total{{group="probe",api="{api}"}})"#);
    settles_at(p, &probe_requests("ApiVersions"), API_VERSIONS as f64).await;
    settles_at(p, &probe_requests("Metadata"), METADATA as f64).await;
    settles_at(p, r#"sum(kafka_gateway_bytes_total{group="probe",direction="to_broker"})"#, sent as f64).await;
    settles_at(p, r#"sum(kafka_gateway_bytes_total{group="probe",direction="to_client"})"#, received as f64).await;
    settles_at(p, r#"sum(kafka_gateway_connections_total{group="probe",outcome="served"})"#, 1.0).await;
    settles_at(
        p,
        r#"sum(kafka_gateway_request_duration_seconds_count{group="probe",api="Metadata"})"#,
        METADATA as f64,
    )
    .await;
    settles_at(p, r#"sum(kafka_gateway_rewrites_total{group="probe",api="ApiVersions"})"#, API_VERSIONS as f64).await;
    settles_at(p, r#"sum(kafka_gateway_requests_total{group="clients",api="Produce"})"#, MESSAGES as f64).await;
    settles_at(p, r#"sum(kafka_gateway_connections_open)"#, 0.0).await;
    // What librdkafka sent and read around the payloads is its own affair: at least the payloads.
    let bytes =
        |direction: &str| format!(r#"sum(kafka_gateway_bytes_total{{group="clients",direction="{direction}"}})"#);
    assert!(scalar(p, &bytes("to_broker")).await.unwrap() >= (MESSAGES * PAYLOAD) as f64);
    assert!(scalar(p, &bytes("to_client")).await.unwrap() >= (MESSAGES * PAYLOAD) as f64);
    assert!(scalar(p, r#"sum(kafka_gateway_requests_total{group="clients",api="Fetch"})"#).await.unwrap() >= 1.0);
    assert_eq!(scalar(p, "kafka_gateway_ready").await, Some(1.0));
    assert_eq!(scalar(p, "kafka_gateway_brokers").await, Some(3.0));
    let p99 = r#"max(kafka_gateway_request_duration_seconds{group="probe",api="Metadata",quantile="0.99"})"#;
    assert!(scalar(p, p99).await.is_some_and(|s| s > 0.0 && s < 30.0));

    // promtool lints the exposition as Prometheus' own tools read it.
    let (status, exposition) = admin::get(&admin_addr, "/metrics", T).await.unwrap();
    assert_eq!(status, 200);
    let mut promtool = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool.stdin.take().unwrap().write_all(exposition.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{exposition}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_cluster_away_and_back() {
    let mock = mock_cluster();
    let base = free_ports(3);
    let config = Config::from_toml(&format!(
        r#"
        [upstream]
        bootstrap_servers = "{bootstrap}"
        metadata_refresh_secs = 1
        connect_timeout_ms = 500
        [listeners.tidb]
        bind = "127.0.0.1"
        bootstrap_port = {base}
        broker_port_base = {base}
        advertised = "127.0.0.1:{{port}}"
        [admin]
        bind = "127.0.0.1:0"
        ready_stale_secs = 2
        "#,
        bootstrap = mock.bootstrap_servers()
    ))
    .unwrap();
    let gateway = Gateway::new(config).unwrap();
    let endpoint =
        admin::serve("127.0.0.1:0".parse().unwrap(), Arc::clone(&gateway) as Arc<dyn Observe>).await.unwrap();
    let addr = endpoint.local_addr().to_string();
    let readyz = async || admin::get(&addr, "/readyz", T).await.unwrap();

    let (status, why) = readyz().await;
    assert_eq!((status, why.contains("starting")), (503, true), "{why}");
    assert_eq!(admin::get(&addr, "/livez", T).await.unwrap().0, 200, "alive while it starts");
    gateway.open().await.unwrap();
    assert_eq!(readyz().await, (200, "ready\n".into()));

    for broker in 1..=3 {
        mock.broker_down(broker).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut answer = readyz().await;
    while answer.0 == 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        answer = readyz().await;
    }
    assert_eq!(answer.0, 503, "not ready once the cluster is gone for admin.ready_stale_secs");
    assert!(answer.1.contains("stale: no bootstrap server has answered for"), "{}", answer.1);
    let metrics = admin::get(&addr, "/metrics", T).await.unwrap().1;
    assert!(metrics.contains("\nkafka_gateway_ready 0\n"), "{metrics}");

    for broker in 1..=3 {
        mock.broker_up(broker).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while readyz().await.0 != 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(readyz().await, (200, "ready\n".into()), "ready again once the cluster answers");

    gateway.readiness().drain();
    let (status, why) = readyz().await;
    assert_eq!((status, why.contains("draining")), (503, true), "{why}");
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    let dir = repo("deploy/monitoring");
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts.test.yml"],
        vec!["check", "config", "prometheus.yml"],
    ] {
        let out = Command::new(tool("promtool")).args(&args).current_dir(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every `kafka_gateway_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("kafka_gateway_"))
        .map(str::to_owned)
        .collect()
}

fn exported() -> BTreeSet<String> {
    FAMILIES.iter().flat_map(|f| f.series_names()).collect()
}

fn strings(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

#[test]
fn the_dashboard_alerts_and_readme_name_only_exported_metrics() {
    let exported = exported();
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo("deploy/monitoring/grafana-dashboard.json")).unwrap())
            .unwrap();
    let mut text = String::new();
    strings(&dashboard, &mut text);
    let in_dashboard = metric_names(&text);
    let alerts = metric_names(&std::fs::read_to_string(repo("deploy/monitoring/alerts.yml")).unwrap());
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    // The README names families (a histogram by its own name) and says what they start with.
    let mut in_readme = metric_names(&readme);
    in_readme.remove("kafka_gateway_");
    let families: BTreeSet<String> = FAMILIES.iter().map(|f| format!("kafka_gateway_{}", f.name)).collect();
    let documented: BTreeSet<String> = exported.union(&families).cloned().collect();
    for (what, names, known) in [
        ("the dashboard", &in_dashboard, &exported),
        ("alerts.yml", &alerts, &exported),
        ("README.md", &in_readme, &documented),
    ] {
        let unknown: Vec<_> = names.difference(known).collect();
        assert!(unknown.is_empty(), "{what} names metrics the gateway does not export: {unknown:?}");
    }
    // Built from all of them: every family has a panel and a line in the README's table.
    for family in FAMILIES {
        let name = format!("kafka_gateway_{}", family.name);
        let series = family.series_names();
        assert!(series.iter().any(|s| in_dashboard.contains(s)), "no dashboard panel shows {name}");
        let row = readme.lines().find(|l| l.starts_with(&format!("| `{name}`"))).unwrap_or_else(|| {
            panic!("README.md's Monitoring table has no row for {name}");
        });
        for label in family.labels {
            assert!(row.contains(&format!("`{label}`")), "README.md's row for {name} lacks its label {label}: {row}");
        }
    }
    // The check itself: a name nobody exports is caught.
    assert!(!exported.contains("kafka_gateway_requests"), "a counter is exported as NAME_total only");
}
