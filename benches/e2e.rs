//! End to end: a real client (librdkafka through the `rdkafka` crate, and a raw client for request
//! latency) against a real 3-broker cluster (librdkafka's mock cluster), through (a) a direct
//! connection and (b) the gateway (the release binary, its own process), alternating in one run.
//!
//! `scripts/bench` (or `cargo bench --bench e2e -- [--rounds N] [--messages N] [--latency N]`)
//!
//! Reports medians over the rounds: produce and consume throughput (MB/s, ratio to direct), the
//! latency of small acks=1 Produce requests sent one at a time (p50/p99/p999, and the difference to
//! direct, beside what a plain TCP relay adds: the floor of any user-space proxy on the machine),
//! the throughput of pipelined Produce requests on one connection (direct, relay, gateway), the
//! gateway's CPU seconds per GB moved in the bulk phases, and its peak RSS.

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use clap::Parser;
use hdrhistogram::Histogram;
use kafka_gateway::config::HostPort;
use kafka_gateway::upstream::Connection;
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader, TopicName, produce_request};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser)]
struct Args {
    /// Rounds of (direct, gateway); the order alternates every round.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// 1 KB messages produced, then consumed, per path and round.
    #[arg(long, default_value_t = 100_000)]
    messages: usize,
    /// Produce requests sent one at a time per path and round, for latency.
    #[arg(long, default_value_t = 20_000)]
    latency: usize,
    /// Accepted and ignored: `cargo bench` passes it to every bench target.
    #[arg(long, hide = true)]
    bench: bool,
    /// Internal: run as the plain TCP relay (LISTEN_PORT TARGET) that marks the floor of any proxy.
    #[arg(long, hide = true, num_args = 2, value_names = ["PORT", "TARGET"])]
    relay: Option<Vec<String>>,
}

/// The plain relay's port: a proxy that only copies bytes (tokio's copy_bidirectional), in its
/// own process, to broker 1. What it adds to a request's latency, any user-space proxy pays here.
const RELAY_PORT: u16 = 39_499;

/// Copies bytes between each accepted connection and `target`, nothing else.
fn relay(port: u16, target: String) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        loop {
            let (mut client, _) = listener.accept().await.unwrap();
            let target = target.clone();
            tokio::spawn(async move {
                let mut upstream = tokio::net::TcpStream::connect(target).await.unwrap();
                client.set_nodelay(true).unwrap();
                upstream.set_nodelay(true).unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
}

/// The mock cluster keeps at most 5 MiB per partition (dropping the oldest), so the messages of a
/// round are spread over enough partitions to be consumed whole.
const PARTITIONS: i32 = 30;
const MESSAGE: usize = 1024;
const PORT_BASE: u16 = 39_500;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Path {
    Direct,
    Gateway,
}

#[derive(Default)]
struct Samples {
    produce: Vec<f64>,
    consume: Vec<f64>,
    latency: Vec<Histogram<u64>>,
}

fn main() {
    let args = Args::parse();
    if let Some(relay_args) = args.relay {
        return relay(relay_args[0].parse().unwrap(), relay_args[1].clone());
    }
    let mock = MockCluster::new(3).expect("a mock cluster");
    let direct_bootstrap = mock.bootstrap_servers();
    let gateway = Gateway::start(&direct_bootstrap);
    let paths = [(Path::Direct, direct_bootstrap.clone()), (Path::Gateway, format!("127.0.0.1:{PORT_BASE}"))];
    // Broker 1, directly and through its gateway port: the target of the latency requests.
    let broker_1 = [
        (Path::Direct, HostPort::parse(direct_bootstrap.split(',').next().unwrap()).unwrap()),
        (Path::Gateway, HostPort { host: "127.0.0.1".into(), port: PORT_BASE + 1 }),
    ];
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut relay = Command::new(std::env::current_exe().unwrap())
        .args(["--relay", &RELAY_PORT.to_string(), &broker_1[0].1.to_string()])
        .spawn()
        .unwrap();
    let relay_addr = HostPort { host: "127.0.0.1".into(), port: RELAY_PORT };
    while std::net::TcpStream::connect(("127.0.0.1", RELAY_PORT)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The latency phase's three paths to broker 1: direct, through the plain relay, through the gateway.
    let latency_paths = [&broker_1[0].1, &relay_addr, &broker_1[1].1];
    let mut latency: [Vec<Histogram<u64>>; 3] = Default::default();
    let mut pipelined: [Vec<f64>; 3] = Default::default();

    let mut direct = Samples::default();
    let mut through = Samples::default();
    let (mut gateway_cpu, mut gateway_bytes) = (Duration::ZERO, 0u64);
    println!(
        "{} rounds, {} × {MESSAGE} B messages, {} latency requests per path and round",
        args.rounds, args.messages, args.latency
    );
    for round in 0..args.rounds {
        let order: Vec<usize> = if round % 2 == 0 { vec![0, 1] } else { vec![1, 0] };
        for i in order {
            let (path, bootstrap) = &paths[i];
            let topic = format!("bench-{round}-{path:?}");
            mock.create_topic(&topic, PARTITIONS, 1).unwrap();
            for p in 0..PARTITIONS {
                mock.partition_leader(&topic, p, Some(p % 3 + 1)).unwrap();
            }
            let cpu_before = gateway.cpu();
            let produce = produce_throughput(bootstrap, &topic, args.messages);
            let consume = consume_throughput(bootstrap, &topic, args.messages);
            if *path == Path::Gateway {
                gateway_cpu += gateway.cpu() - cpu_before;
                gateway_bytes += 2 * (args.messages * MESSAGE) as u64;
            }
            println!("round {round} {:<8} produce {produce:7.1} MB/s  consume {consume:7.1} MB/s", format!("{path:?}"));
            let samples = if *path == Path::Direct { &mut direct } else { &mut through };
            samples.produce.push(produce);
            samples.consume.push(consume);
        }
        // Latency in a phase of its own, each path in turn (the order rotates every round), so
        // that none of them follows a bulk phase the others do not.
        let topic = format!("latency-{round}");
        mock.create_topic(&topic, 1, 1).unwrap();
        mock.partition_leader(&topic, 0, Some(1)).unwrap();
        let mut line = format!("round {round} latency p50/p99 µs:");
        for k in 0..3 {
            let i = (round + k) % 3;
            let histogram = runtime.block_on(produce_latency(latency_paths[i], &topic, args.latency));
            line += &format!(
                "  {} {:.1}/{:.1}",
                ["direct", "relay", "gateway"][i],
                histogram.value_at_quantile(0.5) as f64 / 1000.0,
                histogram.value_at_quantile(0.99) as f64 / 1000.0
            );
            latency[i].push(histogram);
        }
        println!("{line}");
        let mut line = format!("round {round} one connection, pipelined MB/s:");
        for k in 0..3 {
            let i = (round + k) % 3;
            let rate = runtime.block_on(produce_pipelined(latency_paths[i], &topic, args.messages * MESSAGE));
            line += &format!("  {} {rate:.1}", ["direct", "relay", "gateway"][i]);
            pipelined[i].push(rate);
        }
        println!("{line}");
    }
    let [direct_latency, relay_latency, gateway_latency] = latency;
    direct.latency = direct_latency;
    through.latency = gateway_latency;
    let _ = relay.kill();
    let _ = relay.wait();
    report(&direct, &through, &relay_latency, &pipelined, gateway_cpu, gateway_bytes, gateway.peak_rss_kib());
}

/// The gateway binary in its own process, in front of the mock cluster.
struct Gateway {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Gateway {
    fn start(upstream: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("gateway.toml");
        // The in-process client resolves no names: the gateway advertises its own address.
        std::fs::write(
            &config,
            format!(
                "[upstream]\nbootstrap_servers = \"{upstream}\"\n[listeners.bench]\nbind = \"127.0.0.1\"\n\
                 bootstrap_port = {PORT_BASE}\nbroker_port_base = {PORT_BASE}\nadvertised = \"127.0.0.1:{{port}}\"\n"
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kafka-gateway"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("the gateway binary");
        let mut gateway = Self { child, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", PORT_BASE + 3)).is_err() {
            assert!(Instant::now() < deadline, "the gateway did not open broker 3's port");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The ports could belong to a gateway left over from another run: this one must be alive.
        std::thread::sleep(Duration::from_millis(200));
        assert!(gateway.child.try_wait().unwrap().is_none(), "the gateway exited: are ports {PORT_BASE}.. taken?");
        gateway
    }

    /// User + system CPU time of the gateway process so far.
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the command name (which may contain spaces) : utime is the 14th, stime the 15th.
        let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
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

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Produces `n` 1 KB messages with acks=1; MB/s from the first send to the last delivery.
fn produce_throughput(bootstrap: &str, topic: &str, n: usize) -> f64 {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "1")
        .set("enable.idempotence", "false")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
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
    mb_per_s(n, start.elapsed())
}

/// Consumes `n` messages from the start of every partition; MB/s from the first fetch to the last.
fn consume_throughput(bootstrap: &str, topic: &str, n: usize) -> f64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bench-{topic}"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment.add_partition_offset(topic, p, Offset::Beginning).unwrap();
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
/// rate. Unlike the librdkafka phases, a plain relay can carry this too: it marks the throughput
/// floor of any user-space proxy, as the latency phase marks the latency floor.
async fn produce_pipelined(broker_1: &HostPort, topic: &str, bytes: usize) -> f64 {
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

    let stream = tokio::net::TcpStream::connect((broker_1.host.as_str(), broker_1.port)).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let start = Instant::now();
    let writer = async {
        for _ in 0..n {
            wr.write_all(&frame).await.unwrap();
        }
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
    (n * frame.len()) as f64 / 1e6 / start.elapsed().as_secs_f64()
}

/// Sends `n` small acks=1 Produce requests one at a time (v9: a frame the gateway streams) and
/// records each round trip.
async fn produce_latency(broker_1: &HostPort, topic: &str, n: usize) -> Histogram<u64> {
    let record = record(0, Bytes::from_static(&[b'l'; 100]));
    let request = produce_request(topic, &[record]);
    let mut conn = Connection::open(broker_1, Duration::from_secs(10)).await.unwrap();
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

fn report(
    direct: &Samples,
    through: &Samples,
    relayed: &[Histogram<u64>],
    pipelined: &[Vec<f64>; 3],
    cpu: Duration,
    bytes: u64,
    rss_kib: u64,
) {
    let mut out = String::new();
    let _ = (|| -> std::fmt::Result {
        use std::fmt::Write;
        writeln!(
            out,
            "\nmedians over {} rounds               direct    gateway    gateway/direct",
            direct.produce.len()
        )?;
        for (name, d, g) in [
            ("produce throughput (MB/s)", median(&direct.produce), median(&through.produce)),
            ("consume throughput (MB/s)", median(&direct.consume), median(&through.consume)),
        ] {
            writeln!(out, "{name:<34} {d:8.1}   {g:8.1}    {:.3}", g / d)?;
        }
        let [d, r, g] = pipelined.each_ref().map(|v| median(v));
        writeln!(
            out,
            "{:<34} {d:8.1}   {g:8.1}    {:.3}   plain relay {r:.1} = {:.3}",
            "one connection, pipelined (MB/s)",
            g / d,
            r / d
        )?;
        writeln!(
            out,
            "{:<34} {:>8}   {:>8}    {:>6}   {:>12}",
            "produce request latency (µs)", "direct", "gateway", "added", "plain relay added"
        )?;
        for (name, q) in [("  p50", 0.5), ("  p99", 0.99), ("  p999", 0.999)] {
            let (d, g, r) = (quantile(&direct.latency, q), quantile(&through.latency, q), quantile(relayed, q));
            writeln!(out, "{name:<34} {d:8.1}   {g:8.1}    {:+6.1}   {:+12.1}", g - d, r - d)?;
        }
        let gb = bytes as f64 / 1e9;
        writeln!(
            out,
            "gateway CPU in the produce and consume phases: {:.2} s for {gb:.2} GB moved = {:.2} CPU s/GB; peak RSS {:.1} MiB",
            cpu.as_secs_f64(),
            cpu.as_secs_f64() / gb,
            rss_kib as f64 / 1024.0
        )
    })();
    print!("{out}");
    let _ = std::io::stdout().flush();
}
