//! Micro-benchmarks of a frame's steps: peeking at a header, forwarding frames through a session,
//! parsing a connection's PROXY protocol header (once per connection),
//! rewriting Metadata (3, 100 and 1,000 brokers with 10,000 partitions), FindCoordinator, and a
//! Fetch v16 answer with records and node endpoints. A counting allocator shows what forwarding
//! allocates per frame.
//!
//! `cargo bench --bench micro`

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kafka_gateway::Config;
use kafka_gateway::fixture::Names;
use kafka_gateway::frame::{self, MIN_REQUEST};
use kafka_gateway::rewrite::{self, Response, Rewrite, encode};
use kafka_gateway::session::Limits;
use kafka_gateway::session::testing::proxy;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Counts allocations, to show that forwarding a frame allocates nothing once buffers are warm.
struct Counting;
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn config() -> Config {
    Config::from_toml(
        r#"
        [upstream]
        bootstrap_servers = ["k:9092"]
        [listeners.bench]
        broker_port_base = 20000
        advertised = "b{node_id}.{az}.unique_name.aws.plc.tidbcloud.com:{port}"
        az_by_rack = { "us-west-2a" = "usw2-az1", "us-west-2c" = "usw2-az2", "us-west-2b" = "usw2-az3" }
        "#,
    )
    .unwrap()
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn frame_of<M: Response>(m: &M, version: i16) -> Bytes {
    encode(&ResponseHeader::default().with_correlation_id(1), m, version, &[]).unwrap().freeze()
}

fn produce_request(correlation_id: i32, body: usize) -> Vec<u8> {
    let mut f = vec![0; 4];
    f.extend(0i16.to_be_bytes()); // Produce
    f.extend(9i16.to_be_bytes());
    f.extend(correlation_id.to_be_bytes());
    f.extend(7i16.to_be_bytes());
    f.extend(b"rdkafka");
    f.push(0); // header tags
    f.push(0); // null transactional id
    f.extend(1i16.to_be_bytes()); // acks=1
    f.resize(f.len() + body, b'x');
    let size = (f.len() - 4) as i32;
    f[..4].copy_from_slice(&size.to_be_bytes());
    f
}

fn metadata(brokers: i32, partitions: i32) -> MetadataResponse {
    let racks = ["us-west-2a", "us-west-2c", "us-west-2b"];
    let topics = (0..partitions / 100).map(|t| {
        metadata_response::MetadataResponseTopic::default()
            .with_name(Some(TopicName(s(&format!("topic-{t}")))))
            .with_partitions(
                (0..100)
                    .map(|p| {
                        let replicas: Vec<BrokerId> = (0..3).map(|r| BrokerId((p + r) % brokers)).collect();
                        metadata_response::MetadataResponsePartition::default()
                            .with_partition_index(p)
                            .with_leader_id(BrokerId(p % brokers))
                            .with_replica_nodes(replicas.clone())
                            .with_isr_nodes(replicas)
                    })
                    .collect(),
            )
    });
    MetadataResponse::default()
        .with_brokers(
            (0..brokers)
                .map(|n| {
                    metadata_response::MetadataResponseBroker::default()
                        .with_node_id(BrokerId(n))
                        .with_host(s(&format!("kafka-{n}.internal.example.com")))
                        .with_port(9092)
                        .with_rack(Some(s(racks[n as usize % 3])))
                })
                .collect(),
        )
        .with_cluster_id(Some(s("bench")))
        .with_topics(topics.collect())
}

fn peek(c: &mut Criterion) {
    let request = produce_request(1, 1024);
    c.bench_function("peek a Produce v9 request header", |b| {
        b.iter(|| {
            let frame::Peek::Ready(len) = frame::frame_len(&request, MIN_REQUEST, 1 << 20).unwrap() else { panic!() };
            std::hint::black_box(frame::peek_request(&request, len).unwrap())
        })
    });
}

/// Forwards `count` 1 KiB Produce requests and their responses through one session.
async fn forward(count: usize, request: &[u8], response: &[u8], names: &Arc<Names>) {
    let (mut client, proxy_client) = tokio::io::duplex(256 * 1024);
    let (mut broker, proxy_broker) = tokio::io::duplex(256 * 1024);
    let limits = Limits { request: 1 << 20, response: 1 << 20, splice_min: 0 };
    let session = proxy(proxy_client, proxy_broker, limits, Arc::clone(names) as _);
    let traffic = async {
        let mut got = vec![0; request.len()];
        let mut back = vec![0; response.len()];
        for _ in 0..count {
            client.write_all(request).await.unwrap();
            broker.read_exact(&mut got).await.unwrap();
            broker.write_all(response).await.unwrap();
            client.read_exact(&mut back).await.unwrap();
        }
    };
    tokio::select! {
        _ = session => panic!("the session ended"),
        () = traffic => {}
    }
}

fn forwarding(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let config = config();
    let names = Arc::new(Names { group: config.groups[0].clone(), racks: BTreeMap::new() });
    let request = produce_request(1, 1024);
    // A Produce v9 answer: forwarded as the same bytes.
    let mut response = 60i32.to_be_bytes().to_vec();
    response.extend(1i32.to_be_bytes());
    response.resize(64, 0);
    let mut group = c.benchmark_group("forward");
    group.throughput(Throughput::Elements(1));
    group.bench_function("a 1 KiB Produce request and its response, one at a time", |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            rt.block_on(forward(iters as usize, &request, &response, &names));
            start.elapsed()
        })
    });
    group.finish();
    // Allocations per forwarded frame pair, once the session's buffers exist.
    let count = |n| {
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        rt.block_on(forward(n, &request, &response, &names));
        ALLOCATIONS.load(Ordering::Relaxed) - before
    };
    let (few, many) = (count(100), count(10_100));
    println!(
        "allocations: {few} for 100 request/response pairs, {many} for 10,100: {:.4} per pair beyond the session's own",
        (many - few) as f64 / 10_000.0
    );
}

fn rewrites(c: &mut Criterion) {
    let config = config();
    let names = Names { group: config.groups[0].clone(), racks: BTreeMap::new() };
    let mut group = c.benchmark_group("rewrite Metadata v12, 10,000 partitions");
    for brokers in [3, 100, 1000] {
        let frame = frame_of(&metadata(brokers, 10_000), 12);
        group.throughput(Throughput::Bytes(frame.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(format!("{brokers} brokers")), &frame, |b, frame| {
            b.iter(|| rewrite::rewrite(Rewrite::Metadata, 12, frame, &names).unwrap().pieces)
        });
    }
    group.finish();

    let v3 = FindCoordinatorResponse::default()
        .with_node_id(BrokerId(2))
        .with_host(s("kafka-2.internal.example.com"))
        .with_port(9092);
    let v4 = FindCoordinatorResponse::default().with_coordinators(
        (0..10)
            .map(|i| {
                find_coordinator_response::Coordinator::default()
                    .with_key(s(&format!("group-{i}")))
                    .with_node_id(BrokerId(i % 3))
                    .with_host(s("kafka-0.internal.example.com"))
                    .with_port(9092)
            })
            .collect(),
    );
    let (f3, f4) = (frame_of(&v3, 3), frame_of(&v4, 4));
    let names = Names {
        group: config.groups[0].clone(),
        racks: [(0, "us-west-2a".into()), (1, "us-west-2c".into()), (2, "us-west-2b".into())].into(),
    };
    c.bench_function("rewrite FindCoordinator v3", |b| {
        b.iter(|| rewrite::rewrite(Rewrite::FindCoordinator, 3, &f3, &names).unwrap().pieces)
    });
    c.bench_function("rewrite FindCoordinator v4, 10 keys", |b| {
        b.iter(|| rewrite::rewrite(Rewrite::FindCoordinator, 4, &f4, &names).unwrap().pieces)
    });

    let partition = fetch_response::PartitionData::default()
        .with_partition_index(0)
        .with_records(Some(Bytes::from(vec![7u8; 1 << 20])));
    let fetch = FetchResponse::default()
        .with_responses(vec![fetch_response::FetchableTopicResponse::default().with_partitions(vec![partition])])
        .with_node_endpoints(vec![
            fetch_response::NodeEndpoint::default()
                .with_node_id(BrokerId(1))
                .with_host(s("kafka-1.internal.example.com"))
                .with_port(9092)
                .with_rack(Some(s("us-west-2c"))),
        ]);
    let frame = frame_of(&fetch, 16);
    c.bench_function("rewrite Fetch v16, 1 MiB of records and node endpoints", |b| {
        b.iter(|| rewrite::rewrite(Rewrite::Fetch, 16, &frame, &names).unwrap().pieces)
    });
}

/// The PROXY protocol header, read once per connection before anything else (never per request):
/// what it costs next to forwarding one request.
fn proxy_header(c: &mut Criterion) {
    use kafka_gateway::proxy::build::{Tlv, v2};
    let aws = v2(false, Some("10.1.2.3:40000".parse().unwrap()), &[Tlv::Aws("vpce-0a1b2c3d4e5f67890")], true);
    let v1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 9092\r\n".to_vec();
    c.bench_function("parse a PROXY v2 header with an AWS endpoint and its CRC32c", |b| {
        b.iter(|| std::hint::black_box(kafka_gateway::proxy::parse(std::hint::black_box(&aws)).unwrap()))
    });
    c.bench_function("parse a PROXY v1 header", |b| {
        b.iter(|| std::hint::black_box(kafka_gateway::proxy::parse(std::hint::black_box(&v1)).unwrap()))
    });
}

criterion_group!(benches, peek, forwarding, rewrites, proxy_header);
criterion_main!(benches);
