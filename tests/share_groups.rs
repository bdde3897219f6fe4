//! Share groups (KIP-932) against a broker that serves them: librdkafka 2.16's mock cluster (inside
//! the confluent-kafka wheel; the 2.12 build inside the `rdkafka` crate has no share groups, and
//! tansu 0.6 does not advertise ShareFetch). A share session asked directly and through the gateway
//! answers the same but for hosts and ports, and a share consumer behind a private link consumes
//! through the gateway, every message exactly once.

mod support;

use std::time::Duration;

use kafka_gateway::broker::HostPort;
use kafka_gateway::upstream::Connection;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use support::*;

const LIMIT: Duration = Duration::from_secs(10);
const TOPIC: &str = "shared";

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

async fn call<
    Req: kafka_protocol::protocol::Encodable,
    Resp: kafka_protocol::protocol::Decodable + kafka_protocol::protocol::HeaderVersion,
>(
    addr: &HostPort,
    key: ApiKey,
    version: i16,
    request: &Req,
) -> Resp {
    let mut conn = Connection::open(addr, &kafka_gateway::upstream::Link::plain(LIMIT))
        .await
        .unwrap_or_else(|e| panic!("{addr}: {e}"));
    conn.call(key, version, request).await.unwrap_or_else(|e| panic!("{key:?} v{version} to {addr}: {e}"))
}

/// What one share-group member sees: ShareFetch from the leader of every partition (records), from
/// a broker that is not their leader (NOT_LEADER with node endpoints), and ShareAcknowledge there too.
struct Session {
    from_leader: ShareFetchResponse,
    from_other: ShareFetchResponse,
    acknowledged: ShareAcknowledgeResponse,
}

/// Joins share group `group` and runs one session, reaching broker N at `broker(N)`.
async fn share_session(bootstrap: &HostPort, broker: impl Fn(i32) -> HostPort, group: &str) -> Session {
    let request = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(TopicName(s(TOPIC)))),
    ]));
    let metadata: MetadataResponse = call(bootstrap, ApiKey::Metadata, 12, &request).await;
    let topic = &metadata.topics[0];
    let leader = topic.partitions.iter().find(|p| p.partition_index == 0).unwrap().leader_id.0;
    let other = 1 + leader % 3;
    let coordinator: FindCoordinatorResponse =
        call(bootstrap, ApiKey::FindCoordinator, 3, &FindCoordinatorRequest::default().with_key(s(group))).await;
    assert_eq!(coordinator.error_code, 0);
    let member = s(&uuid::Uuid::from_u128(0x5eed_u128 + group.len() as u128).to_string());
    let heartbeat = ShareGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(member.clone())
        .with_member_epoch(0)
        .with_subscribed_topic_names(Some(vec![TopicName(s(TOPIC))]));
    let joined: ShareGroupHeartbeatResponse =
        call(&broker(coordinator.node_id.0), ApiKey::ShareGroupHeartbeat, 1, &heartbeat).await;
    assert_eq!(joined.error_code, 0, "{joined:?}");
    let fetch = ShareFetchRequest::default()
        .with_group_id(Some(GroupId(s(group))))
        .with_member_id(Some(member.clone()))
        .with_share_session_epoch(0)
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_max_records(500)
        .with_batch_size(500)
        .with_topics(vec![
            share_fetch_request::FetchTopic::default()
                .with_topic_id(topic.topic_id)
                // Every partition (broker 1 leads them all in the comparison): keyless records may
                // all land on one of them, so one partition alone is sometimes empty.
                .with_partitions(
                    (0..3).map(|p| share_fetch_request::FetchPartition::default().with_partition_index(p)).collect(),
                ),
        ]);
    let from_leader: ShareFetchResponse = call(&broker(leader), ApiKey::ShareFetch, 1, &fetch).await;
    // One connection for the session on the other broker: the acknowledgement continues it.
    let mut conn = Connection::open(&broker(other), &kafka_gateway::upstream::Link::plain(LIMIT)).await.unwrap();
    let from_other: ShareFetchResponse = conn.call(ApiKey::ShareFetch, 1, &fetch).await.unwrap();
    let acknowledge = ShareAcknowledgeRequest::default()
        .with_group_id(Some(GroupId(s(group))))
        .with_member_id(Some(member))
        .with_share_session_epoch(1)
        .with_topics(vec![
            share_acknowledge_request::AcknowledgeTopic::default().with_topic_id(topic.topic_id).with_partitions(vec![
                share_acknowledge_request::AcknowledgePartition::default()
                    .with_partition_index(0)
                    .with_acknowledgement_batches(vec![
                        share_acknowledge_request::AcknowledgementBatch::default()
                            .with_first_offset(0)
                            .with_last_offset(0)
                            .with_acknowledge_types(vec![1]),
                    ]),
            ]),
        ]);
    let acknowledged: ShareAcknowledgeResponse = conn.call(ApiKey::ShareAcknowledge, 1, &acknowledge).await.unwrap();
    Session { from_leader, from_other, acknowledged }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_fetch_and_acknowledge_through_the_gateway_equal_the_direct_answers_but_for_addresses() {
    let mut mock = ShareMock::start();
    mock.create_topic(TOPIC, 3, 3);
    for partition in 0..3 {
        mock.partition_leader(TOPIC, partition, 1);
    }
    let base = free_ports(3);
    let config = aws_config([127, 0, 0, 1].into(), base, &mock.bootstrap);
    let via = host_port(bootstrap_of(&config));
    let direct = config.upstream.bootstrap_servers[0].clone();
    let _gateway = start(config).await;

    // The gateway offers share groups at the version it rewrites, as the broker does.
    // (v2: the mock answers newer ApiVersions requests with KIP-511's error 35.)
    let versions: ApiVersionsResponse = call(&via, ApiKey::ApiVersions, 2, &ApiVersionsRequest::default()).await;
    assert_eq!(versions.error_code, 0);
    let range = |key: ApiKey| {
        versions.api_keys.iter().find(|k| k.api_key == key as i16).map(|k| (k.min_version, k.max_version))
    };
    assert_eq!(range(ApiKey::ShareFetch), Some((1, 1)));
    assert_eq!(range(ApiKey::ShareAcknowledge), Some((1, 1)));

    // Records to fetch, produced directly.
    let out = std::process::Command::new(python())
        .arg(client_script("confluent_kafka_client.py"))
        .args(["produce", "--bootstrap", &mock.bootstrap, "--topic", TOPIC, "--count", "30"])
        .output()
        .unwrap();
    assert_eq!(stdout_of(&out).trim(), "produced 30 errors 0");

    let metadata: MetadataResponse =
        call(&direct, ApiKey::Metadata, 12, &MetadataRequest::default().with_topics(Some(vec![]))).await;
    let upstream = |n: i32| {
        let b = metadata.brokers.iter().find(|b| b.node_id.0 == n).unwrap();
        HostPort { host: b.host.to_string(), port: b.port as u16 }
    };
    let gateway_port = |n: i32| HostPort { host: "127.0.0.1".into(), port: base + n as u16 };
    // Two groups, so that each acquires the same records from a fresh state.
    let plain = share_session(&direct, upstream, "direct-group").await;
    let through = share_session(&via, gateway_port, "via-group").await;

    let records = |r: &ShareFetchResponse| {
        r.responses[0].partitions.iter().filter_map(|p| p.records.clone()).map(|r| r.len()).sum::<usize>()
    };
    assert!(records(&plain.from_leader) > 0, "{:?}", plain.from_leader);
    assert_eq!(records(&through.from_leader), records(&plain.from_leader));
    assert_eq!(through.from_leader, plain.from_leader, "the leader's answer names no broker");

    // The other broker's answers: NOT_LEADER_OR_FOLLOWER, with the leader's endpoint.
    assert_eq!(plain.from_other.responses[0].partitions[0].error_code, 6);
    assert_eq!(plain.from_other.node_endpoints.len(), 1, "{:?}", plain.from_other);
    assert_eq!(plain.acknowledged.responses[0].partitions[0].error_code, 6, "{:?}", plain.acknowledged);
    assert_eq!(plain.acknowledged.node_endpoints.len(), 1, "{:?}", plain.acknowledged);
    let name = |n: i32| (s(AWS_NAMES[n as usize - 1]), i32::from(base) + n);
    let mut expected = plain.from_other.clone();
    for e in &mut expected.node_endpoints {
        assert_eq!(e.host.as_str(), "127.0.0.1", "the mock's own address");
        (e.host, e.port) = name(e.node_id.0);
    }
    assert_eq!(through.from_other, expected);
    let mut expected = plain.acknowledged.clone();
    for e in &mut expected.node_endpoints {
        (e.host, e.port) = name(e.node_id.0);
    }
    assert_eq!(through.acknowledged, expected);
    assert_eq!(through.acknowledged.node_endpoints[0].rack.as_deref(), Some(RACKS[0]), "racks pass unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_consumer_behind_a_private_link_consumes_through_the_gateway_exactly_once() {
    let mut mock = ShareMock::start();
    mock.create_topic(TOPIC, 3, 3);
    let link = PrivateLink::new();
    let config = aws_config(link.gateway_ip.into(), 9092, &mock.bootstrap);
    let bootstrap = bootstrap_of(&config).to_string();
    let _gateway = start(config).await;
    link.set_hosts(&AWS_NAMES);
    let client = |args: &[&str]| {
        let mut all = vec![client_script("confluent_kafka_client.py").to_str().unwrap().to_owned()];
        all.extend(args.iter().map(|a| a.to_string()));
        all
    };
    let run = async |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        stdout_of(&link.run(&python(), &args).await)
    };
    let names = run(client(&["metadata", "--bootstrap", &bootstrap])).await;
    let expected: String =
        AWS_NAMES.iter().enumerate().map(|(i, name)| format!("broker {} {name}:{}\n", i + 1, 9093 + i)).collect();
    assert_eq!(names, expected);
    let produced = run(client(&["produce", "--bootstrap", &bootstrap, "--topic", TOPIC, "--count", "2000"])).await;
    assert_eq!(produced.trim(), "produced 2000 errors 0");
    let consumed =
        run(client(&["share", "--bootstrap", &bootstrap, "--topic", TOPIC, "--group", "sg", "--count", "2000"])).await;
    assert_eq!(consumed.trim(), "consumed 2000 distinct 2000 duplicates 0");
}
