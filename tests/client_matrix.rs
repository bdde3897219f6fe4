//! The client matrix: every client library in reach, each a real library from its registry, run
//! behind a private link (a network namespace that reaches only the gateway and resolves only the
//! advertised names) against librdkafka's mock cluster (3 brokers, racks) and tansu. For each:
//! the brokers it sees are exactly the advertised names; it produces with acks=all while every
//! partition's leader moves in the middle; and it consumes everything back in a consumer group,
//! each message exactly once. A check that fails through the gateway is run again directly against
//! the broker: if it fails there too, the cell names the incompatibility (client and broker, not the
//! gateway); if it passes directly, the test fails. The table is printed and must be the one in
//! README.md, between the `client-matrix` markers.

mod support;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use support::*;

/// Messages per client and broker; the leaders move after half of them.
const COUNT: usize = 600;
/// The longest one client command may take before it counts as failed.
const CLIENT_LIMIT: Duration = Duration::from_secs(60);

/// A client library and how to run its counting program (tests/clients/, examples/).
struct Client {
    name: &'static str,
    /// The program and its first arguments; the command and options follow.
    program: Vec<String>,
    /// The option that pauses a producer in the middle.
    pause: &'static str,
    /// Why a check cannot be made with this client at all, if it cannot: (check, reason).
    cannot: &'static [(Check, &'static str)],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Names,
    Produce,
    LeaderMove,
    Consume,
}

const CHECKS: [Check; 4] = [Check::Names, Check::Produce, Check::LeaderMove, Check::Consume];

impl Check {
    fn title(self) -> &'static str {
        match self {
            Check::Names => "brokers seen = advertised names",
            Check::Produce => "produce, acks=all",
            Check::LeaderMove => "leader move followed",
            Check::Consume => "consume in a group, exactly once",
        }
    }
}

fn path(p: PathBuf) -> String {
    p.to_str().unwrap().to_owned()
}

fn clients() -> Vec<Client> {
    let py = |script: &str| vec![path(python()), path(client_script(script))];
    let node_modules = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/node/node_modules");
    vec![
        Client {
            name: "kcat",
            program: vec!["bash".into(), path(client_script("kcat_client.sh"))],
            pause: "--pause-at",
            cannot: &[],
        },
        Client { name: "rdkafka", program: vec![path(example("kafka_client"))], pause: "--pause-every", cannot: &[] },
        Client { name: "confluent-kafka", program: py("confluent_kafka_client.py"), pause: "--pause-at", cannot: &[] },
        Client { name: "kafka-python", program: py("kafka_python_client.py"), pause: "--pause-at", cannot: &[] },
        Client { name: "aiokafka", program: py("aiokafka_client.py"), pause: "--pause-at", cannot: &[] },
        Client {
            name: "kafkajs",
            program: vec![
                "env".into(),
                format!("NODE_PATH={}", node_modules.display()),
                "node".into(),
                path(client_script("kafkajs_client.js")),
            ],
            pause: "--pause-at",
            cannot: &[],
        },
        Client {
            name: "rskafka",
            program: vec![path(example("rskafka_client"))],
            pause: "--pause-at",
            cannot: &[
                (Check::Names, "n/a: rskafka has no broker list to show"),
                (Check::Consume, "n/a: rskafka has no consumer groups"),
            ],
        },
    ]
}

/// Where a client runs: behind the private link, or on the host, directly against the broker.
#[derive(Clone, Copy)]
enum Side<'a> {
    Link(&'a PrivateLink),
    Direct,
}

/// A running client command with its stdin and stdout lines.
struct Running {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Running {
    fn start(side: Side<'_>, client: &Client, args: &[String]) -> Self {
        let mut command = match side {
            Side::Link(link) => {
                let mut c = tokio::process::Command::new("ip");
                c.args(["netns", "exec", &link.ns]);
                c.args(&client.program);
                c
            }
            Side::Direct => {
                let mut c = tokio::process::Command::new(&client.program[0]);
                c.args(&client.program[1..]);
                c
            }
        };
        let mut child = command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("a client starts");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self { child, lines }
    }

    /// The next line of output, or why there is none.
    async fn line(&mut self) -> Result<String, String> {
        match tokio::time::timeout(CLIENT_LIMIT, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => Ok(line),
            Ok(_) => Err(self.failure().await),
            Err(_) => Err("timed out".into()),
        }
    }

    /// All of the rest of the output.
    async fn rest(&mut self) -> Result<String, String> {
        let mut out = String::new();
        loop {
            match tokio::time::timeout(CLIENT_LIMIT, self.lines.next_line()).await {
                Ok(Ok(Some(line))) => {
                    out.push_str(&line);
                    out.push('\n');
                }
                Ok(_) => break,
                Err(_) => return Err("timed out".into()),
            }
        }
        let status = self.child.wait().await.unwrap();
        if status.success() { Ok(out) } else { Err(self.failure().await) }
    }

    async fn go(&mut self) {
        self.child.stdin.as_mut().unwrap().write_all(b"go\n").await.unwrap();
    }

    /// The client's error, as the reason it failed: the last line of its error output that names
    /// an error, made stable across runs (no addresses, ports or object ids), so that the table is.
    async fn failure(&mut self) -> String {
        use tokio::io::AsyncReadExt;
        let _ = self.child.start_kill();
        let mut err = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = stderr.read_to_string(&mut err).await;
        }
        let lines: Vec<&str> = err.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let named = lines.iter().rev().find(|l| l.contains("Error") || l.contains("error"));
        stable(named.or(lines.last()).copied().unwrap_or("no error output"))
    }
}

/// `text` without what changes from run to run: addresses, ports, numbers of objects.
fn stable(text: &str) -> String {
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| {
            let bare = w.trim_matches(|c: char| !c.is_ascii_alphanumeric());
            if bare.starts_with("0x") || bare.chars().filter(|c| *c == '.').count() >= 3 && bare.contains(':') {
                "…".to_owned()
            } else {
                w.to_owned()
            }
        })
        .collect();
    words.join(" ").chars().take(100).collect()
}

/// A broker of the matrix, with the gateway in front of it on the link's address.
struct Broker {
    name: &'static str,
    direct: String,
    /// The gateway's bootstrap address and the names and ports its clients must see.
    bootstrap: String,
    names: Vec<String>,
    mock: Option<Mock>,
    _tansu: Option<Tansu>,
    _gateway: std::sync::Arc<kafka_gateway::Gateway>,
}

impl Broker {
    async fn mock(link: &PrivateLink) -> Self {
        let mock = mock_cluster();
        let config = aws_config(link.gateway_ip.into(), 9092, &mock.bootstrap_servers());
        let bootstrap = bootstrap_of(&config).to_string();
        let names = AWS_NAMES.iter().enumerate().map(|(i, n)| format!("broker {} {n}:{}", i + 1, 9093 + i)).collect();
        let direct = mock.bootstrap_servers();
        let gateway = start(config).await;
        Self { name: "mock cluster", direct, bootstrap, names, mock: Some(mock), _tansu: None, _gateway: gateway }
    }

    async fn tansu(link: &PrivateLink) -> Self {
        let tansu = Tansu::start();
        let config = kafka_gateway::Config::from_toml(&format!(
            r#"
            [upstream]
            bootstrap_servers = ["{}"]
            [listeners.gcp]
            bind = "{}"
            bootstrap_port = 9192
            broker_port_base = 9192
            advertised = "b{{node_id}}.xyz.us-west1.gcp.3199745.tidbcloud.com:{{port}}"
            "#,
            tansu.addr, link.gateway_ip
        ))
        .unwrap();
        let bootstrap = bootstrap_of(&config).to_string();
        let names = vec!["broker 111 b111.xyz.us-west1.gcp.3199745.tidbcloud.com:9303".to_owned()];
        let gateway = start(config).await;
        Self {
            name: "tansu",
            direct: tansu.addr.to_string(),
            bootstrap,
            names,
            mock: None,
            _tansu: Some(tansu),
            _gateway: gateway,
        }
    }

    fn hosts(&self) -> Vec<String> {
        self.names.iter().map(|n| n.split(' ').nth(2).unwrap().rsplit_once(':').unwrap().0.to_owned()).collect()
    }

    /// A fresh topic of three partitions, each led by a different broker where there are three.
    async fn create_topic(&self, topic: &str) {
        match &self.mock {
            Some(mock) => {
                mock.create_topic(topic, 3, 3).unwrap();
                for p in 0..3 {
                    mock.partition_leader(topic, p, Some(p + 1)).unwrap();
                }
            }
            None => create_topic_directly(&self.direct, topic).await,
        }
    }

    /// Moves every partition's leader to the next broker; false where there is only one.
    fn move_leaders(&self, topic: &str) -> bool {
        let Some(mock) = &self.mock else { return false };
        for p in 0..3 {
            mock.partition_leader(topic, p, Some(1 + (p + 1) % 3)).unwrap();
        }
        true
    }
}

/// Creates a topic with CreateTopics, for a broker the test cannot create topics in otherwise.
async fn create_topic_directly(addr: &str, topic: &str) {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let addr = kafka_gateway::broker::HostPort::parse(addr).unwrap();
    let mut conn = kafka_gateway::upstream::Connection::open(
        &addr,
        &kafka_gateway::upstream::Link::plain(Duration::from_secs(10)),
    )
    .await
    .unwrap();
    let request = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![
        CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_num_partitions(3)
            .with_replication_factor(1),
    ]);
    let response: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, 5, &request).await.unwrap();
    assert_eq!(response.topics[0].error_code, 0, "{response:?}");
}

/// What a check came to.
#[derive(Debug, Clone)]
enum Outcome {
    Pass,
    /// Failed through the gateway and directly: a client-broker incompatibility.
    Incompatible(String),
    NotApplicable(String),
}

impl Outcome {
    fn cell(&self) -> String {
        match self {
            Outcome::Pass => "pass".into(),
            Outcome::Incompatible(why) => format!("fails directly too ({why})"),
            Outcome::NotApplicable(why) => why.clone(),
        }
    }
}

/// Runs one client's checks against one broker: names, produce with a leader move, consume.
async fn run_checks(link: &PrivateLink, broker: &Broker, client: &Client) -> Vec<(Check, Result<(), String>)> {
    let topic = format!("matrix-{}", client.name);
    broker.create_topic(&topic).await;
    let mut results = Vec::new();
    results.push((
        Check::Names,
        names(Side::Link(link), &broker.bootstrap, client)
            .await
            .and_then(|seen| if seen == broker.names { Ok(()) } else { Err(format!("saw {seen:?}")) }),
    ));
    let (produced, moved) = produce(Side::Link(link), &broker.bootstrap, client, broker, &topic).await;
    results.push((Check::Produce, produced.clone()));
    results.push((
        Check::LeaderMove,
        match (produced, moved) {
            (Ok(()), true) => Ok(()),
            (Ok(()), false) => Err("not moved".into()),
            (Err(e), _) => Err(e),
        },
    ));
    results.push((Check::Consume, consume(Side::Link(link), &broker.bootstrap, client, &topic).await));
    results
}

async fn names(side: Side<'_>, bootstrap: &str, client: &Client) -> Result<Vec<String>, String> {
    let mut run = Running::start(side, client, &["metadata".into(), "--bootstrap".into(), bootstrap.into()]);
    Ok(run.rest().await?.lines().map(str::to_owned).collect())
}

/// Produces COUNT messages, pausing in the middle to move every leader; (the result, whether the
/// leaders moved).
async fn produce(
    side: Side<'_>,
    bootstrap: &str,
    client: &Client,
    broker: &Broker,
    topic: &str,
) -> (Result<(), String>, bool) {
    let half = COUNT / 2;
    let args: Vec<String> = [
        "produce",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--count",
        &COUNT.to_string(),
        client.pause,
        &half.to_string(),
    ]
    .map(str::to_owned)
    .to_vec();
    let mut run = Running::start(side, client, &args);
    match run.line().await {
        Ok(line) if line == format!("paused at {half}") => {}
        Ok(line) => return (Err(format!("said {line:?}")), false),
        Err(e) => return (Err(e), false),
    }
    // Every client has its first half acknowledged before it pauses (see tests/clients/).
    let moved = broker.move_leaders(topic);
    run.go().await;
    let result = match run.rest().await {
        Ok(out) if out.trim() == format!("produced {COUNT} errors 0") => Ok(()),
        Ok(out) => Err(format!("said {:?}", out.trim())),
        Err(e) => Err(e),
    };
    (result, moved)
}

async fn consume(side: Side<'_>, bootstrap: &str, client: &Client, topic: &str) -> Result<(), String> {
    let group = format!("{topic}-group");
    let args: Vec<String> =
        ["consume", "--bootstrap", bootstrap, "--topic", topic, "--group", &group, "--count", &COUNT.to_string()]
            .map(str::to_owned)
            .to_vec();
    let mut run = Running::start(side, client, &args);
    match run.rest().await {
        Ok(out) if out.trim() == format!("consumed {COUNT} distinct {COUNT} duplicates 0") => Ok(()),
        Ok(out) => Err(format!("said {:?}", out.trim())),
        Err(e) => Err(e),
    }
}

/// Runs a check that failed through the gateway again, directly against the broker, on the host.
/// Ok(()) if it passes directly (which makes it the gateway's fault).
async fn directly(broker: &Broker, client: &Client, check: Check) -> Result<(), String> {
    let topic = format!("direct-{}-{check:?}", client.name).to_lowercase();
    broker.create_topic(&topic).await;
    match check {
        // Directly, the names are the broker's own: the check is that the client lists them at all.
        Check::Names => names(Side::Direct, &broker.direct, client)
            .await
            .and_then(|seen| if seen.len() == broker.names.len() { Ok(()) } else { Err(format!("saw {seen:?}")) }),
        Check::Produce | Check::LeaderMove => produce(Side::Direct, &broker.direct, client, broker, &topic).await.0,
        Check::Consume => {
            produce(Side::Direct, &broker.direct, client, broker, &topic).await.0?;
            consume(Side::Direct, &broker.direct, client, &topic).await
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_in_reach_works_through_the_gateway_as_it_does_directly() {
    let link = PrivateLink::new();
    let clients = clients();
    let mut table = String::new();
    let _ = writeln!(table, "| client | broker | {} |", CHECKS.map(Check::title).join(" | "));
    let _ = writeln!(table, "|---|---|{}", "---|".repeat(CHECKS.len()));
    let mut gateway_faults = Vec::new();
    for which in ["mock", "tansu"] {
        // Each broker's gateway on its own ports of the link's address (9092+, 9192+).
        let broker = if which == "mock" { Broker::mock(&link).await } else { Broker::tansu(&link).await };
        let hosts = broker.hosts();
        link.set_hosts(&hosts.iter().map(String::as_str).collect::<Vec<_>>());
        for client in &clients {
            let results = run_checks(&link, &broker, client).await;
            let mut cells = Vec::new();
            for (check, result) in results {
                eprintln!("{} × {} × {}: {result:?}", client.name, broker.name, check.title());
                let outcome = if let Some((_, why)) = client.cannot.iter().find(|(c, _)| *c == check) {
                    Outcome::NotApplicable(why.to_string())
                } else if check == Check::LeaderMove && broker.mock.is_none() {
                    Outcome::NotApplicable("n/a: tansu runs one broker".into())
                } else {
                    match result {
                        Ok(()) => Outcome::Pass,
                        Err(through) => match directly(&broker, client, check).await {
                            Err(direct) => Outcome::Incompatible(direct),
                            Ok(()) => {
                                gateway_faults.push(format!(
                                    "{} × {} × {}: {through}",
                                    client.name,
                                    broker.name,
                                    check.title()
                                ));
                                Outcome::Incompatible(format!("GATEWAY ONLY: {through}"))
                            }
                        },
                    }
                };
                cells.push(outcome.cell().replace('|', "/"));
            }
            let _ = writeln!(table, "| {} | {} | {} |", client.name, broker.name, cells.join(" | "));
        }
        broker._gateway.shutdown();
    }
    println!("{table}");
    std::fs::write(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/client-matrix.md"), &table).unwrap();
    assert!(gateway_faults.is_empty(), "fails through the gateway only:\n{}\n{table}", gateway_faults.join("\n"));
    let readme = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let between = readme
        .split_once("<!-- client-matrix -->\n")
        .and_then(|(_, rest)| rest.split_once("<!-- /client-matrix -->"))
        .map(|(table, _)| table.to_owned());
    assert_eq!(
        between.as_deref(),
        Some(table.as_str()),
        "README.md's client matrix is not this run's (target/client-matrix.md)"
    );
}
