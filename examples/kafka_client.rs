//! A counting Kafka client on librdkafka (the `rdkafka` crate), for trying the gateway and for the
//! integration tests, which run it inside a network namespace that reaches only the gateway.
//!
//! ```text
//! cargo run --example kafka_client -- metadata --bootstrap 127.0.0.1:9092
//! cargo run --example kafka_client -- produce  --bootstrap 127.0.0.1:9092 --topic t --count 10000
//! cargo run --example kafka_client -- consume  --bootstrap 127.0.0.1:9092 --topic t --group g --count 10000
//! cargo run --example kafka_client -- metadata --bootstrap b1.example:9093 -X security.protocol=SSL -X ssl.ca.location=ca.pem
//! ```
//!
//! Every command prints one result line that a script can parse, and exits non-zero on failure.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use rdkafka::Message;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// A librdkafka property for every client this run makes, as kcat takes it (repeatable):
    /// -X security.protocol=SASL_SSL -X sasl.mechanism=SCRAM-SHA-512 …
    #[arg(short = 'X', global = true, value_name = "KEY=VALUE")]
    properties: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the brokers as the cluster (through the gateway) names them: `broker ID HOST:PORT`.
    Metadata {
        #[arg(long)]
        bootstrap: String,
        #[arg(long, default_value_t = 15)]
        timeout_secs: u64,
    },
    /// Produce `count` messages `msg-0..` with idempotence and acks=all; print `produced N errors E`.
    Produce {
        #[arg(long)]
        bootstrap: String,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// Payload bytes per message beyond its id.
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// After every N delivered messages, print `paused at K` and wait for a line on stdin, so
        /// a test can change the cluster while this client keeps its connections and metadata.
        #[arg(long)]
        pause_every: Option<usize>,
        /// librdkafka's message.timeout.ms: how long a message may wait for delivery.
        #[arg(long, default_value_t = 60_000)]
        message_timeout_ms: u64,
        /// `all` (idempotent, the default), `1`, or `0` (no answers, no idempotence).
        #[arg(long, default_value = "all")]
        acks: String,
        /// At most this many messages a second (default: as fast as it can).
        #[arg(long)]
        rate: Option<u64>,
    },
    /// Consume in a group until `count` distinct messages arrived or `idle_secs` passed without
    /// any; print `consumed N distinct D duplicates X`.
    Consume {
        #[arg(long)]
        bootstrap: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        group: String,
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        #[arg(long, default_value_t = 30)]
        idle_secs: u64,
        /// Also check that every partition's messages arrive in the order they were produced, and
        /// report the longest wait between two messages: the line gains `out-of-order K max-gap-ms G`.
        #[arg(long)]
        order: bool,
    },
}

/// The `-X` properties of this run, set on every client it makes.
static PROPERTIES: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();

/// librdkafka's `debug` property from `KAFKA_CLIENT_DEBUG` (e.g. `broker,fetch,cgrp`), to diagnose.
fn config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (key, value) in PROPERTIES.get().into_iter().flatten() {
        config.set(key, value);
    }
    if let Ok(debug) = std::env::var("KAFKA_CLIENT_DEBUG") {
        // rdkafka derives librdkafka's log level from the `log` crate's, which is off here.
        config.set("debug", debug).set_log_level(RDKafkaLogLevel::Debug);
    }
    config
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut properties = Vec::new();
    for property in &cli.properties {
        match property.split_once('=') {
            Some((key, value)) => properties.push((key.to_owned(), value.to_owned())),
            None => return fail(&format!("-X {property}: not KEY=VALUE")),
        }
    }
    PROPERTIES.set(properties).expect("set once");
    match cli.command {
        Command::Metadata { bootstrap, timeout_secs } => metadata(&bootstrap, Duration::from_secs(timeout_secs)),
        Command::Produce { bootstrap, topic, count, size, pause_every, message_timeout_ms, acks, rate } => {
            let producer = config(bootstrap.as_str())
                .set("enable.idempotence", (acks == "all").to_string())
                .set("acks", &acks)
                .set("linger.ms", "5")
                .set("message.timeout.ms", message_timeout_ms.to_string())
                .create();
            match producer {
                Ok(p) => produce(&p, &topic, count, size, pause_every.unwrap_or(count), rate).await,
                Err(e) => fail(&format!("producer: {e}")),
            }
        }
        Command::Consume { bootstrap, topic, group, count, idle_secs, order } => {
            consume(&bootstrap, &topic, &group, count, Duration::from_secs(idle_secs), order).await
        }
    }
}

fn metadata(bootstrap: &str, timeout: Duration) -> ExitCode {
    let producer: FutureProducer<Stderr> = match config(bootstrap).create_with_context(Stderr) {
        Ok(p) => p,
        Err(e) => return fail(&format!("client: {e}")),
    };
    match producer.client().fetch_metadata(None, timeout) {
        Ok(md) => {
            let mut brokers: Vec<_> =
                md.brokers().iter().map(|b| (b.id(), format!("{}:{}", b.host(), b.port()))).collect();
            brokers.sort();
            for (id, addr) in brokers {
                println!("broker {id} {addr}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&format!("metadata: {e}")),
    }
}

async fn produce(
    producer: &FutureProducer,
    topic: &str,
    count: usize,
    size: usize,
    phase: usize,
    rate: Option<u64>,
) -> ExitCode {
    let padding = "x".repeat(size);
    let mut errors = 0;
    let started = std::time::Instant::now();
    let mut stdin = std::io::stdin().lines();
    for start in (0..count).step_by(phase.max(1)) {
        if start > 0 {
            println!("paused at {start}");
            if stdin.next().is_none() {
                return fail("stdin closed while paused");
            }
        }
        // send_result enqueues at once; librdkafka batches, and the deliveries are awaited after.
        let mut deliveries = Vec::with_capacity(phase);
        for i in start..count.min(start + phase) {
            if let Some(rate) = rate {
                let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
                    tokio::time::sleep(wait).await;
                }
            }
            let (key, payload) = (format!("k{i}"), format!("msg-{i}-{padding}"));
            let mut record = FutureRecord::to(topic).key(&key).payload(&payload);
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => break deliveries.push(delivery),
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // The local queue is full: let deliveries drain, then retry the same record.
                        record = back;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err((e, _)) => return fail(&format!("enqueue: {e}")),
                }
            }
        }
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    if errors == 0 {
                        eprintln!("first delivery error: {e}");
                    }
                    errors += 1;
                }
                Err(_) => errors += 1,
            }
        }
    }
    let _ = producer.flush(Duration::from_secs(10));
    println!("produced {} errors {errors}", count - errors);
    if errors == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Writes librdkafka's log lines (including `KAFKA_CLIENT_DEBUG` output) to stderr.
struct Stderr;

impl ClientContext for Stderr {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, line: &str) {
        eprintln!("{level:?} {fac} {line}");
    }
}

impl ConsumerContext for Stderr {}

async fn consume(bootstrap: &str, topic: &str, group: &str, count: usize, idle: Duration, order: bool) -> ExitCode {
    let consumer: StreamConsumer<Stderr> = match config(bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create_with_context(Stderr)
    {
        Ok(c) => c,
        Err(e) => return fail(&format!("consumer: {e}")),
    };
    if let Err(e) = consumer.subscribe(&[topic]) {
        return fail(&format!("subscribe: {e}"));
    }
    // Each id with where it was first read: read again at the same place is a redelivery (the
    // consumer's position went back), at another place a duplicate in the log (the producer sent
    // it twice).
    let mut seen = std::collections::HashMap::<usize, (i32, i64)>::new();
    let mut redelivered = 0usize;
    let mut per_partition = std::collections::BTreeMap::<i32, (usize, i64)>::new();
    let (mut received, mut duplicates) = (0usize, 0usize);
    // Per partition, the last id seen: producers number messages in the order they send them.
    let mut last_id = std::collections::BTreeMap::<i32, usize>::new();
    let (mut out_of_order, mut max_gap, mut last_at) = (0usize, Duration::ZERO, None::<std::time::Instant>);
    while seen.len() < count {
        match tokio::time::timeout(idle, consumer.recv()).await {
            Err(_) => break,
            Ok(Err(e)) => {
                eprintln!("consume error: {e}");
                continue;
            }
            Ok(Ok(message)) => {
                received += 1;
                let now = std::time::Instant::now();
                if let Some(at) = last_at {
                    max_gap = max_gap.max(now - at);
                }
                last_at = Some(now);
                let entry = per_partition.entry(message.partition()).or_default();
                *entry = (entry.0 + 1, message.offset());
                let id = message
                    .payload()
                    .and_then(|p| std::str::from_utf8(p).ok())
                    .and_then(|s| s.split('-').nth(1))
                    .and_then(|n| n.parse::<usize>().ok());
                let place = (message.partition(), message.offset());
                match id {
                    Some(id) if seen.get(&id) == Some(&place) => redelivered += 1,
                    Some(id) if seen.contains_key(&id) => duplicates += 1,
                    Some(id) => {
                        seen.insert(id, place);
                        let last = last_id.entry(message.partition()).or_insert(id);
                        if id < *last {
                            out_of_order += 1;
                        }
                        *last = id.max(*last);
                    }
                    None => eprintln!("a message without an id at offset {}", message.offset()),
                }
            }
        }
    }
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        eprintln!("commit: {e}");
    }
    if seen.len() != count {
        eprintln!("per partition (messages, last offset): {per_partition:?}");
    }
    if order {
        println!(
            "consumed {received} distinct {} duplicates {duplicates} redelivered {redelivered} out-of-order {out_of_order} max-gap-ms {}",
            seen.len(),
            max_gap.as_millis()
        );
        return if seen.len() == count { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    }
    println!("consumed {received} distinct {} duplicates {duplicates}", seen.len());
    if seen.len() == count && duplicates == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("{message}");
    println!("error {message}");
    ExitCode::FAILURE
}
