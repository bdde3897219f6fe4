//! High availability with a real load balancer: two gateway replicas (the binary, one
//! configuration, each on its own address as each would be on its own host) behind haproxy in TCP
//! mode, which health-checks their `/readyz`, in front of librdkafka's mock cluster. Clients run in
//! the private-link namespace and reach only haproxy. While an idempotent producer sends 100,000
//! messages and a consumer group reads them, the replicas are rolled one at a time (drain, restart)
//! or one is killed; every message is counted. The figures are printed for the README.

mod support;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const MESSAGES: usize = 100_000;
/// Broker N listens on BASE + N on every replica and on haproxy; broker 4 joins in one test.
const BASE: u16 = 9092;
const PORTS: [u16; 5] = [BASE, BASE + 1, BASE + 2, BASE + 3, BASE + 4];
const ADMIN: u16 = 9644;

/// A loopback address per replica, unique to this test process (127/8 is all loopback).
fn replica_ip(replica: u8) -> Ipv4Addr {
    let n = std::process::id();
    Ipv4Addr::new(127, (n % 200) as u8 + 20, (n / 200 % 250) as u8, 2 + replica)
}

/// The one configuration of every replica but its bind address, as `validate` would see it.
fn replica_config(dir: &Path, replica: u8, bootstrap: &str) -> PathBuf {
    let ip = replica_ip(replica);
    let text = format!(
        r#"
        [upstream]
        bootstrap_servers = "{bootstrap}"
        metadata_refresh_secs = 1
        broker_grace_secs = 3
        [listeners.tidb]
        bind = "{ip}"
        bootstrap_port = {BASE}
        broker_port_base = {BASE}
        advertised = "b{{node_id}}.{{az}}.unique_name.aws.plc.tidbcloud.com:{{port}}"
        az_by_rack = {{ "us-west-2a" = "usw2-az1", "us-west-2c" = "usw2-az2", "us-west-2b" = "usw2-az3" }}
        default_az = "usw2-az1"
        [gateway]
        drain_secs = 20
        [admin]
        bind = "{ip}:{ADMIN}"
        "#
    );
    let path = dir.join(format!("replica-{replica}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// haproxy in TCP mode on the link's gateway address, one frontend per port, each balancing over
/// both replicas' same port, health-checked on `/readyz`.
struct Haproxy {
    child: Child,
}

impl Haproxy {
    fn start(dir: &Path, listen: Ipv4Addr) -> Self {
        let mut cfg = String::from(
            "global\n  maxconn 4000\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 10m\n  \
             timeout server 10m\n  retries 3\n  option redispatch\n",
        );
        for port in PORTS {
            cfg += &format!("frontend f{port}\n  bind {listen}:{port}\n  default_backend b{port}\n");
            cfg += &format!("backend b{port}\n  balance roundrobin\n  option httpchk GET /readyz\n");
            for replica in 0..2 {
                cfg += &format!(
                    "  server r{replica} {}:{port} check port {ADMIN} inter 300ms fall 1 rise 1\n",
                    replica_ip(replica)
                );
            }
        }
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, cfg).unwrap();
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy (scripts/test-tools installs it)");
        Self { child }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a replica's `/readyz` answers 200.
fn ready(replica: u8) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect((replica_ip(replica), ADMIN)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// A testbed: the mock cluster, two replicas, haproxy, and the client namespace.
struct Bed {
    owned: OwnedMock,
    link: PrivateLink,
    dir: tempfile::TempDir,
    replicas: [Option<GatewayProcess>; 2],
    _haproxy: Haproxy,
}

impl Bed {
    async fn start() -> Self {
        let owned = OwnedMock::new();
        owned.mock().create_topic("ha", 3, 3).unwrap();
        let link = PrivateLink::new();
        link.set_hosts(&AWS_NAMES);
        let dir = tempfile::tempdir().unwrap();
        let haproxy = Haproxy::start(dir.path(), link.gateway_ip);
        let mut bed = Self { owned, link, dir, replicas: [None, None], _haproxy: haproxy };
        for replica in 0..2 {
            bed.launch(replica).await;
        }
        bed
    }

    fn bootstrap(&self) -> String {
        format!("{}:{BASE}", self.link.gateway_ip)
    }

    /// Starts a replica and waits until it is ready (haproxy then sends it clients).
    async fn launch(&mut self, replica: u8) {
        let config = replica_config(self.dir.path(), replica, &self.owned.plaintext().join(","));
        self.replicas[replica as usize] = Some(GatewayProcess::run(&config, &[]));
        assert!(eventually(Duration::from_secs(20), || ready(replica)).await, "replica {replica} never ready");
        // haproxy checks every 300 ms.
        tokio::time::sleep(Duration::from_millis(700)).await;
    }

    /// Drains a replica with SIGTERM, waits for its exit, and starts it again: one step of a
    /// rolling restart. Returns how long the replica was away.
    async fn roll(&mut self, replica: u8) -> Duration {
        let started = Instant::now();
        let mut process = self.replicas[replica as usize].take().expect("running");
        process.signal("TERM");
        let status = process.exit(Duration::from_secs(30)).await.expect("the drain ends");
        assert!(status.success(), "replica {replica} exited {status}:\n{}", process.log());
        assert!(process.log().contains("stopped after a complete drain"), "{}", process.log());
        self.launch(replica).await;
        started.elapsed()
    }
}

/// A producer and a consumer group in the client namespace, running until both are done.
struct Traffic {
    producer: tokio::process::Child,
    consumer: tokio::process::Child,
}

impl Traffic {
    fn start(bed: &Bed, topic: &str, acks: &str) -> Self {
        let client = example("kafka_client");
        let bootstrap = bed.bootstrap();
        let count = MESSAGES.to_string();
        let producer = bed.link.spawn(
            &client,
            &[
                "produce",
                "--bootstrap",
                &bootstrap,
                "--topic",
                topic,
                "--count",
                &count,
                "--rate",
                "8000",
                "--acks",
                acks,
            ],
        );
        let consumer = bed.link.spawn(
            &client,
            // A connection cut while the group is joining leaves the broker a member the client never
            // learned of, which holds the next rebalance until its session times out (45 s by
            // default, directly as through a gateway): 10 s keeps that within the consumer's patience.
            &[
                "consume",
                "--bootstrap",
                &bootstrap,
                "--topic",
                topic,
                "--group",
                "ha",
                "--count",
                &count,
                "--order",
                "-X",
                "session.timeout.ms=10000",
            ],
        );
        Self { producer, consumer }
    }

    /// (the producer's line, the consumer's line).
    async fn finish(self) -> (String, String) {
        let line = |child: tokio::process::Child| async move {
            let out = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output()).await.unwrap().unwrap();
            let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            assert!(
                !line.is_empty(),
                "a client printed nothing ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            line
        };
        (line(self.producer).await, line(self.consumer).await)
    }
}

/// The numbers of a consumer's `--order` line: distinct, duplicates, out-of-order, max gap (ms).
fn consumed(line: &str) -> [u64; 4] {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at =
        |key: &str| words.iter().position(|w| *w == key).and_then(|i| words[i + 1].parse().ok()).unwrap_or(u64::MAX);
    [at("distinct"), at("duplicates"), at("out-of-order"), at("max-gap-ms")]
}

/// The producer's client-visible errors.
fn produced_errors(line: &str) -> u64 {
    line.rsplit_once("errors ").and_then(|(_, n)| n.parse().ok()).unwrap_or(u64::MAX)
}

/// Prints a scenario's figures; `away` is how long a restarted replica was out of haproxy's pool.
fn report(scenario: &str, producer: &str, consumer: &str, away: Option<Duration>) {
    let [distinct, duplicates, out_of_order, gap] = consumed(consumer);
    println!(
        "HA | {scenario} | messages {MESSAGES} | lost {} | duplicated {duplicates} | out of order {out_of_order} | \
         client-visible errors {} | replica away {} | longest pause in consumption {gap} ms",
        MESSAGES as u64 - distinct.min(MESSAGES as u64),
        produced_errors(producer),
        away.map_or("not restarted".into(), |away| format!("{:.1} s", away.as_secs_f64())),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_every_replica_loses_and_duplicates_nothing() {
    let mut bed = Bed::start().await;
    let traffic = Traffic::start(&bed, "ha", "all");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut away = bed.roll(0).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    away += bed.roll(1).await;
    let (producer, consumer) = traffic.finish().await;
    report("rolling restart, idempotent producer", &producer, &consumer, Some(away / 2));
    assert_eq!(produced_errors(&producer), 0, "{producer}");
    let [distinct, duplicates, out_of_order, _] = consumed(&consumer);
    assert_eq!((distinct, duplicates, out_of_order), (MESSAGES as u64, 0, 0), "{consumer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_under_a_non_idempotent_producer_loses_nothing() {
    let mut bed = Bed::start().await;
    let traffic = Traffic::start(&bed, "ha", "1");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut away = bed.roll(0).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    away += bed.roll(1).await;
    let (producer, consumer) = traffic.finish().await;
    report("rolling restart, acks=1 without idempotence", &producer, &consumer, Some(away / 2));
    let [distinct, ..] = consumed(&consumer);
    assert_eq!(distinct, MESSAGES as u64, "lost messages: {consumer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_costs_an_idempotent_producer_nothing() {
    let mut bed = Bed::start().await;
    let traffic = Traffic::start(&bed, "ha", "all");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut process = bed.replicas[0].take().unwrap();
    process.signal("KILL");
    process.exit(Duration::from_secs(5)).await.expect("killed");
    let (producer, consumer) = traffic.finish().await;
    report("one replica killed (SIGKILL)", &producer, &consumer, None);
    assert_eq!(produced_errors(&producer), 0, "{producer}");
    let [distinct, duplicates, out_of_order, _] = consumed(&consumer);
    assert_eq!((distinct, duplicates, out_of_order), (MESSAGES as u64, 0, 0), "{consumer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_joins_or_leaves_does_so_on_every_replica() {
    let bed = Bed::start().await;
    let client = example("kafka_client");
    let names = |out: &std::process::Output| stdout_of(out);
    bed.owned.add_broker(4);
    let b4 = format!("broker 4 b4.usw2-az1.unique_name.aws.plc.tidbcloud.com:{}", BASE + 4);
    // Every replica opens broker 4's port; haproxy then reaches it on either.
    for replica in 0..2 {
        let ip = replica_ip(replica);
        assert!(
            eventually(Duration::from_secs(20), || std::net::TcpStream::connect((ip, BASE + 4)).is_ok()).await,
            "replica {replica} never opened broker 4's port"
        );
    }
    let out = bed.link.run(&client, &["metadata", "--bootstrap", &bed.bootstrap()]).await;
    assert!(names(&out).contains(&b4), "{}", names(&out));
    bed.owned.decommission(4);
    for replica in 0..2 {
        let ip = replica_ip(replica);
        assert!(
            eventually(Duration::from_secs(20), || std::net::TcpStream::connect((ip, BASE + 4)).is_err()).await,
            "replica {replica} kept broker 4's port"
        );
    }
    let out = bed.link.run(&client, &["metadata", "--bootstrap", &bed.bootstrap()]).await;
    assert!(!names(&out).contains("broker 4"), "{}", names(&out));
}
