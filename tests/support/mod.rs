//! What the integration tests stand on: real brokers (librdkafka's mock cluster, tansu), the
//! gateway, and a private link — a network namespace that reaches only the gateway and resolves
//! the pattern names through its own hosts file, as TiDB Cloud's side of a private link does.
#![allow(dead_code)] // each test file uses a different part

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use kafka_gateway::broker::HostPort;
use kafka_gateway::{Config, Gateway};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

pub type Mock = MockCluster<'static, DefaultProducerContext>;

/// The racks of the guides' three brokers, in node id order.
pub const RACKS: [&str; 3] = ["us-west-2a", "us-west-2c", "us-west-2b"];
/// What TiDB Cloud's AWS guide calls each of them.
pub const AWS_NAMES: [&str; 3] = [
    "b1.usw2-az1.unique_name.aws.plc.tidbcloud.com",
    "b2.usw2-az2.unique_name.aws.plc.tidbcloud.com",
    "b3.usw2-az3.unique_name.aws.plc.tidbcloud.com",
];

pub mod process;
pub mod sasl;
pub mod tls;

/// The gateway's log lines, captured for tests that assert what an operator would read, and
/// passed on to the test's output.
#[derive(Clone, Default)]
pub struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    /// Installs the capture as the process's subscriber (each test runs in a process of its own).
    pub fn capture() -> Self {
        let logs = Self::default();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info,kafka_gateway=debug"))
            .with_ansi(false)
            .with_writer(logs.clone())
            .try_init();
        logs
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Waits until a line containing `needle` was logged.
    pub async fn wait_for(&self, needle: &str) -> bool {
        eventually(Duration::from_secs(15), || self.text().contains(needle)).await
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        eprint!("{}", String::from_utf8_lossy(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A 3-broker mock cluster with the guides' racks.
pub fn mock_cluster() -> Mock {
    let mock = MockCluster::new(3).expect("a mock cluster");
    for (i, rack) in RACKS.iter().enumerate() {
        mock.broker_rack(i as i32 + 1, rack).expect("a rack");
    }
    mock
}

/// A 3-broker mock cluster (the guides' racks) whose brokers can be made to advertise other ports:
/// those of a front (stunnel, a SASL listener) that clients must go through. It belongs to a client
/// of its own, leaked so that the cluster can be borrowed for the whole test.
pub struct OwnedMock {
    owner: &'static rdkafka::client::Client<rdkafka::client::DefaultClientContext>,
}

impl OwnedMock {
    pub fn new() -> Self {
        let mut config = rdkafka::config::ClientConfig::new();
        config.set("test.mock.num.brokers", "3");
        let native = config.create_native_config().unwrap();
        let owner = rdkafka::client::Client::new(
            &config,
            native,
            rdkafka::types::RDKafkaType::RD_KAFKA_PRODUCER,
            rdkafka::client::DefaultClientContext,
        )
        .unwrap();
        let owned = Self { owner: Box::leak(Box::new(owner)) };
        for (i, rack) in RACKS.iter().enumerate() {
            owned.mock().broker_rack(i as i32 + 1, rack).unwrap();
        }
        owned
    }

    pub fn mock(&self) -> MockCluster<'static, rdkafka::client::DefaultClientContext> {
        self.owner.mock_cluster().expect("a mock cluster")
    }

    /// The brokers' own addresses, broker 1 first.
    pub fn plaintext(&self) -> Vec<String> {
        self.mock().bootstrap_servers().split(',').map(str::to_owned).collect()
    }

    /// A broker that joins the cluster.
    pub fn add_broker(&self, node_id: i32) {
        // SAFETY: as in `advertise`.
        let err = unsafe {
            let cluster = rdkafka::bindings::rd_kafka_handle_mock_cluster(self.owner.native_ptr());
            rdkafka::bindings::rd_kafka_mock_broker_add(cluster, node_id)
        };
        assert_eq!(err, rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR);
    }

    /// A broker that leaves the cluster for good.
    pub fn decommission(&self, node_id: i32) {
        // SAFETY: as in `advertise`.
        let err = unsafe {
            let cluster = rdkafka::bindings::rd_kafka_handle_mock_cluster(self.owner.native_ptr());
            rdkafka::bindings::rd_kafka_mock_broker_decommission(cluster, node_id)
        };
        assert_eq!(err, rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR);
    }

    /// Makes the brokers advertise `ports` (broker N on `ports[N - 1]`) on 127.0.0.1.
    pub fn advertise(&self, ports: &[u16]) {
        // SAFETY: `owner` created the mock cluster and lives as long as the process; librdkafka
        // copies the host string.
        unsafe {
            let cluster = rdkafka::bindings::rd_kafka_handle_mock_cluster(self.owner.native_ptr());
            for (n, &port) in ports.iter().enumerate() {
                rdkafka::bindings::rd_kafka_mock_broker_set_host_port(
                    cluster,
                    n as i32 + 1,
                    c"127.0.0.1".as_ptr(),
                    port.into(),
                );
            }
        }
    }
}

/// The AWS per-AZ listener group of the guide in front of `bootstrap`.
pub fn aws_config(bind: IpAddr, port_base: u16, bootstrap: &str) -> Config {
    Config::from_toml(&format!(
        r#"
        [upstream]
        bootstrap_servers = "{bootstrap}"
        metadata_refresh_secs = 2
        [listeners.tidb]
        bind = "{bind}"
        bootstrap_port = {port_base}
        broker_port_base = {port_base}
        advertised = "b{{node_id}}.{{az}}.unique_name.aws.plc.tidbcloud.com:{{port}}"
        az_by_rack = {{ "us-west-2a" = "usw2-az1", "us-west-2c" = "usw2-az2", "us-west-2b" = "usw2-az3" }}
        "#
    ))
    .expect("a valid configuration")
}

/// The gateway's bootstrap address in a configuration's first group.
pub fn bootstrap_of(config: &Config) -> SocketAddr {
    let g = &config.groups[0];
    SocketAddr::new(g.bind, g.bootstrap_port.expect("a bootstrap port"))
}

pub async fn start(config: Config) -> Arc<Gateway> {
    // The gateway's log goes to the test's output, shown when a test fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_test_writer()
        .try_init();
    Gateway::start(config).await.expect("the gateway starts")
}

/// A base port with `count` free ports above it on 127.0.0.1.
pub fn free_ports(count: u16) -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    loop {
        // Spread test processes over the range by pid, then probe.
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = 20_000 + ((std::process::id() * 37 + n * 101) % 30_000) as u16;
        if (0..=count).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
}

pub fn host_port(addr: SocketAddr) -> HostPort {
    HostPort { host: addr.ip().to_string(), port: addr.port() }
}

/// Waits until `done` holds, up to `limit`; a condition, not a timing judgement.
pub async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

/// A binary of this package's examples, which `cargo test` and `cargo nextest` build beside the tests.
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test> → target/<profile>/examples/<name>
    let path = exe.parent().and_then(Path::parent).expect("a target dir").join("examples").join(name);
    assert!(path.is_file(), "{} is missing; build it with `cargo build --examples`", path.display());
    path
}

/// A client host on the far side of a private link: its own network namespace, a veth pair to the
/// gateway's side, no other route, and a hosts file that maps the pattern names to the gateway —
/// so a client in it can reach the gateway and nothing else, whatever address it is handed.
pub struct PrivateLink {
    pub ns: String,
    /// The gateway's address, on the host side of the link.
    pub gateway_ip: Ipv4Addr,
    hosts_dir: PathBuf,
}

impl PrivateLink {
    pub fn new() -> Self {
        assert!(
            Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout == b"0\n"),
            "private-link tests create network namespaces and need root (CI runs them as root)"
        );
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let ns = format!("kgw{pid}x{n}");
        let base = ((pid % 16_384) * 4 + n % 4) * 4;
        let net = [10u8, 100 + (base >> 16) as u8, (base >> 8) as u8, base as u8];
        let gateway_ip = Ipv4Addr::new(net[0], net[1], net[2], net[3] + 1);
        let client_ip = Ipv4Addr::new(net[0], net[1], net[2], net[3] + 2);
        let (host_if, client_if) = (format!("kgwh{pid}x{n}"), format!("kgwc{pid}x{n}"));
        let link = Self { hosts_dir: PathBuf::from("/etc/netns").join(&ns), ns, gateway_ip };
        let ns = link.ns.as_str();
        for args in [
            vec!["netns", "add", ns],
            vec!["link", "add", &host_if, "type", "veth", "peer", "name", &client_if],
            vec!["link", "set", &client_if, "netns", ns],
            vec!["addr", "add", &format!("{gateway_ip}/30"), "dev", &host_if],
            vec!["link", "set", &host_if, "up"],
            vec!["-n", ns, "addr", "add", &format!("{client_ip}/30"), "dev", &client_if],
            vec!["-n", ns, "link", "set", &client_if, "up"],
            vec!["-n", ns, "link", "set", "lo", "up"],
        ] {
            let out = Command::new("ip").args(&args).output().expect("iproute2's ip");
            assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        link.set_hosts(&[]);
        link
    }

    /// The client's hosts file: `names` resolve to the gateway, nothing else but localhost does.
    pub fn set_hosts(&self, names: &[&str]) {
        std::fs::create_dir_all(&self.hosts_dir).unwrap();
        let mut hosts = String::from("127.0.0.1 localhost\n");
        for name in names {
            hosts.push_str(&format!("{} {name}\n", self.gateway_ip));
        }
        std::fs::write(self.hosts_dir.join("hosts"), hosts).unwrap();
    }

    /// Runs `program` inside the client namespace, returning its status and output.
    pub async fn run(&self, program: &Path, args: &[&str]) -> std::process::Output {
        tokio::process::Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .expect("ip netns exec")
    }

    /// Starts `program` inside the client namespace and leaves it running, its stdin and stdout
    /// piped to the test.
    pub fn spawn(&self, program: &Path, args: &[&str]) -> tokio::process::Child {
        tokio::process::Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("ip netns exec")
    }
}

impl Drop for PrivateLink {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = std::fs::remove_dir_all(&self.hosts_dir);
    }
}

/// The stdout of a finished client, with its stderr when it failed.
pub fn stdout_of(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "client failed ({}): {stdout}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A tansu broker (a Kafka-compatible broker in Rust, single node, id 111), in memory on loopback.
/// `scripts/test-tools` installs it as `.tools/bin/tansu`; `TANSU` overrides the path.
pub struct Tansu {
    pub addr: SocketAddr,
    child: Child,
}

impl Tansu {
    pub fn start() -> Self {
        let bin = std::env::var_os("TANSU")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/tansu"));
        assert!(
            bin.is_file(),
            "{} is missing: run scripts/test-tools first (the README's test command does)",
            bin.display()
        );
        let port = free_ports(0);
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&bin)
            .args(["broker", "--cluster-id", "kgw-test", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "tansu did not open {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { addr, child }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one raw request frame and reads one raw response frame (size prefix included).
pub async fn exchange(stream: &mut tokio::net::TcpStream, frame: &[u8]) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(frame).await?;
    let size = stream.read_i32().await?;
    let mut out = size.to_be_bytes().to_vec();
    out.resize(4 + size as usize, 0);
    stream.read_exact(&mut out[4..]).await?;
    Ok(out)
}

/// A request frame: size, api key, version, correlation id, client id "test", then `body`.
pub fn request_frame(api_key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut f = vec![0; 4];
    f.extend(api_key.to_be_bytes());
    f.extend(version.to_be_bytes());
    f.extend(correlation_id.to_be_bytes());
    f.extend(4i16.to_be_bytes());
    f.extend(b"test");
    f.extend(body);
    let size = (f.len() - 4) as i32;
    f[..4].copy_from_slice(&size.to_be_bytes());
    f
}

/// A broker as a [`FakeBroker`] reports it: node id, host, port, rack.
pub type FakeNode = (i32, String, i32, Option<String>);

/// A minimal broker for what no real broker here does on demand: it answers ApiVersions and
/// Metadata with whatever brokers the test sets, answers every other request with the bytes
/// `fake-response`, and records every request frame it receives.
pub struct FakeBroker {
    pub addr: SocketAddr,
    pub nodes: Arc<std::sync::Mutex<Vec<FakeNode>>>,
    pub received: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeBroker {
    pub async fn start(port: u16, nodes: Vec<FakeNode>) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind the fake broker");
        let addr = listener.local_addr().unwrap();
        let nodes = Arc::new(std::sync::Mutex::new(nodes));
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (n, r) = (Arc::clone(&nodes), Arc::clone(&received));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(fake_connection(stream, Arc::clone(&n), Arc::clone(&r)));
            }
        });
        Self { addr, nodes, received, task }
    }

    pub fn set_nodes(&self, nodes: Vec<FakeNode>) {
        *self.nodes.lock().unwrap() = nodes;
    }
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fake_connection(
    mut stream: tokio::net::TcpStream,
    nodes: Arc<std::sync::Mutex<Vec<FakeNode>>>,
    received: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
) {
    use kafka_gateway::rewrite::{Response, encode};
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn frame<M: Response>(m: &M, version: i16, correlation_id: i32) -> Vec<u8> {
        encode(&ResponseHeader::default().with_correlation_id(correlation_id), m, version, &[]).unwrap().to_vec()
    }
    loop {
        let Ok(size) = stream.read_i32().await else { return };
        let mut body = vec![0; size as usize];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let (key, version) = (i16::from_be_bytes([body[0], body[1]]), i16::from_be_bytes([body[2], body[3]]));
        let correlation_id = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
        let mut whole = size.to_be_bytes().to_vec();
        whole.extend(&body);
        received.lock().unwrap().push(whole);
        let reply = match key {
            18 => {
                let keys = [(3, 0, 12), (18, 0, 3), (10_001, 0, 0)].map(|(k, min, max)| {
                    ApiVersion::default().with_api_key(k).with_min_version(min).with_max_version(max)
                });
                frame(&ApiVersionsResponse::default().with_api_keys(keys.to_vec()), version.min(3), correlation_id)
            }
            3 => {
                let brokers = nodes
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(id, host, port, rack)| {
                        MetadataResponseBroker::default()
                            .with_node_id(BrokerId(*id))
                            .with_host(StrBytes::from_string(host.clone()))
                            .with_port(*port)
                            .with_rack(rack.clone().map(StrBytes::from_string))
                    })
                    .collect();
                let m = MetadataResponse::default()
                    .with_brokers(brokers)
                    .with_cluster_id(Some(StrBytes::from_static_str("fake")));
                frame(&m, version, correlation_id)
            }
            _ => {
                let mut f = vec![0; 4];
                f.extend(correlation_id.to_be_bytes());
                f.extend(b"fake-response");
                let len = (f.len() - 4) as i32;
                f[..4].copy_from_slice(&len.to_be_bytes());
                f
            }
        };
        if stream.write_all(&reply).await.is_err() {
            return;
        }
    }
}

/// The gateway binary running with a configuration file, its log collected line by line.
pub struct GatewayProcess {
    pub child: tokio::process::Child,
    lines: Arc<std::sync::Mutex<Vec<String>>>,
}

impl GatewayProcess {
    /// `kafka-gateway run --config FILE` with `RUST_LOG=info` (and extra arguments).
    pub fn run(config: &Path, extra: &[&str]) -> Self {
        Self::run_logging(config, extra, "info")
    }

    /// As [`GatewayProcess::run`], logging what `filter` (a `RUST_LOG` value) lets through.
    pub fn run_logging(config: &Path, extra: &[&str], filter: &str) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kafka-gateway"))
            .args(["run", "--config"])
            .arg(config)
            .args(extra)
            .env("RUST_LOG", filter)
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the gateway binary");
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stderr, sink) = (child.stderr.take().unwrap(), Arc::clone(&lines));
        let name = config.display().to_string();
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut reader = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                eprintln!("[{name}] {line}");
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    pub fn pid(&self) -> String {
        self.child.id().expect("running").to_string()
    }

    /// Sends `signal` (HUP, TERM, INT, USR1, KILL…).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.pid()).status().unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    /// Every line logged so far.
    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// How many lines so far contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.lines.lock().unwrap().iter().filter(|l| l.contains(needle)).count()
    }

    /// Waits until `needle` has been logged `n` times in all (up to 30 s).
    pub async fn wait_for_nth(&self, needle: &str, n: usize) -> bool {
        eventually(Duration::from_secs(30), || self.count(needle) >= n).await
    }

    pub async fn wait_for(&self, needle: &str) -> bool {
        self.wait_for_nth(needle, 1).await
    }

    /// Waits for the process to exit (up to `limit`).
    pub async fn exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(limit, self.child.wait()).await.ok().map(|s| s.unwrap())
    }
}

/// The Python that `scripts/test-tools` installs the client matrix's Python clients into
/// (`.tools/venv`); `KGW_PYTHON` overrides it.
pub fn python() -> PathBuf {
    let path = std::env::var_os("KGW_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/python"));
    assert!(
        path.is_file(),
        "{} is missing: run scripts/test-tools first (the README's test command does)",
        path.display()
    );
    path
}

/// The client matrix's scripts (tests/clients/).
pub fn client_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients").join(name)
}

/// librdkafka 2.16's mock cluster, the one inside the confluent-kafka wheel, in a process of its
/// own (tests/clients/mock_cluster.py): 3 brokers with the guides' racks, and, unlike the 2.12
/// build inside the `rdkafka` crate, share groups (ShareFetch v1, ShareAcknowledge v1).
pub struct ShareMock {
    pub bootstrap: String,
    child: Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl ShareMock {
    pub fn start() -> Self {
        use std::io::BufRead;
        let mut child = Command::new(python())
            .arg(client_script("mock_cluster.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the mock cluster's process starts");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let bootstrap = line.trim().strip_prefix("bootstrap ").unwrap_or_else(|| panic!("mock cluster said {line:?}"));
        Self { bootstrap: bootstrap.to_owned(), child, stdin, stdout }
    }

    fn command(&mut self, command: &str) {
        use std::io::{BufRead, Write};
        writeln!(self.stdin, "{command}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ok", "mock cluster: {command}");
    }

    pub fn create_topic(&mut self, topic: &str, partitions: i32, replicas: i32) {
        self.command(&format!("topic {topic} {partitions} {replicas}"));
    }

    pub fn partition_leader(&mut self, topic: &str, partition: i32, broker: i32) {
        self.command(&format!("leader {topic} {partition} {broker}"));
    }
}

impl Drop for ShareMock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
