//! The binary as an operator meets it: `kafka-gateway check` and `run`, their output and exit statuses.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use kafka_gateway::upstream::{Connection, Link};
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
use support::process::command as gateway;
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_kafka-gateway");

fn aws_toml(bootstrap: &str, base: u16, az_by_rack: &str) -> String {
    format!(
        r#"
        [upstream]
        bootstrap_servers = "{bootstrap}"
        connect_timeout_ms = 2000
        [listeners.tidb]
        bind = "127.0.0.1"
        bootstrap_port = {base}
        broker_port_base = {base}
        advertised = "b{{node_id}}.{{az}}.unique_name.aws.plc.tidbcloud.com:{{port}}"
        az_by_rack = {{ {az_by_rack} }}
        [admin]
        bind = "127.0.0.1:0"
        "#
    )
}

/// The same, with the admin endpoint on `admin` (HOST:PORT).
fn aws_toml_admin(bootstrap: &str, base: u16, admin: &str) -> String {
    aws_toml(bootstrap, base, ALL_RACKS).replace("bind = \"127.0.0.1:0\"", &format!("bind = \"{admin}\""))
}

const ALL_RACKS: &str = r#""us-west-2a" = "usw2-az1", "us-west-2c" = "usw2-az2", "us-west-2b" = "usw2-az3""#;

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn every_invalid_configuration_exits_2_naming_its_key() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/configs/invalid");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let key = text.lines().find_map(|l| l.strip_prefix("# error-key: ")).unwrap();
        for command in ["run", "check"] {
            let out = gateway(&[command, "--config", path.to_str().unwrap()]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command} {}: {stderr}", path.display());
            assert!(stderr.contains(&format!("configuration refused: {key}: ")), "{}: {stderr}", path.display());
        }
    }
}

#[test]
fn validate_and_check_print_each_groups_access_rules() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/configs/valid/private-link-access.toml");
    for args in [vec!["validate"], vec!["validate", "--broker", "1"]] {
        let out = gateway(&[args.as_slice(), &["--config", path.to_str().unwrap()]].concat());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}");
        assert!(
            stdout.contains(
                "access tidb: proxy_protocol required; endpoints vpce-0a1b2c3d4e5f67890, azure:1234567, \
                 psc:9876543210; sources 10.0.0.0/8, 2001:db8::/32, 192.0.2.7/32; max_connections 10000; \
                 idle_timeout 600s; handshake_timeout 5s"
            ),
            "{stdout}"
        );
        assert!(
            stdout.contains(
                "access ops: proxy_protocol off; endpoints any; sources any; max_connections 10; idle_timeout never"
            ),
            "{stdout}"
        );
    }
    // check, against a real cluster, prints them under its table.
    let mock = mock_cluster();
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &aws_toml(&mock.bootstrap_servers(), 19192, ALL_RACKS));
    let out = gateway(&["check", "--config", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("access tidb: proxy_protocol off; endpoints any; sources any; max_connections unlimited; idle_timeout never; handshake_timeout 10s"), "{stdout}");
}

#[test]
fn a_missing_file_and_a_bad_environment_value_exit_2() {
    let out = gateway(&["run", "--config", "/nonexistent.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config: /nonexistent.toml is not a readable file"));
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &aws_toml("127.0.0.1:1", 9092, ALL_RACKS));
    let out = Command::new(BIN)
        .args(["check", "--config", path.to_str().unwrap()])
        .env("KAFKA_GATEWAY_LISTENERS__TIDB__BROKER_PORT_BASE", "ninety")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("listeners.tidb.broker_port_base: invalid type"), "{stderr}");
    assert!(stderr.contains("environment"), "{stderr}");
}

#[test]
fn check_prints_every_broker_and_exits_0() {
    let mock = mock_cluster();
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &aws_toml(&mock.bootstrap_servers(), 19092, ALL_RACKS));
    let out = gateway(&["check", "--config", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let upstreams: Vec<&str> = mock.bootstrap_servers().leak().split(',').collect();
    for (i, rack) in RACKS.iter().enumerate() {
        let node = i + 1;
        let row: Vec<&str> = stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(&node.to_string()))
            .unwrap_or_else(|| panic!("no row for broker {node}:\n{stdout}"))
            .split_whitespace()
            .collect();
        let advertised = format!("{}:{}", AWS_NAMES[i], 19092 + node);
        let listen = format!("127.0.0.1:{}", 19092 + node);
        assert_eq!(
            row,
            ["tidb", &node.to_string(), rack, upstreams[i], &format!("usw2-az{node}"), &advertised, &listen],
            "{stdout}"
        );
    }
    assert!(stdout.contains("ok: 3 broker(s) in 1 listener group(s)"), "{stdout}");
}

#[test]
fn check_exits_1_naming_a_broker_without_az() {
    let mock = mock_cluster();
    let dir = tempfile::tempdir().unwrap();
    let racks = r#""us-west-2a" = "usw2-az1", "us-west-2c" = "usw2-az2""#;
    let path = write(dir.path(), &aws_toml(&mock.bootstrap_servers(), 19092, racks));
    let out = gateway(&["check", "--config", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("problem: listener group tidb: the template uses {az} but broker 3 has no AZ"), "{stdout}");
}

#[test]
fn check_exits_1_when_no_broker_answers() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(0);
    let path = write(dir.path(), &aws_toml(&format!("127.0.0.1:{port}"), 19092, ALL_RACKS));
    let out = gateway(&["check", "--config", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(&format!("problem: bootstrap server cannot connect to 127.0.0.1:{port}")), "{stdout}");
    assert!(stdout.contains("problem: no upstream server answered"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_logs_bad_frames_and_stops_on_sigterm() {
    let mock = mock_cluster();
    let dir = tempfile::tempdir().unwrap();
    let base = free_ports(3);
    // The file names a wrong upstream; the flag overrides it, as the configuration contract says.
    let path = write(dir.path(), &aws_toml("127.0.0.1:1", base, ALL_RACKS));
    // Started with a soft open-file limit of 256 (systemd's default is 1,024): it must raise its own.
    let mut child = tokio::process::Command::new("sh")
        .args(["-c", "ulimit -Sn 256 && exec \"$0\" \"$@\"", BIN])
        .args(["run", "--config", path.to_str().unwrap()])
        .arg("--set")
        .arg(format!("upstream.bootstrap_servers={}", mock.bootstrap_servers()))
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut log = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut wait_for = async |needle: &str| loop {
        let line = tokio::time::timeout(Duration::from_secs(20), log.next_line()).await.unwrap().unwrap();
        let line = line.unwrap_or_else(|| panic!("the log ended before {needle:?}"));
        if line.contains(needle) {
            return line;
        }
    };
    wait_for(&format!("target=broker 3 addr=127.0.0.1:{}", base + 3)).await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id().unwrap())).unwrap();
    let open_files: Vec<&str> =
        limits.lines().find(|l| l.starts_with("Max open files")).unwrap().split_whitespace().collect();
    assert_eq!(open_files[3], open_files[4], "soft open-file limit raised to the hard one: {limits}");
    assert_ne!(open_files[3], "256", "{limits}");

    let addr = kafka_gateway::broker::HostPort { host: "127.0.0.1".into(), port: base };
    let mut conn = Connection::open(&addr, &Link::plain(Duration::from_secs(5))).await.unwrap();
    let metadata: MetadataResponse =
        conn.call(ApiKey::Metadata, 12, &MetadataRequest::default().with_topics(Some(vec![]))).await.unwrap();
    let hosts: Vec<_> = metadata.brokers.iter().map(|b| b.host.to_string()).collect();
    assert_eq!(hosts, AWS_NAMES);

    let mut bad = tokio::net::TcpStream::connect(("127.0.0.1", base + 1)).await.unwrap();
    bad.write_all(&[0x7f, 0, 0, 0, 0, 0]).await.unwrap();
    let line = wait_for("closing connection").await;
    assert!(line.contains("exceeds the limit of 104857600 bytes (gateway.max_frame_bytes)"), "{line}");
    assert!(line.contains("target=broker 1"), "{line}");

    let pid = child.id().unwrap().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
}

/// Starts `kafka-gateway run` with `config` and `extra` arguments, its log piped.
fn spawn_run(config: &Path, extra: &[&str], rust_log: &str) -> tokio::process::Child {
    tokio::process::Command::new(BIN)
        .args(["run", "--config", config.to_str().unwrap()])
        .args(extra)
        .env("RUST_LOG", rust_log)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Reads `child`'s log until a line contains `needle`.
async fn log_line(log: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>, needle: &str) -> String {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(20), log.next_line()).await.unwrap().unwrap();
        let line = line.unwrap_or_else(|| panic!("the log ended before {needle:?}"));
        if line.contains(needle) {
            return line;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_asks_readyz_and_check_admin_shows_the_live_topology() {
    let mock = mock_cluster();
    let dir = tempfile::tempdir().unwrap();
    let base = free_ports(3);
    let admin = format!("127.0.0.1:{}", free_ports(0));
    let path = write(dir.path(), &aws_toml_admin(&mock.bootstrap_servers(), base, &admin));
    let mut child = spawn_run(&path, &[], "info");
    let mut log = BufReader::new(child.stderr.take().unwrap()).lines();
    log_line(&mut log, &format!("target=broker 3 addr=127.0.0.1:{}", base + 3)).await;

    let out = gateway(&["health", "--config", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!((out.status.code(), stdout.trim()), (Some(0), "ok: ready"), "{stdout}");

    // Two clients on broker 2's port, one on broker 1's: the live table counts them.
    // Each sends an ApiVersions request: a client that says nothing is closed at the handshake
    // deadline.
    let held: Vec<_> = [2, 2, 1]
        .iter()
        .map(|n| {
            let mut conn = std::net::TcpStream::connect(("127.0.0.1", base + n)).unwrap();
            std::io::Write::write_all(&mut conn, &[0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0, 0]).unwrap();
            conn
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let stdout = loop {
        let out = gateway(&["check", "--admin", &admin]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stdout}");
        let connections: Vec<_> =
            stdout.lines().filter(|l| l.starts_with("tidb ")).filter_map(|l| l.split_whitespace().nth(7)).collect();
        if connections == ["1", "2", "0"] || std::time::Instant::now() > deadline {
            break stdout;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let upstreams: Vec<&str> = mock.bootstrap_servers().leak().split(',').collect();
    let mut rows = stdout.lines();
    assert!(rows.next().unwrap().starts_with("cluster "), "{stdout}");
    assert_eq!(
        rows.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["GROUP", "NODE", "RACK", "UPSTREAM", "AZ", "ADVERTISED", "LISTEN", "CONNECTIONS"]
    );
    for (i, connections) in ["1", "2", "0"].iter().enumerate() {
        let node = i + 1;
        let row: Vec<&str> = rows.next().unwrap().split_whitespace().collect();
        let advertised = format!("{}:{}", AWS_NAMES[i], base as usize + node);
        let listen = format!("127.0.0.1:{}", base as usize + node);
        assert_eq!(
            row,
            [
                "tidb",
                &node.to_string(),
                RACKS[i],
                upstreams[i],
                &format!("usw2-az{node}"),
                &advertised,
                &listen,
                connections
            ],
            "{stdout}"
        );
    }
    assert!(stdout.contains("ok: 3 broker(s) in 1 listener group(s)"), "{stdout}");
    drop(held);

    let pid = child.id().unwrap().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert!(tokio::time::timeout(Duration::from_secs(10), child.wait()).await.unwrap().unwrap().success());
    let out = gateway(&["health", "--config", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(&format!("unhealthy: cannot connect to the admin endpoint at {admin}")), "{stdout}");
    let out = gateway(&["check", "--admin", &admin]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("problem: cannot connect to the admin endpoint"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_port_in_use_stops_the_gateway_naming_the_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &aws_toml_admin("127.0.0.1:1", free_ports(3), &admin));
    let out = gateway(&["run", "--config", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("cannot listen on {admin} (admin.bind)")), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_connection_span_and_what_it_moved() {
    let mock = mock_cluster();
    let dir = tempfile::tempdir().unwrap();
    let base = free_ports(3);
    let path = write(dir.path(), &aws_toml(&mock.bootstrap_servers(), base, ALL_RACKS));
    let mut child = spawn_run(&path, &["--log-format", "json"], "info");
    let mut log = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = log_line(&mut log, "listening").await;
    let first: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(first["level"], "INFO", "{line}");
    log_line(&mut log, &format!("127.0.0.1:{}", base + 2)).await;

    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", base + 2)).await.unwrap();
    let client = conn.local_addr().unwrap().to_string();
    let request = request_frame(18, 0, 1, &[]);
    let answer = exchange(&mut conn, &request).await.unwrap();
    conn.write_all(&[0x7f, 0, 0, 0, 0, 0]).await.unwrap();
    let line = log_line(&mut log, "closing connection").await;
    let closed: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(closed["level"], "INFO", "a client's protocol break: {line}");
    assert_eq!(closed["span"]["name"], "connection", "{line}");
    assert_eq!(closed["span"]["group"], "tidb", "{line}");
    assert_eq!(closed["span"]["target"], "broker 2", "{line}");
    assert_eq!(closed["span"]["client"], client.as_str(), "{line}");
    assert_eq!(closed["fields"]["side"], "client", "{line}");
    assert_eq!(closed["fields"]["requests"], 1, "{line}");
    assert_eq!(closed["fields"]["to_broker"], request.len(), "the bad frame never reached the broker: {line}");
    assert_eq!(closed["fields"]["to_client"], answer.len(), "{line}");
    assert!(closed["fields"]["message"].as_str().unwrap().contains("gateway.max_frame_bytes"), "{line}");
}
