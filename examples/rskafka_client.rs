//! The client matrix's pure-Rust client: influxdata's rskafka, with the commands and output of
//! tests/clients/confluent_kafka_client.py where rskafka can do them. rskafka has neither consumer
//! groups nor a broker list: it produces with acks=all (always) through one client per partition,
//! each following its partition's leader, and reads back every partition from offset 0.
//!
//! `rskafka_client produce|consume --bootstrap B --topic T --count N [--pause-at K]`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Parser;
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::record::Record;

#[derive(Parser)]
struct Args {
    command: String,
    #[arg(long)]
    bootstrap: String,
    #[arg(long, default_value = "matrix")]
    topic: String,
    #[arg(long, default_value_t = 0)]
    count: usize,
    #[arg(long, default_value_t = usize::MAX)]
    pause_at: usize,
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Accepted for the matrix's common command line; rskafka has no consumer groups.
    #[arg(long)]
    group: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let client = ClientBuilder::new(args.bootstrap.split(',').map(str::to_owned).collect()).build().await?;
    let topic = client.list_topics().await?.into_iter().find(|t| t.name == args.topic).ok_or("no such topic")?;
    let mut partitions = Vec::new();
    for p in &topic.partitions {
        partitions.push(client.partition_client(&args.topic, *p, UnknownTopicHandling::Retry).await?);
    }
    match args.command.as_str() {
        "produce" => produce(&args, &partitions).await,
        "consume" => consume(&args, &partitions).await,
        other => Err(format!("unknown command {other}").into()),
    }
}

async fn produce(args: &Args, partitions: &[PartitionClient]) -> Result<(), Box<dyn std::error::Error>> {
    let mut errors = 0;
    for i in 0..args.count {
        if i == args.pause_at {
            println!("paused at {i}");
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line)? == 0 {
                return Err("stdin closed while paused".into());
            }
        }
        let record = Record {
            key: None,
            value: Some(format!("message-{i}").into_bytes()),
            headers: BTreeMap::new(),
            timestamp: now(),
        };
        // One record per request, awaited: each is acknowledged by all replicas or counted.
        if partitions[i % partitions.len()].produce(vec![record], Compression::NoCompression).await.is_err() {
            errors += 1;
        }
    }
    println!("produced {} errors {errors}", args.count - errors);
    Ok(())
}

async fn consume(args: &Args, partitions: &[PartitionClient]) -> Result<(), Box<dyn std::error::Error>> {
    let mut seen: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    let mut total = 0;
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut offsets = vec![0i64; partitions.len()];
    while total < args.count && Instant::now() < deadline {
        for (p, offset) in partitions.iter().zip(&mut offsets) {
            let (records, _high_watermark) = p.fetch_records(*offset, 1..1_000_000, 100).await?;
            for r in records {
                *offset = r.offset + 1;
                total += 1;
                *seen.entry(r.record.value.unwrap_or_default()).or_default() += 1;
            }
        }
    }
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    println!("consumed {total} distinct {} duplicates {duplicates}", seen.len());
    Ok(())
}

/// The time now (rskafka's chrono is built without its clock).
fn now() -> rskafka::chrono::DateTime<rskafka::chrono::Utc> {
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    rskafka::chrono::DateTime::from_timestamp_millis(millis as i64).unwrap_or_default()
}
