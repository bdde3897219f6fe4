//! End to end: a real client (librdkafka through the `rdkafka` crate, and a raw client for request
//! latency) against a real 3-broker cluster (librdkafka's mock cluster), through (a) a direct
//! connection, (b) the gateway (the release binary, its own process) and, when given, (c) another
//! Kafka proxy, taken in turn in one run.
//!
//! `scripts/bench` (or `cargo bench --bench e2e -- [--rounds N] [--messages N] [--latency N]
//! [--other-proxy COMMAND] [--tls]`)
//!
//! Reports medians over the rounds: produce and consume throughput (MB/s, ratio to direct), the
//! latency of small acks=1 Produce requests sent one at a time (p50/p99/p999, and the difference to
//! direct, beside what two relays that only move bytes add: a plain TCP relay, the floor of any
//! user-space proxy on the machine, and an in-kernel BPF sockmap relay, the floor of any proxy),
//! the throughput of pipelined Produce requests on one connection, each proxy's CPU seconds per GB
//! moved in the bulk phases, and its peak RSS.
//!
//! With `--tls`, the comparison of TLS instead (benches/README.md, "TLS on both sides"): direct TLS
//! (stunnel, OpenSSL, in front of each mock broker, which advertises stunnel's ports), the gateway
//! with TLS on both sides (clients to it, it to stunnel), the plaintext gateway and plaintext
//! direct beside them, and `--other-proxy` with TLS on both sides.

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use clap::Parser;
use hdrhistogram::Histogram;
use kafka_gateway::broker::HostPort;
use kafka_gateway::config::ClientTls;
use kafka_gateway::stream::Stream;
use kafka_gateway::tls::Connector;
use kafka_gateway::upstream::{Connection, Link};
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader, TopicName, produce_request};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use rdkafka::client::{Client, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaType;
use rdkafka::{Offset, TopicPartitionList};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "e2e/busy_poll.rs"]
mod busy_poll;
#[path = "e2e/pki.rs"]
mod pki;
#[path = "e2e/relays.rs"]
mod relays;

#[derive(Parser)]
struct Args {
    /// Rounds of every path; the order rotates every round.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// 1 KB messages produced, then consumed, per path and round.
    #[arg(long, default_value_t = 100_000)]
    messages: usize,
    /// Produce requests sent one at a time per path and round, for latency.
    #[arg(long, default_value_t = 20_000)]
    latency: usize,
    /// Another Kafka proxy to measure beside the gateway: a shell command in which {broker1},
    /// {broker2} and {broker3} are the mock brokers' addresses and {port1}, {port2} and {port3} the
    /// loopback ports it must listen on for each of them (broker 1's is the clients' bootstrap).
    #[arg(long, value_name = "COMMAND")]
    other_proxy: Option<String>,
    /// What to call the other proxy in the report.
    #[arg(long, default_value = "other")]
    other_name: String,
    /// The highest Metadata version the cluster offers, for every path of the run. librdkafka's
    /// mock writes a stray byte after Metadata v9+ responses, which proxies that decode strictly
    /// (kafka-proxy) refuse; 8 lets them take part.
    #[arg(long, value_name = "VERSION")]
    metadata_max_version: Option<i16>,
    /// Compare TLS paths instead: direct TLS (stunnel before each broker), the gateway with TLS on
    /// both sides, plaintext direct and the plaintext gateway, and `--other-proxy` with TLS on both
    /// sides, in whose command {broker1}..{broker3} are then stunnel's addresses and {tls_cert},
    /// {tls_key} and {tls_ca} the run's certificate, key and CA (PEM files). The relays sit out.
    #[arg(long)]
    tls: bool,
    /// Paths to leave out of the run, comma-separated: for a quicker side-by-side, or a profile of
    /// one path beside direct.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "PATHS")]
    skip: Vec<Skippable>,
    /// Instead of the comparison: what the gateway's busy poll costs and buys at fixed request
    /// rates (benches/e2e/busy_poll.rs).
    #[arg(long)]
    busy_poll_study: bool,
    /// Request rates of the busy-poll study, per second (0: an idle connection).
    #[arg(long, value_delimiter = ',', default_value = "0,100,1000,10000")]
    poll_rates: Vec<u32>,
    /// Busy-poll windows of the study, in µs (0: off).
    #[arg(long, value_delimiter = ',', default_value = "0,200")]
    poll_windows: Vec<u64>,
    /// Seconds per rate and path in the study.
    #[arg(long, default_value_t = 10)]
    poll_secs: u64,
    /// Accepted and ignored: `cargo bench` passes it to every bench target.
    #[arg(long, hide = true)]
    bench: bool,
    /// Internal: run as the plain TCP relay (LISTEN_PORT TARGET ...) that marks the floor of any
    /// user-space proxy.
    #[arg(long, hide = true, num_args = 2..)]
    relay: Option<Vec<String>>,
    /// Internal: run as the in-kernel relay (LISTEN_PORT TARGET ...) that marks the floor of any
    /// proxy.
    #[arg(long, hide = true, num_args = 2..)]
    sockmap_relay: Option<Vec<String>>,
}

/// The paths `--skip` can leave out (direct is what every other is measured against).
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Skippable {
    Relay,
    Gateway,
    Sockmap,
}

/// The relays' ports for broker N are RELAY_PORT_BASE + N and SOCKMAP_PORT_BASE + N: proxies that
/// only move bytes, each in its own process. What they cost, any proxy pays here.
///
/// Every fixed port of the bench lies below Linux's ephemeral range (32768–60999 by default): a
/// port inside it can be taken as the local port of any connection the bench or its client makes
/// (a CI run once failed so: 39600, the old base, was in use when the second gateway started).
const RELAY_PORT_BASE: u16 = 29_480;
const SOCKMAP_PORT_BASE: u16 = 29_490;
/// The gateway's bootstrap port; broker N's is PORT_BASE + N.
const PORT_BASE: u16 = 29_500;
/// The other proxy's port for broker N is OTHER_PORT_BASE + N (scripts/test's smoke run names it).
const OTHER_PORT_BASE: u16 = 29_600;
/// With `--tls`: stunnel's TLS port before broker N, and the TLS gateway's port for broker N.
const STUNNEL_PORT_BASE: u16 = 29_470;
const TLS_PORT_BASE: u16 = 29_520;
/// The gateway's admin endpoint: its metrics count as in production (a second gateway given as
/// `--other-proxy … --set admin.bind=` runs with them off, for the comparison).
const ADMIN_PORT: u16 = 29_700;

/// The mock cluster keeps at most 5 MiB per partition (dropping the oldest), so the messages of a
/// round are spread over enough partitions to be consumed whole.
const PARTITIONS: i32 = 30;
const MESSAGE: usize = 1024;

/// One way from the client to the cluster, and what was measured on it.
struct Path {
    name: String,
    /// The bootstrap servers librdkafka is given, for the bulk phases.
    bootstrap: String,
    /// The ports the mock cluster advertises for brokers 1, 2 and 3 while this path's clients
    /// run: the brokers' own, or a relay's (a relay cannot change what the brokers advertise).
    advertised: Vec<u16>,
    /// Where the latency and pipelined requests go: broker 1, by this path.
    broker_1: HostPort,
    /// The proxy's process, whose CPU and memory are reported; `None` for the direct paths.
    proxy: Option<Proxy>,
    /// The CA clients check this path's TLS certificates against; `None`: the path is plaintext.
    tls_ca: Option<std::path::PathBuf>,
    produce: Vec<f64>,
    consume: Vec<f64>,
    pipelined: Vec<f64>,
    /// CPU the whole machine spent in the pipelined phase (every process, kernel workers and
    /// interrupts included: an in-kernel relay's work shows nowhere else), and the bytes it moved.
    pipelined_machine_cpu: Duration,
    pipelined_bytes: u64,
    latency: Vec<Histogram<u64>>,
    /// CPU the proxy and the whole machine spent in the latency phase, and the requests sent: what
    /// a request costs when requests come one at a time (where a busy poll spends the most).
    latency_proxy_cpu: Duration,
    latency_machine_cpu: Duration,
    latency_requests: u64,
    /// CPU spent in the bulk phases by the proxy, by this process (the librdkafka client and the
    /// mock brokers), and by the whole machine, and the bytes moved.
    cpu: Duration,
    client_and_brokers_cpu: Duration,
    /// With `--tls`: stunnel's CPU in the same phases (the brokers' TLS, on the TLS paths).
    stunnel_cpu: Duration,
    machine_cpu: Duration,
    bytes: u64,
    /// Context switches of the proxy's threads in the bulk phases: each is a wake-up or a preemption.
    switches: u64,
    /// Minor page faults of the proxy in the bulk phases: each is a page of fresh memory touched.
    faults: u64,
}

impl Path {
    /// A path whose broker N is at `ports[N - 1]` on the loopback.
    fn new(name: &str, ports: &[u16], proxy: Option<Proxy>, advertised: &[u16]) -> Self {
        Self {
            name: name.to_owned(),
            bootstrap: format!("127.0.0.1:{}", ports[0]),
            advertised: advertised.to_vec(),
            broker_1: loopback(ports[0]),
            proxy,
            tls_ca: None,
            produce: Vec::new(),
            consume: Vec::new(),
            pipelined: Vec::new(),
            pipelined_machine_cpu: Duration::ZERO,
            pipelined_bytes: 0,
            latency: Vec::new(),
            latency_proxy_cpu: Duration::ZERO,
            latency_machine_cpu: Duration::ZERO,
            latency_requests: 0,
            cpu: Duration::ZERO,
            client_and_brokers_cpu: Duration::ZERO,
            stunnel_cpu: Duration::ZERO,
            machine_cpu: Duration::ZERO,
            bytes: 0,
            switches: 0,
            faults: 0,
        }
    }

    /// This path's topic for the bulk phases, the same in every round.
    fn topic(&self) -> String {
        format!("bench-{}", self.name)
    }

    fn proxy_usage(&self) -> Usage {
        self.proxy.as_ref().map_or(Usage::default(), |proxy| usage_of(proxy.child.id()))
    }

    /// The same path over TLS, its certificates checked against `ca`.
    fn tls(mut self, ca: &std::path::Path) -> Self {
        self.tls_ca = Some(ca.to_owned());
        self
    }

    /// How the raw phases reach broker 1: plain TCP, or TLS checked against the path's CA.
    fn link(&self) -> Link {
        let mut link = Link::plain(Duration::from_secs(10));
        if let Some(ca) = &self.tls_ca {
            let files = ClientTls {
                ca: Some(ca.clone()),
                cert: None,
                key: None,
                server_name: None,
                insecure_skip_verify: false,
            };
            link.tls = Some(std::sync::Arc::new(Connector::load(&files).unwrap()));
        }
        link
    }

    /// librdkafka's settings for this path: TLS checking the path's CA, or none.
    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        if let Some(ca) = &self.tls_ca {
            config.set("security.protocol", "SSL").set("ssl.ca.location", ca.to_str().unwrap());
        }
        config
    }

    fn proxy_switches(&self) -> u64 {
        self.proxy.as_ref().map_or(0, |proxy| switches_of(proxy.child.id()))
    }
}

/// The relays' arguments: listening port, target, and so on.
fn relay_pairs(args: &[String]) -> Vec<(u16, String)> {
    args.chunks(2).map(|pair| (pair[0].parse().unwrap(), pair[1].clone())).collect()
}

/// Makes the mock cluster advertise broker N at 127.0.0.1:`ports[N - 1]` in its Metadata.
fn advertise(owner: &Client, ports: &[u16]) {
    // SAFETY: `owner` created the mock cluster and outlives it; the host string outlives the call
    // (librdkafka copies it).
    unsafe {
        let cluster = rdkafka::bindings::rd_kafka_handle_mock_cluster(owner.native_ptr());
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

/// The loopback ports of brokers 1, 2 and 3 on a path whose broker N listens on `base` + N.
fn ports_from(base: u16) -> [u16; 3] {
    [base + 1, base + 2, base + 3]
}

fn loopback(port: u16) -> HostPort {
    HostPort { host: "127.0.0.1".into(), port }
}

fn main() {
    let args = Args::parse();
    if let Some(pairs) = &args.relay {
        return relays::copy(relay_pairs(pairs));
    }
    if let Some(pairs) = &args.sockmap_relay {
        if let Err(e) = relays::sockmap(relay_pairs(pairs)) {
            eprintln!("the sockmap relay: {e}");
            std::process::exit(1);
        }
        return;
    }
    // The mock cluster belongs to a client created for it, through which its brokers' advertised
    // addresses can be changed (MockCluster hides its handle).
    let mut config = ClientConfig::new();
    config.set("test.mock.num.brokers", "3");
    let native = config.create_native_config().unwrap();
    let owner = Client::new(&config, native, RDKafkaType::RD_KAFKA_PRODUCER, DefaultClientContext).unwrap();
    let mock = owner.mock_cluster().expect("a mock cluster");
    if let Some(max) = args.metadata_max_version {
        mock.apiversion(rdkafka::types::RDKafkaApiKey::Metadata, Some(0), Some(max)).unwrap();
    }
    let direct_bootstrap = mock.bootstrap_servers();
    let brokers: Vec<&str> = direct_bootstrap.split(',').collect();
    let broker_ports: Vec<u16> = brokers.iter().map(|b| HostPort::parse(b).unwrap().port).collect();
    let skip = |path: Skippable| args.skip.contains(&path);
    if args.busy_poll_study {
        mock.create_topic("latency", 1, 1).unwrap();
        mock.partition_leader("latency", 0, Some(1)).unwrap();
        return busy_poll::study(
            &direct_bootstrap,
            broker_ports[0],
            &args.poll_rates,
            &args.poll_windows,
            args.poll_secs,
        );
    }
    // With --tls: the run's certificates, and stunnel terminating TLS before each broker (its
    // process lives as long as `_stunnel`; its CPU counts with the machine's).
    let tls = args.tls.then(|| {
        let pki = pki::Pki::new();
        let stunnel = Proxy::stunnel(&pki, &brokers);
        (pki, stunnel)
    });
    let stunnel_pid = tls.as_ref().map(|(_, stunnel)| stunnel.child.id());
    let stunnel_usage = || stunnel_pid.map_or(Duration::ZERO, |pid| usage_of(pid).cpu);
    let stunnel_ports = ports_from(STUNNEL_PORT_BASE);
    let stunnel_brokers: Vec<String> = stunnel_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut paths = Vec::new();
    if let Some((pki, _)) = &tls {
        paths.push(Path::new("direct-tls", &stunnel_ports, None, &stunnel_ports).tls(&pki.ca));
        // The TLS gateway learns the brokers from the Metadata its clients get, which names
        // stunnel's ports during its turns.
        advertise(&owner, &stunnel_ports);
        let proxy = Proxy::tls_gateway(&stunnel_brokers[0], pki);
        paths.push(Path::new("gateway-tls", &ports_from(TLS_PORT_BASE), Some(proxy), &stunnel_ports).tls(&pki.ca));
        advertise(&owner, &broker_ports);
    }
    paths.push(Path::new("direct", &broker_ports, None, &broker_ports));
    if !skip(Skippable::Relay) && tls.is_none() {
        let ports = ports_from(RELAY_PORT_BASE);
        let proxy = Proxy::relay("--relay", RELAY_PORT_BASE, &brokers).unwrap();
        paths.push(Path::new("relay", &ports, Some(proxy), &ports));
    }
    if !skip(Skippable::Gateway) {
        let proxy = Proxy::gateway(&direct_bootstrap);
        paths.push(Path::new("gateway", &ports_from(PORT_BASE), Some(proxy), &broker_ports));
    }
    // BPF needs CAP_BPF and CAP_NET_ADMIN; without them the run goes on without this floor.
    if !skip(Skippable::Sockmap) && tls.is_none() {
        match Proxy::relay("--sockmap-relay", SOCKMAP_PORT_BASE, &brokers) {
            Ok(proxy) => {
                let ports = ports_from(SOCKMAP_PORT_BASE);
                paths.push(Path::new("sockmap", &ports, Some(proxy), &ports));
            }
            Err(e) => println!("no in-kernel relay in this run: {e}"),
        }
    }
    if let Some(command) = &args.other_proxy {
        let ports = ports_from(OTHER_PORT_BASE);
        match &tls {
            Some((pki, _)) => {
                let stunnel_brokers: Vec<&str> = stunnel_brokers.iter().map(String::as_str).collect();
                let proxy = Proxy::other(command, &stunnel_brokers, Some(pki));
                let name = format!("{}-tls", args.other_name);
                paths.push(Path::new(&name, &ports, Some(proxy), &stunnel_ports).tls(&pki.ca));
            }
            None => {
                let proxy = Proxy::other(command, &brokers, None);
                paths.push(Path::new(&args.other_name, &ports, Some(proxy), &broker_ports));
            }
        }
    }
    // One topic per path for the bulk phases and one for the raw phases, made once: the mock
    // keeps what is produced (up to 5 MiB per partition), so a topic per round would grow this
    // process by 100 MB a path and round (8 GB in 20 rounds).
    for path in &paths {
        let topic = path.topic();
        mock.create_topic(&topic, PARTITIONS, 1).unwrap();
        for p in 0..PARTITIONS {
            mock.partition_leader(&topic, p, Some(p % 3 + 1)).unwrap();
        }
    }
    mock.create_topic("latency", 1, 1).unwrap();
    mock.partition_leader("latency", 0, Some(1)).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    println!(
        "{} rounds, {} × {MESSAGE} B messages, {} latency requests per path and round",
        args.rounds, args.messages, args.latency
    );
    for round in 0..args.rounds {
        // Every phase takes the paths in an order that rotates every round, so that none of them
        // always follows the same one.
        let order: Vec<usize> = (0..paths.len()).map(|k| (round + k) % paths.len()).collect();
        for &i in &order {
            let path = &mut paths[i];
            advertise(&owner, &path.advertised);
            let client = path.client_config();
            let topic = path.topic();
            let (proxy_before, own_before) = (path.proxy_usage(), usage_of(std::process::id()));
            let (machine_before, stunnel_before) = (machine_cpu(), stunnel_usage());
            let switches_before = path.proxy_switches();
            let produce = produce_throughput(&client, &topic, args.messages);
            let consume = consume_throughput(&client, &topic, args.messages);
            let proxy_after = path.proxy_usage();
            path.cpu += proxy_after.cpu - proxy_before.cpu;
            path.faults += proxy_after.faults - proxy_before.faults;
            path.client_and_brokers_cpu += usage_of(std::process::id()).cpu - own_before.cpu;
            path.machine_cpu += machine_cpu() - machine_before;
            path.stunnel_cpu += stunnel_usage() - stunnel_before;
            path.switches += path.proxy_switches() - switches_before;
            path.bytes += 2 * (args.messages * MESSAGE) as u64;
            println!("round {round} {:<12} produce {produce:7.1} MB/s  consume {consume:7.1} MB/s", path.name);
            path.produce.push(produce);
            path.consume.push(consume);
        }
        // Latency in a phase of its own, so that no path's requests follow a bulk phase the
        // others do not.
        let topic = "latency";
        let mut line = format!("round {round} latency p50/p99 µs:");
        for &i in &order {
            let path = &mut paths[i];
            let (proxy_before, machine_before) = (path.proxy_usage(), machine_cpu());
            let histogram = runtime.block_on(produce_latency(&path.broker_1, &path.link(), topic, args.latency));
            path.latency_proxy_cpu += path.proxy_usage().cpu - proxy_before.cpu;
            path.latency_machine_cpu += machine_cpu() - machine_before;
            path.latency_requests += (args.latency + args.latency / 10) as u64;
            line += &format!(
                "  {} {:.1}/{:.1}",
                path.name,
                histogram.value_at_quantile(0.5) as f64 / 1000.0,
                histogram.value_at_quantile(0.99) as f64 / 1000.0
            );
            path.latency.push(histogram);
        }
        println!("{line}");
        let mut line = format!("round {round} one connection, pipelined MB/s:");
        for &i in &order {
            let path = &mut paths[i];
            let machine_before = machine_cpu();
            let (bytes, rate) =
                runtime.block_on(produce_pipelined(&path.broker_1, &path.link(), topic, args.messages * MESSAGE));
            path.pipelined_machine_cpu += machine_cpu() - machine_before;
            path.pipelined_bytes += bytes;
            line += &format!("  {} {rate:.1}", path.name);
            path.pipelined.push(rate);
        }
        println!("{line}");
    }
    report(&paths);
}

/// What a process has used so far, all its threads together.
#[derive(Default)]
struct Usage {
    /// User + system CPU time.
    cpu: Duration,
    /// Minor page faults.
    faults: u64,
}

fn usage_of(pid: u32) -> Usage {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may contain spaces): minflt is the 10th, utime the 14th,
    // stime the 15th.
    let fields: Vec<u64> =
        stat.rsplit_once(')').unwrap().1.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect();
    // USER_HZ is 100 on Linux.
    Usage { cpu: Duration::from_millis((fields[10] + fields[11]) * 10), faults: fields[6] }
}

/// CPU time all cores have spent busy so far: user, system, interrupts and steal (/proc/stat).
fn machine_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let fields: Vec<u64> =
        stat.lines().next().unwrap().split_whitespace().skip(1).map(|f| f.parse().unwrap()).collect();
    // user nice system idle iowait irq softirq steal (guest time is counted in user already).
    let busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7];
    Duration::from_millis(busy * 10)
}

/// Voluntary and involuntary context switches of all of process `pid`'s threads so far.
fn switches_of(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// A proxy in its own process, in front of the mock cluster; killed when dropped.
struct Proxy {
    child: Child,
    /// The gateway's configuration file lives here until the proxy is dropped.
    config_dir: Option<tempfile::TempDir>,
}

impl Proxy {
    /// The gateway's release binary, with broker N on PORT_BASE + N.
    fn gateway(upstream: &str) -> Self {
        Self::gateway_with(upstream, &[])
    }

    /// The same, with more arguments (`--set KEY=VALUE`).
    fn gateway_with(upstream: &str, extra: &[&str]) -> Self {
        Self::gateway_at(upstream, PORT_BASE, ADMIN_PORT, "", "", extra)
    }

    /// The gateway with TLS on both sides, broker N on TLS_PORT_BASE + N: its clients' TLS ends
    /// at it, and it reaches the brokers through stunnel (`upstream`), checking stunnel's
    /// certificate against the run's CA.
    fn tls_gateway(upstream: &str, pki: &pki::Pki) -> Self {
        let upstream_tls = format!("[upstream.tls]\nca = \"{}\"\n", pki.ca.display());
        let listener_tls =
            format!("[listeners.bench.tls]\ncert = \"{}\"\nkey = \"{}\"\n", pki.cert.display(), pki.key.display());
        Self::gateway_at(upstream, TLS_PORT_BASE, ADMIN_PORT + 1, &upstream_tls, &listener_tls, &[])
    }

    /// The gateway with broker N on `port_base` + N, `upstream_extra` and `listener_extra` (TOML
    /// tables) after `[upstream]` and `[listeners.bench]`.
    fn gateway_at(
        upstream: &str,
        port_base: u16,
        admin_port: u16,
        upstream_extra: &str,
        listener_extra: &str,
        extra: &[&str],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("gateway.toml");
        // The in-process client resolves no names: the gateway advertises its own address. The
        // gateway learns the brokers from the Metadata its clients get, so a refresh of its own
        // while the mock advertises a relay's ports (another path's turn) is left out.
        std::fs::write(
            &config,
            format!(
                "[upstream]\nbootstrap_servers = \"{upstream}\"\nmetadata_refresh_secs = 3600\n{upstream_extra}\
                 [listeners.bench]\nbind = \"127.0.0.1\"\nbootstrap_port = {port_base}\nbroker_port_base = {port_base}\n\
                 advertised = \"127.0.0.1:{{port}}\"\n{listener_extra}[admin]\nbind = \"127.0.0.1:{admin_port}\"\n"
            ),
        )
        .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_kafka-gateway"));
        command.args(["run", "--config"]).arg(&config).args(extra).env("RUST_LOG", "warn");
        let mut proxy = Self::spawn("the gateway", command, &ports_from(port_base));
        proxy.config_dir = Some(dir);
        proxy
    }

    /// stunnel (Debian's stunnel4, OpenSSL) presenting the run's certificate on STUNNEL_PORT_BASE + N
    /// and forwarding in plaintext to broker N: the cluster's TLS listeners.
    fn stunnel(pki: &pki::Pki, brokers: &[&str]) -> Self {
        let mut conf = String::from("foreground = yes\npid =\ndebug = 3\n");
        for (n, (port, broker)) in ports_from(STUNNEL_PORT_BASE).iter().zip(brokers).enumerate() {
            conf += &format!(
                "[broker{}]\naccept = 127.0.0.1:{port}\nconnect = {broker}\ncert = {}\nkey = {}\n",
                n + 1,
                pki.cert.display(),
                pki.key.display()
            );
        }
        let path = pki.dir.path().join("stunnel.conf");
        std::fs::write(&path, conf).unwrap();
        let mut command = Command::new("stunnel4");
        command.arg(&path).stderr(Stdio::null());
        Self::spawn("stunnel4 (apt-get install stunnel4)", command, &ports_from(STUNNEL_PORT_BASE))
    }

    /// This bench binary as one of the relays (`flag`), broker N on `port_base` + N.
    fn relay(flag: &str, port_base: u16, brokers: &[&str]) -> Result<Self, String> {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.arg(flag);
        let ports = ports_from(port_base);
        for (port, broker) in ports.iter().zip(brokers) {
            command.args([&port.to_string(), *broker]);
        }
        Self::try_spawn(&format!("the relay {flag}"), command, &ports)
    }

    /// The `--other-proxy` command, its placeholders filled in, run by `sh` with `exec` so that the
    /// measured process is the proxy itself.
    /// With `pki` (a `--tls` run), {tls_cert}, {tls_key} and {tls_ca} are its files.
    fn other(template: &str, brokers: &[&str], pki: Option<&pki::Pki>) -> Self {
        let mut script = template.to_owned();
        if let Some(pki) = pki {
            script = script
                .replace("{tls_cert}", pki.cert.to_str().unwrap())
                .replace("{tls_key}", pki.key.to_str().unwrap())
                .replace("{tls_ca}", pki.ca.to_str().unwrap());
        }
        let ports = ports_from(OTHER_PORT_BASE);
        for (n, (port, broker)) in ports.iter().zip(brokers).enumerate() {
            script = script.replace(&format!("{{broker{}}}", n + 1), broker);
            script = script.replace(&format!("{{port{}}}", n + 1), &port.to_string());
        }
        let mut command = Command::new("sh");
        command.arg("-c").arg(format!("exec {script}"));
        Self::spawn("the other proxy", command, &ports)
    }

    /// Starts `command` and waits until every one of `ports` takes connections.
    fn spawn(what: &str, command: Command, ports: &[u16]) -> Self {
        Self::try_spawn(what, command, ports).unwrap_or_else(|e| panic!("{e}"))
    }

    /// As `spawn`, but a proxy that exits before it listens is an error, not a panic.
    fn try_spawn(what: &str, mut command: Command, ports: &[u16]) -> Result<Self, String> {
        for &port in ports {
            assert!(
                std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
                "port {port} is taken before {what} starts: is another run still going?"
            );
        }
        let child = command.stdout(Stdio::null()).spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
        let mut proxy = Self { child, config_dir: None };
        let deadline = Instant::now() + Duration::from_secs(10);
        for &port in ports {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Some(status) = proxy.child.try_wait().unwrap() {
                    return Err(format!("{what} exited ({status})"));
                }
                assert!(Instant::now() < deadline, "{what} did not open port {port}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(proxy)
    }

    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Produces `n` 1 KB messages with acks=1; MB/s from the first send to the last delivery.
fn produce_throughput(client: &ClientConfig, topic: &str, n: usize) -> f64 {
    let producer: ThreadedProducer<Deliveries> = client
        .clone()
        .set("acks", "1")
        .set("enable.idempotence", "false")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create_with_context(Deliveries::default())
        .unwrap();
    producer.client().fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let payload = vec![b'x'; MESSAGE];
    let start = Instant::now();
    for i in 0..n {
        let key = (i % 1000).to_string();
        let mut record = BaseRecord::to(topic).key(&key).payload(&payload[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    let deliveries = producer.context();
    let failed = deliveries.failed.load(Ordering::Relaxed);
    assert_eq!(failed, 0, "{failed} of {n} messages were not delivered");
    // Not `start.elapsed()`: `flush` waits for what is left in steps of up to 100 ms (rdkafka's
    // BaseProducer::flush polls with that timeout while its own polling thread takes the delivery
    // reports), which rounded every phase of about 300 ms up to the next 100 ms.
    let last = deliveries.last.lock().unwrap().expect("a delivery report");
    mb_per_s(n, last - start)
}

/// The producer's delivery reports: when the last one arrived, and how many failed.
#[derive(Default)]
struct Deliveries {
    last: std::sync::Mutex<Option<Instant>>,
    failed: AtomicUsize,
}

impl rdkafka::ClientContext for Deliveries {}

impl rdkafka::producer::ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        *self.last.lock().unwrap() = Some(Instant::now());
    }
}

/// Consumes `n` messages from the start of every partition; MB/s from the first fetch to the last.
///
/// The start offsets are looked up before the clock starts (which also connects the consumer to
/// every broker): assigned `Offset::Beginning`, the first message came 500 ms after the start on
/// every path (librdkafka retries an offset query it cannot finish yet after 500 ms), so each
/// phase began with the same half second of waiting, and 100 MB that took 100 ms to move were
/// timed as 600.
fn consume_throughput(client: &ClientConfig, topic: &str, n: usize) -> f64 {
    let consumer: BaseConsumer =
        client.clone().set("group.id", format!("bench-{topic}")).set("enable.auto.commit", "false").create().unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        let (low, _) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap();
        assignment.add_partition_offset(topic, p, Offset::Offset(low)).unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let start = Instant::now();
    let mut got = 0;
    while got < n {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(_)) => got += 1,
            Some(Err(e)) => panic!("consume: {e}"),
            None => panic!("consume stalled at {got} of {n}"),
        }
    }
    mb_per_s(n, start.elapsed())
}

fn mb_per_s(messages: usize, elapsed: Duration) -> f64 {
    (messages * MESSAGE) as f64 / 1e6 / elapsed.as_secs_f64()
}

/// An acks=1 Produce request of one batch of `records` to partition 0 of `topic` (led by broker 1).
fn produce_request(topic: &str, records: &[Record]) -> ProduceRequest {
    let mut batch = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut batch,
        records,
        &RecordEncodeOptions { version: 2, compression: Compression::None },
    )
    .unwrap();
    ProduceRequest::default().with_acks(1).with_timeout_ms(5000).with_topic_data(vec![
        produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default().with_index(0).with_records(Some(batch.freeze())),
            ]),
    ])
}

/// How long the phases on one connection wait after connecting before the first byte: the sockmap
/// relay joins the connection's sockets after accepting it, and bytes written on while it does so
/// would race the kernel's forwarding. Every path waits the same, outside the timed part.
const JOIN_PAUSE: Duration = Duration::from_millis(20);

/// A record of a batch, without key or headers.
fn record(offset: i64, value: Bytes) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence: -1,
        timestamp: 0,
        key: None,
        value: Some(value),
        headers: Default::default(),
    }
}

/// Produce throughput over one connection to broker 1: acks=1 Produce v9 requests of 256 × 1 KiB
/// records, written back to back while the responses are read, so that only the path limits the
/// rate. Unlike the librdkafka phases, the relays can carry this too: they mark the throughput
/// floor of a proxy, as the latency phase marks the latency floor.
async fn produce_pipelined(broker_1: &HostPort, link: &Link, topic: &str, bytes: usize) -> (u64, f64) {
    let value = Bytes::from(vec![b'b'; MESSAGE]);
    let batch: Vec<Record> = (0..256).map(|i| record(i, value.clone())).collect();
    let request = produce_request(topic, &batch);
    // Every request may carry the same correlation id: responses come back in order.
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(9)
        .with_correlation_id(1)
        .encode(&mut frame, ApiKey::Produce.request_header_version(9))
        .unwrap();
    request.encode(&mut frame, 9).unwrap();
    let size = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    let n = bytes.div_ceil(frame.len());

    let stream = link.connect(broker_1).await.unwrap();
    tokio::time::sleep(JOIN_PAUSE).await;
    stream.tcp().set_nodelay(true).unwrap();
    match stream {
        // TCP's halves are independent; a TLS stream's two directions share its state.
        Stream::Tcp(tcp) => {
            let (rd, wr) = tcp.into_split();
            pipeline(rd, wr, &frame, n).await
        }
        tls => {
            let (rd, wr) = tokio::io::split(tls);
            pipeline(rd, wr, &frame, n).await
        }
    }
}

/// Writes `frame` `n` times while reading the `n` responses; the bytes moved and MB/s.
async fn pipeline(
    mut rd: impl tokio::io::AsyncRead + Unpin,
    mut wr: impl tokio::io::AsyncWrite + Unpin,
    frame: &[u8],
    n: usize,
) -> (u64, f64) {
    let start = Instant::now();
    let writer = async {
        for _ in 0..n {
            wr.write_all(frame).await.unwrap();
        }
        wr.flush().await.unwrap();
    };
    let reader = async {
        let mut response = Vec::new();
        for _ in 0..n {
            let size = rd.read_i32().await.unwrap();
            response.resize(size as usize, 0);
            rd.read_exact(&mut response).await.unwrap();
        }
    };
    tokio::join!(writer, reader);
    let moved = n * frame.len();
    (moved as u64, moved as f64 / 1e6 / start.elapsed().as_secs_f64())
}

/// Sends `n` small acks=1 Produce requests one at a time (v9: a frame the gateway streams) and
/// records each round trip.
async fn produce_latency(broker_1: &HostPort, link: &Link, topic: &str, n: usize) -> Histogram<u64> {
    let record = record(0, Bytes::from_static(&[b'l'; 100]));
    let request = produce_request(topic, &[record]);
    let mut conn = Connection::open(broker_1, link).await.unwrap();
    tokio::time::sleep(JOIN_PAUSE).await;
    let mut histogram = Histogram::<u64>::new(3).unwrap();
    for i in 0..n + n / 10 {
        let start = Instant::now();
        conn.call_raw(ApiKey::Produce, 9, &request).await.unwrap();
        if i >= n / 10 {
            // The first tenth warms up connections and caches.
            histogram.record(start.elapsed().as_nanos() as u64).unwrap();
        }
    }
    histogram
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn quantile(samples: &[Histogram<u64>], q: f64) -> f64 {
    median(&samples.iter().map(|h| h.value_at_quantile(q) as f64 / 1000.0).collect::<Vec<_>>())
}

/// The medians of every path side by side, each beside its ratio to (or difference from) direct:
/// direct TLS for a TLS path, plaintext direct for a plaintext one.
fn report(paths: &[Path]) {
    const WIDTH: usize = 20;
    let direct = &paths[0];
    let direct_of = |path: &Path| {
        paths.iter().find(|d| d.proxy.is_none() && d.tls_ca.is_some() == path.tls_ca.is_some()).unwrap_or(direct)
    };
    let mut out = format!("\nmedians over {} rounds", direct.produce.len());
    out = format!("{out:<34}");
    for path in paths {
        out += &format!("{:>WIDTH$}", path.name);
    }
    // A row of one cell per path; `cell` gets the path and direct's value and formats the cell.
    let mut row = |name: &str, cell: &dyn Fn(&Path) -> Option<String>| {
        out += &format!("\n{name:<34}");
        for path in paths {
            out += &format!("{:>WIDTH$}", cell(path).unwrap_or_else(|| "-".into()));
        }
    };
    let ratio = |value: fn(&Path) -> &[f64]| {
        move |path: &Path| {
            let (v, d) = (value(path), value(direct_of(path)));
            (!v.is_empty()).then(|| format!("{:.1} ({:.3})", median(v), median(v) / median(d)))
        }
    };
    row("produce throughput (MB/s)", &ratio(|p| &p.produce));
    row("consume throughput (MB/s)", &ratio(|p| &p.consume));
    row("one connection, pipelined (MB/s)", &ratio(|p| &p.pipelined));
    row("  machine CPU s/GB", &|path| {
        let gb = path.pipelined_bytes as f64 / 1e9;
        (gb > 0.0).then(|| format!("{:.2}", path.pipelined_machine_cpu.as_secs_f64() / gb))
    });
    for (name, q) in [("produce latency p50 (µs, added)", 0.5), ("  p99", 0.99), ("  p999", 0.999)] {
        row(name, &|path| {
            let (v, d) = (quantile(&path.latency, q), quantile(&direct_of(path).latency, q));
            Some(if path.proxy.is_none() { format!("{v:.1}") } else { format!("{v:.1} ({:+.1})", v - d) })
        });
    }
    let per_request = |cpu: Duration, path: &Path| {
        (path.latency_requests > 0).then(|| format!("{:.1}", cpu.as_secs_f64() * 1e6 / path.latency_requests as f64))
    };
    row("  proxy CPU µs per request", &|path| {
        path.proxy.as_ref().and_then(|_| per_request(path.latency_proxy_cpu, path))
    });
    row("  machine CPU µs per request", &|path| per_request(path.latency_machine_cpu, path));
    // On two shared cores every CPU second a proxy spends is taken from the client and brokers:
    // their CPU per GB beside the proxy's shows where the throughput goes.
    let per_gb = |cpu: Duration, path: &Path| format!("{:.2}", cpu.as_secs_f64() / (path.bytes as f64 / 1e9));
    let per_mb = |count: u64, path: &Path| format!("{:.1}", count as f64 / (path.bytes as f64 / 1e6));
    let measured_proxy = |path: &Path| path.proxy.is_some() && path.bytes > 0;
    row("proxy CPU s/GB in bulk phases", &|path| measured_proxy(path).then(|| per_gb(path.cpu, path)));
    row("proxy context switches per MB", &|path| measured_proxy(path).then(|| per_mb(path.switches, path)));
    row("proxy minor page faults per MB", &|path| measured_proxy(path).then(|| per_mb(path.faults, path)));
    row("client+brokers CPU s/GB, same phases", &|path| {
        (path.bytes > 0).then(|| per_gb(path.client_and_brokers_cpu, path))
    });
    row("stunnel CPU s/GB, same phases", &|path| {
        (path.tls_ca.is_some() && path.bytes > 0).then(|| per_gb(path.stunnel_cpu, path))
    });
    // Everything, kernel workers included: where an in-kernel relay's work is counted.
    row("machine CPU s/GB, same phases", &|path| (path.bytes > 0).then(|| per_gb(path.machine_cpu, path)));
    row("proxy peak RSS (MiB)", &|path| {
        path.proxy.as_ref().map(|proxy| format!("{:.1}", proxy.peak_rss_kib() as f64 / 1024.0))
    });
    println!("{out}");
    let _ = std::io::stdout().flush();
}
