//! Regenerates protocol-fixtures/: responses captured from real brokers through the gateway's own
//! recorder, third-party vectors wrapped into frames, and generated cases for what no available
//! source produces. See protocol-fixtures/README.md.
//!
//! `cargo run --example make_fixtures -- --vectors ../shared/protocol-vectors/third-party.json`
//!
//! Every expected frame is what this version of the gateway makes of the input under
//! protocol-fixtures/gateway.toml; review the replay's account of each new case before committing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use clap::Parser;
use kafka_gateway::broker::HostPort;
use kafka_gateway::fixture::{self, Case, Expect, Names, Outcome, Sidecar};
use kafka_gateway::rewrite::{Response, encode};
use kafka_gateway::upstream::{Connection, Link};
use kafka_gateway::{Config, Gateway};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use rdkafka::mocking::MockCluster;

#[derive(Parser)]
struct Args {
    /// ../shared/protocol-vectors/third-party.json (other projects' test vectors).
    #[arg(long)]
    vectors: PathBuf,
    /// The tansu broker binary (scripts/test-tools installs it).
    #[arg(long, default_value = ".tools/bin/tansu")]
    tansu: PathBuf,
    #[arg(long, default_value = "protocol-fixtures")]
    out: PathBuf,
    /// Regenerate only these directories (mock, tansu, third-party, generated); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

const MOCK_SOURCE: &str =
    "librdkafka 2.12.1 mock cluster (rdkafka-sys 4.10.0), 3 brokers, racks us-west-2a/us-west-2c/us-west-2b";
const TANSU_SOURCE: &str = "tansu 0.6.0 (commit 079c4c3), single node 111, memory storage";
const TOPIC: &str = "fixtures";
const LIMIT: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let config_path = args.out.join("gateway.toml");
    let config = Config::load(Some(&config_path), &[])?;
    let wanted = |sub: &str| args.only.is_empty() || args.only.iter().any(|o| o == sub);
    for sub in ["mock", "tansu", "third-party", "generated"] {
        let dir = args.out.join(sub);
        if wanted(sub) && dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
    }
    if wanted("mock") {
        capture_mock(&config, &args.out.join("mock")).await?;
    }
    if wanted("tansu") {
        capture_tansu(&config, &args.tansu, &args.out.join("tansu")).await?;
    }
    if wanted("third-party") {
        import_vectors(&config, &args.vectors, &args.out.join("third-party"))?;
    }
    if wanted("generated") {
        generate(&config, &args.out.join("generated"))?;
    }
    println!("done; replay with: kafka-gateway replay --config {} {}", config_path.display(), args.out.display());
    Ok(())
}

/// Runs the gateway with `config` in front of `upstream`, recording into a fresh directory.
async fn gateway(config: &Config, upstream: &str, record: &Path) -> Arc<Gateway> {
    let mut config = config.clone();
    config.upstream.bootstrap_servers = upstream.split(',').map(|s| HostPort::parse(s).unwrap()).collect();
    config.record_dir = Some(record.to_path_buf());
    config.record_per_version = 1;
    Gateway::start(config).await.expect("the gateway starts on the fixture ports (are they free?)")
}

fn port(config: &Config, node: Option<i32>) -> HostPort {
    let g = &config.groups[0];
    let port = node.map_or(g.bootstrap_port.unwrap(), |n| g.broker_port(n).unwrap());
    HostPort { host: "127.0.0.1".into(), port }
}

/// Sends one request; the recorder keeps the response. Decoding errors are fine here.
async fn ask<Req: Encodable, Resp: kafka_protocol::protocol::Decodable + HeaderVersion>(
    addr: &HostPort,
    key: ApiKey,
    version: i16,
    request: &Req,
) -> Option<Resp> {
    let mut conn = Connection::open(addr, &Link::plain(LIMIT)).await.ok()?;
    conn.call::<Req, Resp>(key, version, request).await.ok()
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn records(n: usize) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(format!("value-{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression: Compression::None })
        .unwrap();
    buf.freeze()
}

fn produce_request(version: i16, topic: &str, topic_id: uuid::Uuid, partition: i32) -> ProduceRequest {
    let data = produce_request::PartitionProduceData::default().with_index(partition).with_records(Some(records(3)));
    let mut topic_data = produce_request::TopicProduceData::default().with_partition_data(vec![data]);
    if version >= 13 {
        topic_data.topic_id = topic_id;
    } else {
        topic_data.name = TopicName(s(topic));
    }
    ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![topic_data])
}

fn fetch_request(version: i16, topic: &str, topic_id: uuid::Uuid, partition: i32) -> FetchRequest {
    let p = fetch_request::FetchPartition::default()
        .with_partition(partition)
        .with_fetch_offset(0)
        .with_partition_max_bytes(1 << 20);
    let mut t = fetch_request::FetchTopic::default().with_partitions(vec![p]);
    if version >= 13 {
        t.topic_id = topic_id;
    } else {
        t.topic = TopicName(s(topic));
    }
    FetchRequest::default().with_max_wait_ms(50).with_min_bytes(1).with_max_bytes(1 << 20).with_topics(vec![t])
}

/// The topic's id and partition leaders, asked through the gateway.
async fn topic(config: &Config, topic: &str) -> (uuid::Uuid, BTreeMap<i32, i32>) {
    let request = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(TopicName(s(topic)))),
    ]));
    let m: MetadataResponse = ask(&port(config, None), ApiKey::Metadata, 12, &request).await.expect("metadata");
    let t = &m.topics[0];
    (t.topic_id, t.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)).collect())
}

async fn metadata_every_version(config: &Config, max: i16) {
    for version in 0..=max {
        let topics = if version == 0 {
            vec![]
        } else {
            vec![metadata_request::MetadataRequestTopic::default().with_name(Some(TopicName(s(TOPIC))))]
        };
        let request = MetadataRequest::default().with_topics(Some(topics));
        ask::<_, MetadataResponse>(&port(config, None), ApiKey::Metadata, version, &request).await;
    }
}

async fn capture_mock(config: &Config, out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let mock = MockCluster::new(3)?;
    for (i, rack) in ["us-west-2a", "us-west-2c", "us-west-2b"].iter().enumerate() {
        mock.broker_rack(i as i32 + 1, rack)?;
    }
    mock.create_topic(TOPIC, 3, 3)?;
    for p in 0..3 {
        mock.partition_leader(TOPIC, p, Some(p + 1))?;
    }
    let dir = tempfile::tempdir()?;
    let gw = gateway(config, &mock.bootstrap_servers(), dir.path()).await;
    let boot = port(config, None);
    for version in 0..=5 {
        ask::<_, ApiVersionsResponse>(&boot, ApiKey::ApiVersions, version, &ApiVersionsRequest::default()).await;
    }
    metadata_every_version(config, 12).await;
    for version in 0..=3 {
        let request = FindCoordinatorRequest::default().with_key(s("fixtures-group"));
        ask::<_, FindCoordinatorResponse>(&boot, ApiKey::FindCoordinator, version, &request).await;
    }
    let (id, leaders) = topic(config, TOPIC).await;
    // Partition 0's leader is broker 1: asking broker 2 gets NOT_LEADER with KIP-951 endpoints.
    assert_eq!(leaders[&0], 1);
    let request = produce_request(10, TOPIC, id, 0);
    ask::<_, ProduceResponse>(&port(config, Some(1)), ApiKey::Produce, 10, &request).await;
    ask::<_, ProduceResponse>(&port(config, Some(2)), ApiKey::Produce, 10, &request).await;
    let request = fetch_request(16, TOPIC, id, 0);
    ask::<_, FetchResponse>(&port(config, Some(1)), ApiKey::Fetch, 16, &request).await;
    ask::<_, FetchResponse>(&port(config, Some(2)), ApiKey::Fetch, 16, &request).await;
    gw.shutdown();
    collect(dir.path(), out, MOCK_SOURCE)
}

async fn capture_tansu(config: &Config, bin: &Path, out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    drop(listener);
    let url = format!("tcp://{addr}");
    let mut tansu = std::process::Command::new(bin)
        .args(["broker", "--cluster-id", "fixtures", "--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    while std::net::TcpStream::connect(addr).is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Wait until the previous gateway let go of the fixture ports.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let dir = tempfile::tempdir()?;
    let gw = gateway(config, &addr.to_string(), dir.path()).await;
    let boot = port(config, None);
    for version in 0..=4 {
        ask::<_, ApiVersionsResponse>(&boot, ApiKey::ApiVersions, version, &ApiVersionsRequest::default()).await;
    }
    // Produce once so that the topic exists (this build creates topics on first produce).
    let create = produce_request(9, TOPIC, uuid::Uuid::nil(), 0);
    ask::<_, ProduceResponse>(&port(config, Some(111)), ApiKey::Produce, 9, &create).await;
    metadata_every_version(config, 12).await;
    for version in 0..=6 {
        let request = if version < 4 {
            FindCoordinatorRequest::default().with_key(s("fixtures-group"))
        } else {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![s("fixtures-group"), s("other-group")])
        };
        ask::<_, FindCoordinatorResponse>(&boot, ApiKey::FindCoordinator, version, &request).await;
    }
    for version in 0..=1 {
        ask::<_, DescribeClusterResponse>(&boot, ApiKey::DescribeCluster, version, &DescribeClusterRequest::default())
            .await;
    }
    for version in 1..=4 {
        let request = DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(s("111")),
        ]);
        ask::<_, DescribeConfigsResponse>(&boot, ApiKey::DescribeConfigs, version, &request).await;
    }
    let (id, _) = topic(config, TOPIC).await;
    let broker = port(config, Some(111));
    ask::<_, ProduceResponse>(&broker, ApiKey::Produce, 11, &produce_request(11, TOPIC, id, 0)).await;
    ask::<_, FetchResponse>(&broker, ApiKey::Fetch, 17, &fetch_request(17, TOPIC, id, 0)).await;
    gw.shutdown();
    let _ = tansu.kill();
    let _ = tansu.wait();
    tokio::time::sleep(Duration::from_millis(200)).await;
    collect(dir.path(), out, TANSU_SOURCE)
}

/// Moves recorded cases to `out` under stable names, naming their source.
fn collect(recorded: &Path, out: &Path, source: &str) -> Result<(), Box<dyn std::error::Error>> {
    for path in fixture::find(&[recorded.to_path_buf()])? {
        let mut case = Case::load(&path)?;
        case.sidecar.source = source.to_owned();
        // metadata-v12-rewritten-PID-SEQ → metadata-v12-rewritten
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let name: Vec<&str> = stem.rsplitn(3, '-').collect();
        write(out, name[2], case.sidecar, &case.frame)?;
    }
    Ok(())
}

/// Writes a case whose expectation is what the gateway makes of `frame` now.
fn write(out: &Path, name: &str, mut sidecar: Sidecar, frame: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
    let frame = Bytes::copy_from_slice(frame);
    let config = Config::load(Some(&out.parent().unwrap().join("gateway.toml")), &[])?;
    let racks = sidecar.racks.iter().map(|(n, r)| (n.parse().unwrap(), r.clone())).collect();
    let names = Names { group: config.groups[0].clone(), racks };
    let (expect, expected) = match fixture::run(sidecar.api_key, sidecar.api_version, frame.clone(), &names) {
        Outcome::Sent(out) if out == frame => (Expect::Unchanged, None),
        Outcome::Sent(out) => (Expect::Rewritten, Some(out)),
        Outcome::Refused(_) => (Expect::Refused, None),
        Outcome::Error(why) => {
            sidecar.note.get_or_insert(format!("not rewritable: {why}"));
            (Expect::Error, None)
        }
    };
    sidecar.expect = expect;
    let path = Case::save(out, name, &sidecar, &frame, expected.as_deref())?;
    println!("{}: {expect:?}", path.display());
    Ok(())
}

fn import_vectors(config: &Config, path: &Path, out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let _ = config;
    let text = std::fs::read_to_string(path)?;
    let vectors: serde_json::Value = serde_json::from_str(&text)?;
    let mut used: BTreeMap<String, usize> = BTreeMap::new();
    for v in vectors["vectors"].as_array().unwrap() {
        let (api, version) = (v["api"].as_i64().unwrap() as i16, v["ver"].as_i64().unwrap() as i16);
        let bytes = hex(v["hex"].as_str().unwrap());
        let key = ApiKey::try_from(api).unwrap();
        let frame = match v["kind"].as_str().unwrap() {
            // A body: add the size, a correlation id and, for flexible versions, the empty tags.
            "body" => {
                let mut f = vec![0; 4];
                f.extend(1i32.to_be_bytes());
                if key.response_header_version(version) >= 1 {
                    f.push(0);
                }
                f.extend(&bytes);
                let size = (f.len() - 4) as i32;
                f[..4].copy_from_slice(&size.to_be_bytes());
                f
            }
            _ => bytes,
        };
        let src = v["src"].as_str().unwrap();
        let repo = src.rsplit('/').next().unwrap();
        let base = format!("{}-v{version}-{repo}", rewrite_name(api));
        let n = used.entry(base.clone()).or_default();
        *n += 1;
        let name = if *n == 1 { base } else { format!("{base}-{n}") };
        let sidecar = Sidecar {
            api_key: api,
            api_version: version,
            correlation_id: i32::from_be_bytes(frame[4..8].try_into().unwrap()),
            source: format!(
                "third-party vector: {src}/{} ({})",
                v["path"].as_str().unwrap(),
                v["name"].as_str().unwrap()
            ),
            license: v["license"].as_str().map(str::to_owned),
            expect: Expect::Unchanged,
            racks: BTreeMap::new(),
            note: None,
        };
        write(out, &name, sidecar, &frame)?;
    }
    Ok(())
}

fn rewrite_name(api: i16) -> String {
    kafka_gateway::rewrite::api_name(api).to_lowercase()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn generated<M: Response>(
    out: &Path,
    name: &str,
    key: ApiKey,
    version: i16,
    message: &M,
    note: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let header = ResponseHeader::default().with_correlation_id(42);
    let frame = encode(&header, message, version, &[])?;
    let sidecar = Sidecar {
        api_key: key as i16,
        api_version: version,
        correlation_id: 42,
        source: "generated".into(),
        license: None,
        expect: Expect::Unchanged,
        racks: BTreeMap::new(),
        note: Some(note.to_owned()),
    };
    write(out, name, sidecar, &frame)
}

/// What no broker or vector available here produces.
fn generate(config: &Config, out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let _ = config;
    let broker = |n: i32, rack: Option<&str>| {
        metadata_response::MetadataResponseBroker::default()
            .with_node_id(BrokerId(n))
            .with_host(s(&format!("kafka-{n}.internal.example")))
            .with_port(9092)
            .with_rack(rack.map(s))
    };
    let racks = [Some("us-west-2a"), Some("us-west-2c"), Some("us-west-2b")];
    let metadata = MetadataResponse::default()
        .with_brokers((1..=3).map(|n| broker(n, racks[n as usize - 1])).collect())
        .with_cluster_id(Some(s("generated-cluster")))
        .with_controller_id(BrokerId(2));
    generated(
        out,
        "metadata-v13",
        ApiKey::Metadata,
        13,
        &metadata,
        "Metadata v13 (Kafka 4.0+): no broker here speaks it",
    )?;
    let sparse = MetadataResponse::default()
        .with_brokers(vec![broker(0, Some("us-west-2a")), broker(7, None), broker(1001, Some("us-west-2c"))])
        .with_cluster_id(Some(s("sparse")));
    generated(
        out,
        "metadata-v12-sparse-ids",
        ApiKey::Metadata,
        12,
        &sparse,
        "node ids 0, 7, 1001; broker 7 without a rack gets default_az",
    )?;

    let dc = DescribeClusterResponse::default()
        .with_cluster_id(s("generated-cluster"))
        .with_controller_id(BrokerId(1))
        .with_brokers(
            (1..=3)
                .map(|n| {
                    describe_cluster_response::DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(n))
                        .with_host(s(&format!("kafka-{n}.internal.example")))
                        .with_port(9092)
                        .with_rack(racks[n as usize - 1].map(s))
                        .with_is_fenced(n == 3)
                })
                .collect(),
        );
    generated(
        out,
        "describecluster-v2",
        ApiKey::DescribeCluster,
        2,
        &dc,
        "DescribeCluster v2 (is_fenced): tansu speaks v0-v1",
    )?;

    for version in 1..=4 {
        let config = |name: &str, value: &str, synonyms: &[&str]| {
            describe_configs_response::DescribeConfigsResourceResult::default()
                .with_name(s(name))
                .with_value(Some(s(value)))
                .with_config_source(2)
                .with_synonyms(
                    synonyms
                        .iter()
                        .map(|n| {
                            describe_configs_response::DescribeConfigsSynonym::default()
                                .with_name(s(n))
                                .with_value(Some(s(value)))
                                .with_source(4)
                        })
                        .collect(),
                )
                .with_config_type(if version >= 3 { 2 } else { 0 })
        };
        let configs = DescribeConfigsResponse::default().with_results(vec![
            describe_configs_response::DescribeConfigsResult::default()
                .with_resource_type(4)
                .with_resource_name(s("1"))
                .with_configs(vec![
                    config(
                        "advertised.listeners",
                        "INTERNAL://kafka-1.internal.example:9092,REPLICATION://10.0.0.11:9094",
                        &["advertised.listeners"],
                    ),
                    config("listeners", "INTERNAL://0.0.0.0:9092,REPLICATION://10.0.0.11:9094", &[]),
                    config("controller.quorum.bootstrap.servers", "kafka-c1.internal.example:9093", &[]),
                    config("log.retention.ms", "604800000", &["log.retention.hours"]),
                ]),
        ]);
        generated(
            out,
            &format!("describeconfigs-v{version}-broker-listeners"),
            ApiKey::DescribeConfigs,
            version,
            &configs,
            "a broker's configuration naming its listeners and quorum: no broker here reports them",
        )?;
    }

    let coordinators = FindCoordinatorResponse::default().with_coordinators(vec![
        find_coordinator_response::Coordinator::default()
            .with_key(s("group-a"))
            .with_node_id(BrokerId(2))
            .with_host(s("kafka-2.internal.example"))
            .with_port(9092),
        find_coordinator_response::Coordinator::default()
            .with_key(s("group-b"))
            .with_node_id(BrokerId(-1))
            .with_port(-1)
            .with_error_code(15)
            .with_error_message(Some(s("The coordinator is not available."))),
    ]);
    for version in 4..=6 {
        generated(
            out,
            &format!("findcoordinator-v{version}-batched-with-error"),
            ApiKey::FindCoordinator,
            version,
            &coordinators,
            "a batched answer with an error entry, which must stay as it is",
        )?;
    }

    // A real Kafka broker's KIP-511 answer: error 35 in the v0 layout, naming ApiVersions v0-v3.
    let fallback = ApiVersionsResponse::default().with_error_code(35).with_api_keys(vec![
        api_versions_response::ApiVersion::default().with_api_key(18).with_min_version(0).with_max_version(3),
    ]);
    let header = ResponseHeader::default().with_correlation_id(42);
    let frame = encode(&header, &fallback, 0, &[])?;
    let sidecar = Sidecar {
        api_key: 18,
        api_version: 4,
        correlation_id: 42,
        source: "generated".into(),
        license: None,
        expect: Expect::Unchanged,
        racks: BTreeMap::new(),
        note: Some("a broker that knows ApiVersions v3 at most answers a v4 request in the v0 layout (KIP-511)".into()),
    };
    write(out, "apiversions-v4-kip511-fallback", sidecar.clone(), &frame)?;
    // A request newer than the gateway decodes: whatever the broker answers, the client gets the
    // gateway's own KIP-511 answer naming the versions it knows.
    let sidecar = Sidecar {
        api_version: 5,
        note: Some(
            "ApiVersions v5, newer than the gateway: the answer is replaced by the gateway's error 35 in the v0 layout"
                .into(),
        ),
        ..sidecar
    };
    write(out, "apiversions-v5-newer-than-the-gateway", sidecar, &frame)?;

    let endpoint = |n: i32| {
        produce_response::NodeEndpoint::default()
            .with_node_id(BrokerId(n))
            .with_host(s(&format!("kafka-{n}.internal.example")))
            .with_port(9092)
            .with_rack(Some(s("us-west-2c")))
    };
    for version in 11..=13 {
        let mut topic = produce_response::TopicProduceResponse::default().with_partition_responses(vec![
            produce_response::PartitionProduceResponse::default()
                .with_index(0)
                .with_error_code(6)
                .with_base_offset(-1)
                .with_current_leader(
                    produce_response::LeaderIdAndEpoch::default().with_leader_id(BrokerId(2)).with_leader_epoch(5),
                ),
        ]);
        if version >= 13 {
            topic.topic_id = uuid::Uuid::from_u128(0x5eed);
        } else {
            topic.name = TopicName(s("orders"));
        }
        let m = ProduceResponse::default().with_responses(vec![topic]).with_node_endpoints(vec![endpoint(2)]);
        generated(
            out,
            &format!("produce-v{version}-node-endpoints"),
            ApiKey::Produce,
            version,
            &m,
            "NOT_LEADER with KIP-951 current_leader and node_endpoints",
        )?;
    }
    for version in 17..=18 {
        let partition = fetch_response::PartitionData::default()
            .with_partition_index(0)
            .with_error_code(6)
            .with_high_watermark(-1)
            .with_current_leader(
                fetch_response::LeaderIdAndEpoch::default().with_leader_id(BrokerId(3)).with_leader_epoch(7),
            );
        let with_records = fetch_response::PartitionData::default()
            .with_partition_index(1)
            .with_high_watermark(3)
            .with_records(Some(records(3)));
        let topic = fetch_response::FetchableTopicResponse::default()
            .with_topic_id(uuid::Uuid::from_u128(0x5eed))
            .with_partitions(vec![partition, with_records]);
        let endpoint = fetch_response::NodeEndpoint::default()
            .with_node_id(BrokerId(3))
            .with_host(s("kafka-3.internal.example"))
            .with_port(9092)
            .with_rack(Some(s("us-west-2b")));
        let m = FetchResponse::default().with_responses(vec![topic]).with_node_endpoints(vec![endpoint]);
        generated(
            out,
            &format!("fetch-v{version}-node-endpoints"),
            ApiKey::Fetch,
            version,
            &m,
            "one partition moved (KIP-951 endpoints), one with records that must pass untouched",
        )?;
    }
    share_groups(out)
}

/// ShareFetch and ShareAcknowledge v1 (KIP-932) with node endpoints, as librdkafka 2.16's mock
/// cluster answers a share-group member that asks a broker which no longer leads its partition
/// (tests/share_groups.rs asks it live); an answer without endpoints passes as the same bytes.
fn share_groups(out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let topic_id = uuid::Uuid::from_u128(0x5eed);
    let endpoint = |n: i32, rack: &str| {
        share_fetch_response::NodeEndpoint::default()
            .with_node_id(BrokerId(n))
            .with_host(s(&format!("kafka-{n}.internal.example")))
            .with_port(9092)
            .with_rack(Some(s(rack)))
    };
    let moved = share_fetch_response::PartitionData::default()
        .with_partition_index(0)
        .with_error_code(6)
        .with_error_message(Some(s("Broker: Not leader for partition")))
        .with_current_leader(share_fetch_response::LeaderIdAndEpoch::default().with_leader_id(1).with_leader_epoch(2))
        .with_records(Some(Bytes::new()));
    let acquired = share_fetch_response::PartitionData::default()
        .with_partition_index(1)
        .with_current_leader(share_fetch_response::LeaderIdAndEpoch::default().with_leader_id(-1).with_leader_epoch(-1))
        .with_records(Some(records(3)))
        .with_acquired_records(vec![
            share_fetch_response::AcquiredRecords::default()
                .with_first_offset(0)
                .with_last_offset(2)
                .with_delivery_count(1),
        ]);
    let topic = share_fetch_response::ShareFetchableTopicResponse::default()
        .with_topic_id(topic_id)
        .with_partitions(vec![moved, acquired.clone()]);
    let fetch = ShareFetchResponse::default()
        .with_acquisition_lock_timeout_ms(30_000)
        .with_responses(vec![topic])
        .with_node_endpoints(vec![endpoint(1, "us-west-2a")]);
    generated(
        out,
        "sharefetch-v1-node-endpoints",
        ApiKey::ShareFetch,
        1,
        &fetch,
        "one partition moved (node endpoints, a regular field after the records), one with acquired records that must pass untouched",
    )?;
    let plain = ShareFetchResponse::default().with_acquisition_lock_timeout_ms(30_000).with_responses(vec![
        share_fetch_response::ShareFetchableTopicResponse::default()
            .with_topic_id(topic_id)
            .with_partitions(vec![acquired]),
    ]);
    generated(out, "sharefetch-v1-records-only", ApiKey::ShareFetch, 1, &plain, "no endpoints: the same bytes")?;
    let acknowledge = ShareAcknowledgeResponse::default()
        .with_responses(vec![
            share_acknowledge_response::ShareAcknowledgeTopicResponse::default()
                .with_topic_id(topic_id)
                .with_partitions(vec![
                    share_acknowledge_response::PartitionData::default()
                        .with_partition_index(0)
                        .with_error_code(6)
                        .with_current_leader(
                            share_acknowledge_response::LeaderIdAndEpoch::default()
                                .with_leader_id(3)
                                .with_leader_epoch(4),
                        ),
                ]),
        ])
        .with_node_endpoints(vec![
            share_acknowledge_response::NodeEndpoint::default()
                .with_node_id(BrokerId(3))
                .with_host(s("kafka-3.internal.example"))
                .with_port(9092)
                .with_rack(Some(s("us-west-2b"))),
        ]);
    generated(
        out,
        "shareacknowledge-v1-node-endpoints",
        ApiKey::ShareAcknowledge,
        1,
        &acknowledge,
        "an acknowledgement sent to a broker that no longer leads the partition",
    )
}
