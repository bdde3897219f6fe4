//! Property tests (proptest) of every rewritten API and version (ShareFetch and ShareAcknowledge
//! included):
//! 1. an arbitrary valid response, rewritten and decoded again, equals the input except for the
//!    broker hosts and ports, which are what the template gives (DescribeConfigs: except for the
//!    configuration values that name hosts, which are hidden);
//! 2. a response that needs no rewrite comes out as the same bytes;
//! 3. frames split at arbitrary chunk boundaries are read identically;
//! 4. arbitrary bytes never panic.

mod support;

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_gateway::Config;
use kafka_gateway::broker::{Advertise, Named, Rack};
use kafka_gateway::fixture::{Names, decode_any};
use kafka_gateway::frame::{self, MIN_REQUEST, Peek};
use kafka_gateway::rewrite::{self, Response, Rewrite, api_versions, encode, visit_addresses};
use kafka_gateway::session::Limits;
use kafka_gateway::session::testing::proxy;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use support::request_frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config() -> Config {
    Config::from_toml(
        r#"
        [upstream]
        bootstrap_servers = ["k:9092"]
        [listeners.p]
        broker_port_base = 10000
        advertised = "b{node_id}.{az}.prop.example:{port}"
        az_by_rack = { "r1" = "az-one", "r2" = "az-two" }
        default_az = "az-default"
        "#,
    )
    .unwrap()
}

fn names(config: &Config) -> Names {
    Names { group: config.groups[0].clone(), racks: BTreeMap::from([(1, "r2".to_owned())]) }
}

// ---- strategies ---------------------------------------------------------------------------------

fn text(max: usize) -> impl Strategy<Value = StrBytes> {
    proptest::string::string_regex(&format!("[a-zA-Z0-9._-]{{0,{max}}}")).unwrap().prop_map(StrBytes::from_string)
}

fn host() -> impl Strategy<Value = StrBytes> {
    proptest::string::string_regex("[a-z0-9][a-z0-9.-]{0,40}").unwrap().prop_map(StrBytes::from_string)
}

/// Node ids of brokers: small, sparse and large, all with a port under broker_port_base 10000.
fn node() -> impl Strategy<Value = i32> {
    prop_oneof![0..8i32, 0..55_535i32]
}

fn rack() -> impl Strategy<Value = Option<StrBytes>> {
    prop_oneof![
        Just(None),
        Just(Some(StrBytes::from_static_str("r1"))),
        Just(Some(StrBytes::from_static_str("r2"))),
        text(8).prop_map(Some)
    ]
}

/// Unknown tagged fields, valid only in flexible versions (tags far from the known ones).
fn tags(flexible: bool) -> impl Strategy<Value = BTreeMap<i32, Bytes>> {
    let size = if flexible { 0..3usize } else { 0..1 };
    proptest::collection::btree_map(100..120i32, vec(any::<u8>(), 0..8).prop_map(Bytes::from), size)
}

fn uuid() -> impl Strategy<Value = uuid::Uuid> {
    any::<u128>().prop_map(uuid::Uuid::from_u128)
}

fn metadata(v: i16) -> impl Strategy<Value = MetadataResponse> {
    let broker = (node(), host(), any::<i32>(), rack(), tags(v >= 9)).prop_map(move |(n, h, p, r, t)| {
        metadata_response::MetadataResponseBroker::default()
            .with_node_id(BrokerId(n))
            .with_host(h)
            .with_port(p)
            .with_rack(if v >= 1 { r } else { None })
            .with_unknown_tagged_fields(t)
    });
    let partition = (
        any::<i16>(),
        any::<i32>(),
        any::<i32>(),
        any::<i32>(),
        vec(any::<i32>(), 0..4),
        vec(any::<i32>(), 0..4),
        tags(v >= 9),
    )
        .prop_map(move |(e, i, l, epoch, replicas, isr, t)| {
            let ids = |v: Vec<i32>| v.into_iter().map(BrokerId).collect::<Vec<_>>();
            metadata_response::MetadataResponsePartition::default()
                .with_error_code(e)
                .with_partition_index(i)
                .with_leader_id(BrokerId(l))
                .with_leader_epoch(if v >= 7 { epoch } else { -1 })
                .with_replica_nodes(ids(replicas.clone()))
                .with_isr_nodes(ids(isr))
                .with_offline_replicas(if v >= 5 { ids(replicas) } else { vec![] })
                .with_unknown_tagged_fields(t)
        });
    let topic = (any::<i16>(), text(20), uuid(), any::<bool>(), vec(partition, 0..3), any::<i32>(), tags(v >= 9))
        .prop_map(move |(e, name, id, internal, partitions, ops, t)| {
            metadata_response::MetadataResponseTopic::default()
                .with_error_code(e)
                .with_name(Some(TopicName(name)))
                .with_topic_id(if v >= 10 { id } else { uuid::Uuid::nil() })
                .with_is_internal(v >= 1 && internal)
                .with_partitions(partitions)
                .with_topic_authorized_operations(if v >= 8 { ops } else { i32::MIN })
                .with_unknown_tagged_fields(t)
        });
    (
        any::<i32>(),
        vec(broker, 0..6),
        proptest::option::of(text(12)),
        any::<i32>(),
        vec(topic, 0..3),
        any::<i32>(),
        any::<i16>(),
        tags(v >= 9),
    )
        .prop_map(move |(throttle, brokers, cluster, controller, topics, ops, error, t)| {
            MetadataResponse::default()
                .with_throttle_time_ms(if v >= 3 { throttle } else { 0 })
                .with_brokers(brokers)
                .with_cluster_id(if v >= 2 { cluster } else { None })
                .with_controller_id(BrokerId(if v >= 1 { controller } else { -1 }))
                .with_topics(topics)
                .with_cluster_authorized_operations(if (8..=10).contains(&v) { ops } else { i32::MIN })
                .with_error_code(if v >= 13 { error } else { 0 })
                .with_unknown_tagged_fields(t)
        })
}

fn find_coordinator(v: i16) -> impl Strategy<Value = FindCoordinatorResponse> {
    let coordinator = (
        text(12),
        node(),
        host(),
        any::<i32>(),
        prop_oneof![3 => Just(0i16), 1 => Just(15i16)],
        proptest::option::of(text(10)),
        tags(true),
    )
        .prop_map(|(key, n, h, p, error, message, t)| {
            let c = find_coordinator_response::Coordinator::default()
                .with_key(key)
                .with_error_code(error)
                .with_error_message(message);
            let c = if error == 0 {
                c.with_node_id(BrokerId(n)).with_host(h).with_port(p)
            } else {
                c.with_node_id(BrokerId(-1)).with_port(-1)
            };
            c.with_unknown_tagged_fields(t)
        });
    (
        any::<i32>(),
        prop_oneof![3 => Just(0i16), 1 => Just(15i16)],
        proptest::option::of(text(10)),
        node(),
        host(),
        any::<i32>(),
        vec(coordinator, 0..4),
        tags(v >= 3),
    )
        .prop_map(move |(throttle, error, message, n, h, p, coordinators, t)| {
            let mut m = FindCoordinatorResponse::default()
                .with_throttle_time_ms(if v >= 1 { throttle } else { 0 })
                .with_unknown_tagged_fields(t);
            if v >= 4 {
                m.coordinators = coordinators;
            } else {
                m.error_code = error;
                m.error_message = if v >= 1 { message } else { None };
                (m.node_id, m.host, m.port) =
                    if error == 0 { (BrokerId(n), h, p) } else { (BrokerId(-1), StrBytes::default(), -1) };
            }
            m
        })
}

fn describe_cluster(v: i16) -> impl Strategy<Value = DescribeClusterResponse> {
    let broker =
        (node(), host(), any::<i32>(), rack(), any::<bool>(), tags(true)).prop_map(move |(n, h, p, r, fenced, t)| {
            describe_cluster_response::DescribeClusterBroker::default()
                .with_broker_id(BrokerId(n))
                .with_host(h)
                .with_port(p)
                .with_rack(r)
                .with_is_fenced(v >= 2 && fenced)
                .with_unknown_tagged_fields(t)
        });
    (
        any::<i32>(),
        any::<i16>(),
        proptest::option::of(text(10)),
        text(12),
        any::<i32>(),
        vec(broker, 0..5),
        any::<i32>(),
        tags(true),
    )
        .prop_map(move |(throttle, e, message, cluster, controller, brokers, ops, t)| {
            DescribeClusterResponse::default()
                .with_throttle_time_ms(throttle)
                .with_error_code(e)
                .with_error_message(message)
                .with_endpoint_type(1)
                .with_cluster_id(cluster)
                .with_controller_id(BrokerId(controller))
                .with_brokers(brokers)
                .with_cluster_authorized_operations(ops)
                .with_unknown_tagged_fields(t)
        })
}

fn api_versions(v: i16) -> impl Strategy<Value = ApiVersionsResponse> {
    let key =
        (prop_oneof![0..100i16, 10_000..10_010i16], 0..5i16, 0..20i16, tags(v >= 3)).prop_map(|(k, min, span, t)| {
            api_versions_response::ApiVersion::default()
                .with_api_key(k)
                .with_min_version(min)
                .with_max_version(min + span)
                .with_unknown_tagged_fields(t)
        });
    (vec(key, 0..40), any::<i32>(), tags(v >= 3)).prop_map(move |(keys, throttle, t)| {
        ApiVersionsResponse::default()
            .with_api_keys(keys)
            .with_throttle_time_ms(if v >= 1 { throttle } else { 0 })
            .with_unknown_tagged_fields(t)
    })
}

fn produce(v: i16) -> impl Strategy<Value = ProduceResponse> {
    let endpoint = (node(), host(), any::<i32>(), rack(), tags(true)).prop_map(|(n, h, p, r, t)| {
        produce_response::NodeEndpoint::default()
            .with_node_id(BrokerId(n))
            .with_host(h)
            .with_port(p)
            .with_rack(r)
            .with_unknown_tagged_fields(t)
    });
    let record_error = (any::<i32>(), proptest::option::of(text(10))).prop_map(|(i, m)| {
        produce_response::BatchIndexAndErrorMessage::default().with_batch_index(i).with_batch_index_error_message(m)
    });
    let partition = (
        any::<i32>(),
        any::<i16>(),
        any::<i64>(),
        any::<i64>(),
        any::<i64>(),
        vec(record_error, 0..2),
        proptest::option::of(text(10)),
        any::<i32>(),
        tags(true),
    )
        .prop_map(|(i, e, base, time, start, errors, message, leader, t)| {
            produce_response::PartitionProduceResponse::default()
                .with_index(i)
                .with_error_code(e)
                .with_base_offset(base)
                .with_log_append_time_ms(time)
                .with_log_start_offset(start)
                .with_record_errors(errors)
                .with_error_message(message)
                .with_current_leader(
                    produce_response::LeaderIdAndEpoch::default()
                        .with_leader_id(BrokerId(leader))
                        .with_leader_epoch(leader / 2),
                )
                .with_unknown_tagged_fields(t)
        });
    let topic = (text(12), uuid(), vec(partition, 0..3), tags(true)).prop_map(move |(name, id, partitions, t)| {
        let topic = produce_response::TopicProduceResponse::default()
            .with_partition_responses(partitions)
            .with_unknown_tagged_fields(t);
        if v >= 13 { topic.with_topic_id(id) } else { topic.with_name(TopicName(name)) }
    });
    (vec(topic, 0..3), any::<i32>(), vec(endpoint, 0..4), tags(true)).prop_map(|(responses, throttle, endpoints, t)| {
        ProduceResponse::default()
            .with_responses(responses)
            .with_throttle_time_ms(throttle)
            .with_node_endpoints(endpoints)
            .with_unknown_tagged_fields(t)
    })
}

fn fetch(_v: i16) -> impl Strategy<Value = FetchResponse> {
    let endpoint = (node(), host(), any::<i32>(), rack(), tags(true)).prop_map(|(n, h, p, r, t)| {
        fetch_response::NodeEndpoint::default()
            .with_node_id(BrokerId(n))
            .with_host(h)
            .with_port(p)
            .with_rack(r)
            .with_unknown_tagged_fields(t)
    });
    let aborted = (any::<i64>(), any::<i64>()).prop_map(|(p, o)| {
        fetch_response::AbortedTransaction::default().with_producer_id(ProducerId(p)).with_first_offset(o)
    });
    let partition = (
        (any::<i32>(), any::<i16>(), any::<i64>(), any::<i64>(), any::<i64>()),
        (any::<i32>(), any::<i32>()),
        proptest::option::of(vec(aborted, 0..2)),
        any::<i32>(),
        proptest::option::of(vec(any::<u8>(), 0..300).prop_map(Bytes::from)),
        tags(true),
    )
        .prop_map(|((i, e, hw, lso, start), (leader, epoch), aborted, replica, records, t)| {
            fetch_response::PartitionData::default()
                .with_partition_index(i)
                .with_error_code(e)
                .with_high_watermark(hw)
                .with_last_stable_offset(lso)
                .with_log_start_offset(start)
                .with_current_leader(
                    fetch_response::LeaderIdAndEpoch::default()
                        .with_leader_id(BrokerId(leader))
                        .with_leader_epoch(epoch),
                )
                .with_diverging_epoch(fetch_response::EpochEndOffset::default().with_epoch(epoch).with_end_offset(hw))
                .with_aborted_transactions(aborted)
                .with_preferred_read_replica(BrokerId(replica))
                .with_records(records)
                .with_unknown_tagged_fields(t)
        });
    let topic = (uuid(), vec(partition, 0..3), tags(true)).prop_map(|(id, partitions, t)| {
        fetch_response::FetchableTopicResponse::default()
            .with_topic_id(id)
            .with_partitions(partitions)
            .with_unknown_tagged_fields(t)
    });
    (any::<i32>(), any::<i16>(), any::<i32>(), vec(topic, 0..3), vec(endpoint, 0..4), tags(true)).prop_map(
        |(throttle, e, session, responses, endpoints, t)| {
            FetchResponse::default()
                .with_throttle_time_ms(throttle)
                .with_error_code(e)
                .with_session_id(session)
                .with_responses(responses)
                .with_node_endpoints(endpoints)
                .with_unknown_tagged_fields(t)
        },
    )
}

fn share_fetch(_v: i16) -> impl Strategy<Value = ShareFetchResponse> {
    use share_fetch_response as sf;
    let endpoint = (node(), host(), any::<i32>(), rack(), tags(true)).prop_map(|(n, h, p, r, t)| {
        sf::NodeEndpoint::default()
            .with_node_id(BrokerId(n))
            .with_host(h)
            .with_port(p)
            .with_rack(r)
            .with_unknown_tagged_fields(t)
    });
    let acquired = (any::<i64>(), any::<i64>(), any::<i16>(), tags(true)).prop_map(|(first, last, count, t)| {
        sf::AcquiredRecords::default()
            .with_first_offset(first)
            .with_last_offset(last)
            .with_delivery_count(count)
            .with_unknown_tagged_fields(t)
    });
    let partition = (
        (any::<i32>(), any::<i16>(), proptest::option::of(text(10)), any::<i16>(), proptest::option::of(text(10))),
        (any::<i32>(), any::<i32>(), tags(true)),
        proptest::option::of(vec(any::<u8>(), 0..300).prop_map(Bytes::from)),
        vec(acquired, 0..3),
        tags(true),
    )
        .prop_map(|((i, e, message, ack_e, ack_message), (leader, epoch, leader_tags), records, acquired, t)| {
            sf::PartitionData::default()
                .with_partition_index(i)
                .with_error_code(e)
                .with_error_message(message)
                .with_acknowledge_error_code(ack_e)
                .with_acknowledge_error_message(ack_message)
                .with_current_leader(
                    sf::LeaderIdAndEpoch::default()
                        .with_leader_id(leader)
                        .with_leader_epoch(epoch)
                        .with_unknown_tagged_fields(leader_tags),
                )
                .with_records(records)
                .with_acquired_records(acquired)
                .with_unknown_tagged_fields(t)
        });
    let topic = (uuid(), vec(partition, 0..3), tags(true)).prop_map(|(id, partitions, t)| {
        sf::ShareFetchableTopicResponse::default()
            .with_topic_id(id)
            .with_partitions(partitions)
            .with_unknown_tagged_fields(t)
    });
    (
        (any::<i32>(), any::<i16>(), proptest::option::of(text(10)), any::<i32>()),
        vec(topic, 0..3),
        vec(endpoint, 0..4),
        tags(true),
    )
        .prop_map(|((throttle, e, message, lock), responses, endpoints, t)| {
            ShareFetchResponse::default()
                .with_throttle_time_ms(throttle)
                .with_error_code(e)
                .with_error_message(message)
                .with_acquisition_lock_timeout_ms(lock)
                .with_responses(responses)
                .with_node_endpoints(endpoints)
                .with_unknown_tagged_fields(t)
        })
}

fn share_acknowledge(_v: i16) -> impl Strategy<Value = ShareAcknowledgeResponse> {
    use share_acknowledge_response as sa;
    let endpoint = (node(), host(), any::<i32>(), rack(), tags(true)).prop_map(|(n, h, p, r, t)| {
        sa::NodeEndpoint::default()
            .with_node_id(BrokerId(n))
            .with_host(h)
            .with_port(p)
            .with_rack(r)
            .with_unknown_tagged_fields(t)
    });
    let partition = (any::<i32>(), any::<i16>(), proptest::option::of(text(10)), any::<(i32, i32)>(), tags(true))
        .prop_map(|(i, e, message, (leader, epoch), t)| {
            sa::PartitionData::default()
                .with_partition_index(i)
                .with_error_code(e)
                .with_error_message(message)
                .with_current_leader(sa::LeaderIdAndEpoch::default().with_leader_id(leader).with_leader_epoch(epoch))
                .with_unknown_tagged_fields(t)
        });
    let topic = (uuid(), vec(partition, 0..3), tags(true)).prop_map(|(id, partitions, t)| {
        sa::ShareAcknowledgeTopicResponse::default()
            .with_topic_id(id)
            .with_partitions(partitions)
            .with_unknown_tagged_fields(t)
    });
    (any::<i32>(), any::<i16>(), proptest::option::of(text(10)), vec(topic, 0..3), vec(endpoint, 0..4), tags(true))
        .prop_map(|(throttle, e, message, responses, endpoints, t)| {
            ShareAcknowledgeResponse::default()
                .with_throttle_time_ms(throttle)
                .with_error_code(e)
                .with_error_message(message)
                .with_responses(responses)
                .with_node_endpoints(endpoints)
                .with_unknown_tagged_fields(t)
        })
}

/// Configuration names: some that name hosts, some that do not, and arbitrary ones.
fn config_name() -> impl Strategy<Value = StrBytes> {
    prop_oneof![
        Just(StrBytes::from_static_str("advertised.listeners")),
        Just(StrBytes::from_static_str("controller.quorum.voters")),
        Just(StrBytes::from_static_str("confluent.metrics.reporter.bootstrap.servers")),
        Just(StrBytes::from_static_str("log.retention.ms")),
        text(30),
    ]
}

fn describe_configs(v: i16) -> impl Strategy<Value = DescribeConfigsResponse> {
    let flexible = v >= 4;
    let synonym =
        (config_name(), proptest::option::of(text(20)), any::<i8>(), tags(flexible)).prop_map(|(n, value, src, t)| {
            describe_configs_response::DescribeConfigsSynonym::default()
                .with_name(n)
                .with_value(value)
                .with_source(src)
                .with_unknown_tagged_fields(t)
        });
    let entry = (
        config_name(),
        proptest::option::of(text(30)),
        any::<(bool, i8, bool, i8)>(),
        vec(synonym, 0..3),
        proptest::option::of(text(10)),
        tags(flexible),
    )
        .prop_map(move |(n, value, (read_only, source, sensitive, kind), synonyms, doc, t)| {
            describe_configs_response::DescribeConfigsResourceResult::default()
                .with_name(n)
                .with_value(value)
                .with_read_only(read_only)
                .with_config_source(source)
                .with_is_sensitive(sensitive)
                .with_synonyms(synonyms)
                .with_config_type(if v >= 3 { kind } else { 0 })
                .with_documentation(if v >= 3 { doc } else { Some(StrBytes::default()) })
                .with_unknown_tagged_fields(t)
        });
    let result =
        (any::<i16>(), proptest::option::of(text(10)), any::<i8>(), text(10), vec(entry, 0..5), tags(flexible))
            .prop_map(|(e, message, kind, name, configs, t)| {
                describe_configs_response::DescribeConfigsResult::default()
                    .with_error_code(e)
                    .with_error_message(message)
                    .with_resource_type(kind)
                    .with_resource_name(name)
                    .with_configs(configs)
                    .with_unknown_tagged_fields(t)
            });
    (any::<i32>(), vec(result, 0..3), tags(flexible)).prop_map(|(throttle, results, t)| {
        DescribeConfigsResponse::default()
            .with_throttle_time_ms(throttle)
            .with_results(results)
            .with_unknown_tagged_fields(t)
    })
}

// ---- property 1: only addresses change, and they are the template's -----------------------------

fn frame_of<M: Response>(m: &M, version: i16, correlation_id: i32) -> Bytes {
    encode(&ResponseHeader::default().with_correlation_id(correlation_id), m, version, &[]).unwrap().freeze()
}

/// Rewrites `frame` and checks the promise: everything equal but addresses, addresses the template's.
fn assert_only_addresses_change(api: ApiKey, kind: Rewrite, version: i16, frame: Bytes) -> Result<(), TestCaseError> {
    let config = config();
    let names = names(&config);
    let out = rewrite::rewrite(kind, version, &frame, &names).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let (h_in, mut input) = decode_any(api as i16, version, &frame).map_err(TestCaseError::fail)?;
    let (h_out, mut output) = decode_any(api as i16, version, &out.to_bytes()).map_err(TestCaseError::fail)?;
    // (node id, rack, the name the template gives) of every original address, and (node id, rack,
    // host:port) of every rewritten one; all cleared, so that the rest must be equal.
    let mut before = Vec::new();
    visit_addresses(&mut input, version, |node_id, host, port, rack| {
        let expected = names.advertise(&Named { node_id, host, port: *port, rack }).unwrap();
        before.push((node_id, format!("{rack:?}"), expected.to_string()));
        (*host, *port) = (StrBytes::default(), 0);
    });
    let mut after = Vec::new();
    visit_addresses(&mut output, version, |node_id, host, port, rack: Rack<'_>| {
        after.push((node_id, format!("{rack:?}"), format!("{host}:{port}")));
        (*host, *port) = (StrBytes::default(), 0);
    });
    prop_assert_eq!(h_in, h_out);
    prop_assert_eq!(input, output, "fields other than addresses changed");
    prop_assert_eq!(before, after, "addresses are the template's, racks pass unchanged");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn metadata_rewrites_only_addresses((version, m) in (0..=13i16).prop_flat_map(|v| (Just(v), metadata(v)))) {
        assert_only_addresses_change(ApiKey::Metadata, Rewrite::Metadata, version, frame_of(&m, version, 7))?;
    }

    #[test]
    fn find_coordinator_rewrites_only_addresses((version, m) in (0..=6i16).prop_flat_map(|v| (Just(v), find_coordinator(v)))) {
        assert_only_addresses_change(ApiKey::FindCoordinator, Rewrite::FindCoordinator, version, frame_of(&m, version, 7))?;
    }

    #[test]
    fn describe_cluster_rewrites_only_addresses((version, m) in (0..=2i16).prop_flat_map(|v| (Just(v), describe_cluster(v)))) {
        assert_only_addresses_change(ApiKey::DescribeCluster, Rewrite::DescribeCluster, version, frame_of(&m, version, 7))?;
    }

    #[test]
    fn produce_rewrites_only_addresses((version, m) in (10..=13i16).prop_flat_map(|v| (Just(v), produce(v)))) {
        assert_only_addresses_change(ApiKey::Produce, Rewrite::Produce, version, frame_of(&m, version, 7))?;
    }

    #[test]
    fn fetch_rewrites_only_addresses((version, m) in (16..=18i16).prop_flat_map(|v| (Just(v), fetch(v)))) {
        assert_only_addresses_change(ApiKey::Fetch, Rewrite::Fetch, version, frame_of(&m, version, 7))?;
    }

    #[test]
    fn share_fetch_rewrites_only_addresses((version, m) in (1..=1i16).prop_flat_map(|v| (Just(v), share_fetch(v)))) {
        assert_only_addresses_change(ApiKey::ShareFetch, Rewrite::ShareFetch, version, frame_of(&m, version, 7))?;
    }

    #[test]
    fn share_acknowledge_rewrites_only_addresses((version, m) in (1..=1i16).prop_flat_map(|v| (Just(v), share_acknowledge(v)))) {
        assert_only_addresses_change(ApiKey::ShareAcknowledge, Rewrite::ShareAcknowledge, version, frame_of(&m, version, 7))?;
    }

    #[test]
    fn api_versions_changes_only_the_limited_ranges((version, m) in (0..=4i16).prop_flat_map(|v| (Just(v), api_versions(v)))) {
        let frame = frame_of(&m, version, 3);
        let config = config();
        let out = rewrite::rewrite(Rewrite::ApiVersions, version, &frame, &names(&config)).unwrap();
        let output = rewrite::decode::<ApiVersionsResponse>(out.to_bytes(), version).unwrap().message;
        let mut expected = m.clone();
        api_versions::limit(&mut expected.api_keys);
        prop_assert_eq!(output, expected);
    }

    #[test]
    fn describe_configs_hides_only_values_that_name_hosts((version, m) in (1..=4i16).prop_flat_map(|v| (Just(v), describe_configs(v)))) {
        let config = config();
        let frame = frame_of(&m, version, 7);
        let out = rewrite::rewrite(Rewrite::DescribeConfigs, version, &frame, &names(&config)).unwrap();
        let (h_in, mut expected) = decode_any(ApiKey::DescribeConfigs as i16, version, &frame).map_err(TestCaseError::fail)?;
        let (h_out, output) = decode_any(ApiKey::DescribeConfigs as i16, version, &out.to_bytes()).map_err(TestCaseError::fail)?;
        let ResponseKind::DescribeConfigs(expected_message) = &mut expected else { unreachable!() };
        let hides = expected_message.results.iter().flat_map(|r| &r.configs).any(|c| {
            rewrite::describe_configs::names_hosts(&c.name) || c.synonyms.iter().any(|s| rewrite::describe_configs::names_hosts(&s.name))
        });
        rewrite::describe_configs::redact(expected_message);
        prop_assert_eq!(h_in, h_out);
        prop_assert_eq!(output, expected);
        if !hides {
            prop_assert_eq!(out.pieces, [frame], "an answer with nothing to hide is the same bytes");
        }
    }

    // ---- property 2: no rewrite needed, the same bytes ------------------------------------------

    #[test]
    fn produce_and_fetch_without_endpoints_pass_as_the_same_bytes(
        (version, p) in (10..=13i16).prop_flat_map(|v| (Just(v), produce(v))),
        (fetch_version, f) in (16..=18i16).prop_flat_map(|v| (Just(v), fetch(v))),
    ) {
        let config = config();
        let names = names(&config);
        let p = p.with_node_endpoints(vec![]);
        let frame = frame_of(&p, version, 1);
        let out = rewrite::rewrite(Rewrite::Produce, version, &frame, &names).unwrap();
        prop_assert_eq!(out.pieces, [frame]);
        let f = f.with_node_endpoints(vec![]);
        let frame = frame_of(&f, fetch_version, 1);
        let out = rewrite::rewrite(Rewrite::Fetch, fetch_version, &frame, &names).unwrap();
        prop_assert_eq!(out.pieces, [frame]);
    }

    #[test]
    fn share_answers_without_endpoints_pass_as_the_same_bytes(
        (version, f) in (1..=1i16).prop_flat_map(|v| (Just(v), share_fetch(v))),
        a in share_acknowledge(1),
    ) {
        let config = config();
        let names = names(&config);
        let frame = frame_of(&f.with_node_endpoints(vec![]), version, 1);
        let out = rewrite::rewrite(Rewrite::ShareFetch, version, &frame, &names).unwrap();
        prop_assert_eq!(out.pieces, [frame]);
        let frame = frame_of(&a.with_node_endpoints(vec![]), 1, 1);
        let out = rewrite::rewrite(Rewrite::ShareAcknowledge, 1, &frame, &names).unwrap();
        prop_assert_eq!(out.pieces, [frame]);
    }

    #[test]
    fn find_coordinator_errors_and_brokerless_answers_pass_as_the_same_bytes(
        (version, m) in (0..=13i16).prop_flat_map(|v| (Just(v), metadata(v))),
        error in prop_oneof![Just(15i16), Just(14i16), Just(16i16)],
        fc_version in 0..=3i16,
    ) {
        let config = config();
        let names = names(&config);
        let m = m.with_brokers(vec![]);
        let frame = frame_of(&m, version, 1);
        prop_assert_eq!(rewrite::rewrite(Rewrite::Metadata, version, &frame, &names).unwrap().to_bytes(), frame);
        let fc = FindCoordinatorResponse::default().with_error_code(error).with_node_id(BrokerId(-1)).with_port(-1);
        let frame = frame_of(&fc, fc_version, 1);
        prop_assert_eq!(rewrite::rewrite(Rewrite::FindCoordinator, fc_version, &frame, &names).unwrap().to_bytes(), frame);
    }
}

// ---- property 3: chunk boundaries do not matter; with 2, unrewritten traffic is untouched --------

/// One exchange: a request that is forwarded, and its response, which is either forwarded
/// (arbitrary bytes) or a Metadata answer the gateway rewrites.
#[derive(Debug, Clone)]
enum Exchange {
    Forwarded { api_key: i16, version: i16, request_body: Vec<u8>, response_body: Vec<u8> },
    Metadata { version: i16, response: MetadataResponse },
}

fn exchange() -> impl Strategy<Value = Exchange> {
    // API keys that carry no address at any version, and vendor keys.
    let forwarded = (
        prop_oneof![Just(2i16), Just(8), Just(9), Just(11), Just(12), Just(19), Just(10_007)],
        0..10i16,
        vec(any::<u8>(), 0..200),
        vec(any::<u8>(), 0..3000),
    )
        .prop_map(|(api_key, version, request_body, response_body)| Exchange::Forwarded {
            api_key,
            version,
            request_body,
            response_body,
        });
    let metadata = (0..=13i16)
        .prop_flat_map(|v| (Just(v), metadata(v)))
        .prop_map(|(version, response)| Exchange::Metadata { version, response });
    prop_oneof![3 => forwarded, 1 => metadata]
}

/// Writes `data` in pieces of the given sizes (cycled), yielding between them.
async fn write_in_pieces(w: &mut (impl AsyncWriteExt + Unpin), data: &[u8], sizes: &[usize]) {
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at >= data.len() {
            break;
        }
        let end = (at + size.max(&1)).min(data.len());
        w.write_all(&data[at..end]).await.unwrap();
        w.flush().await.unwrap();
        tokio::task::yield_now().await;
        at = end;
    }
}

/// Runs `exchanges` through a proxy, both directions written in `pieces`; returns what the broker
/// received and what the client received.
async fn run_through_proxy(exchanges: &[Exchange], pieces: &[usize], pipe: usize) -> (Vec<u8>, Vec<u8>) {
    let config = config();
    let (client, proxy_client) = tokio::io::duplex(pipe);
    let (broker, proxy_broker) = tokio::io::duplex(pipe);
    let requests: Vec<u8> = exchanges
        .iter()
        .enumerate()
        .flat_map(|(i, e)| match e {
            Exchange::Forwarded { api_key, version, request_body, .. } => {
                request_frame(*api_key, *version, i as i32, request_body)
            }
            Exchange::Metadata { version, .. } => request_frame(3, *version, i as i32, &[]),
        })
        .collect();
    let responses: Vec<u8> = exchanges
        .iter()
        .enumerate()
        .flat_map(|(i, e)| match e {
            Exchange::Forwarded { response_body, .. } => {
                let mut f = ((response_body.len() + 4) as i32).to_be_bytes().to_vec();
                f.extend((i as i32).to_be_bytes());
                f.extend(response_body);
                f
            }
            Exchange::Metadata { version, response } => frame_of(response, *version, i as i32).to_vec(),
        })
        .collect();
    let (mut crd, mut cwr) = tokio::io::split(client);
    let (mut brd, mut bwr) = tokio::io::split(broker);
    let names = std::sync::Arc::new(names(&config));
    let limits = Limits { request: 1 << 20, response: 1 << 20, splice_min: 0 };
    let mut received = vec![0; requests.len()];
    let mut back = Vec::new();
    // All ends move at once: with small pipes, any end left waiting would stall the others.
    let client_sends = write_in_pieces(&mut cwr, &requests, pieces);
    let broker_side = async {
        brd.read_exact(&mut received).await.unwrap();
        write_in_pieces(&mut bwr, &responses, pieces).await;
        bwr.shutdown().await.unwrap(); // the proxy ends when the broker closes
    };
    let client_reads = async { crd.read_to_end(&mut back).await.unwrap() };
    let (result, _, _, _) =
        tokio::join!(proxy(proxy_client, proxy_broker, limits, names), client_sends, broker_side, client_reads);
    assert!(result.is_ok(), "{result:?}");
    (received, back)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn frames_split_anywhere_are_read_identically(
        exchanges in vec(exchange(), 1..8),
        pieces in vec(1..700usize, 1..6),
        pipe in prop_oneof![Just(3usize), Just(64), Just(65_536)],
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (sent, received) = rt.block_on(run_through_proxy(&exchanges, &[usize::MAX], 1 << 20));
        let (sent_chunked, received_chunked) = rt.block_on(run_through_proxy(&exchanges, &pieces, pipe));
        prop_assert_eq!(&sent_chunked, &sent);
        prop_assert_eq!(&received_chunked, &received);
        // Requests are always forwarded as the same bytes, and so are responses that need no rewrite.
        let config = config();
        let names = names(&config);
        let mut at = 0;
        for (i, e) in exchanges.iter().enumerate() {
            let len = i32::from_be_bytes(received[at..at + 4].try_into().unwrap()) as usize + 4;
            let got = &received[at..at + len];
            match e {
                Exchange::Forwarded { response_body, .. } => prop_assert_eq!(&got[8..], &response_body[..], "exchange {}", i),
                Exchange::Metadata { version, response } => {
                    let frame = frame_of(response, *version, i as i32);
                    let expected = rewrite::rewrite(Rewrite::Metadata, *version, &frame, &names).unwrap();
                    prop_assert_eq!(got, &expected.to_bytes()[..], "exchange {}", i);
                }
            }
            at += len;
        }
        prop_assert_eq!(at, received.len());
    }
}

// ---- property 4: arbitrary bytes never panic ----------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_the_frame_reader(bytes in vec(any::<u8>(), 0..200), limit in 0..300usize) {
        if let Ok(Peek::Ready(len)) = frame::frame_len(&bytes, MIN_REQUEST, limit) {
            let _ = frame::peek_request(&bytes, len);
        }
        let _ = frame::peek_correlation_id(&bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic_a_rewrite(body in vec(any::<u8>(), 0..400), kind in 0..kafka_gateway::fuzzing::KINDS.len(), version in -2..20i16) {
        let kind = kafka_gateway::fuzzing::KINDS[kind];
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend(&body);
        let config = config();
        // The gateway's path. (kafka-protocol's own decoder, used by the replay tool to display
        // cases, pre-allocates by lengths read from the wire and can abort on hostile input; the
        // gateway never decodes responses with it.)
        let _ = rewrite::rewrite(kind, version, &Bytes::from(frame), &names(&config));
    }

    #[test]
    fn arbitrary_streams_never_panic_a_session(to_broker in vec(any::<u8>(), 0..600), to_client in vec(any::<u8>(), 0..600)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let config = config();
            let names = std::sync::Arc::new(names(&config));
            let (mut client, proxy_client) = tokio::io::duplex(1 << 16);
            let (mut broker, proxy_broker) = tokio::io::duplex(1 << 16);
            client.write_all(&to_broker).await.unwrap();
            broker.write_all(&to_client).await.unwrap();
            drop((client, broker));
            let limits = Limits { request: 1 << 10, response: 1 << 10, splice_min: 0 };
            let _ = proxy(proxy_client, proxy_broker, limits, names).await;
        });
    }
}
