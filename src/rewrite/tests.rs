//! Rewrite tests: every rewritten API at every version, with a pure [`Advertise`].

use std::cell::RefCell;

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::fetch_response::{self, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::produce_response::{self, PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, DescribeClusterResponse, DescribeConfigsResponse, FetchResponse,
    FindCoordinatorResponse, MetadataResponse, ProduceResponse, ResponseHeader, ShareAcknowledgeResponse,
    ShareFetchResponse, TopicName,
};
use kafka_protocol::protocol::{Message, StrBytes};

use super::api_versions::{UNSUPPORTED_VERSION, fallback};
use super::*;
use crate::broker::HostPort;

/// Advertises broker N as `bN.example:19000+N` and remembers what it was shown.
#[derive(Default)]
struct Fake {
    seen: RefCell<Vec<(i32, String, i32, String)>>,
}

impl Advertise for Fake {
    fn advertise(&self, b: &Named<'_>) -> Result<HostPort, NameError> {
        let rack = match b.rack {
            Rack::Unreported => "?".to_owned(),
            Rack::Reported(r) => r.unwrap_or("-").to_owned(),
        };
        self.seen.borrow_mut().push((b.node_id, b.host.to_owned(), b.port, rack));
        Ok(HostPort { host: format!("b{}.example", b.node_id), port: 19000 + b.node_id as u16 })
    }
}

/// What a rewrite sends, for the tests that look only at bytes.
#[derive(Debug)]
struct Sent(Vec<Bytes>);

impl Sent {
    fn to_bytes(&self) -> Bytes {
        self.0.concat().into()
    }

    fn pieces(&self) -> &[Bytes] {
        &self.0
    }
}

/// [`super::rewrite`] of a frame the test owns.
fn rewrite(kind: Rewrite, version: i16, frame: Bytes, names: &dyn Advertise) -> Result<Sent, RewriteError> {
    super::rewrite(kind, version, &frame, names).map(|out| Sent(out.pieces))
}

fn frame<M: Response>(message: &M, version: i16, correlation_id: i32) -> Bytes {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    encode(&header, message, version, &[]).unwrap().freeze()
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

#[test]
fn metadata_brokers_are_rewritten_at_every_version() {
    for version in 0..=MetadataResponse::VERSIONS.max {
        let brokers = (1..=3)
            .map(|n| {
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(n))
                    .with_host(s(&format!("10.0.0.{n}")))
                    .with_port(9092)
                    .with_rack((version >= 1).then(|| s(&format!("rack-{n}"))))
            })
            .collect();
        let mut input = MetadataResponse::default().with_brokers(brokers);
        if version >= 2 {
            input = input.with_cluster_id(Some(s("cluster-a")));
        }
        let fake = Fake::default();
        let out = rewrite(Rewrite::Metadata, version, frame(&input, version, 42), &fake).unwrap().to_bytes();
        let Decoded { header, message: output, .. } = decode::<MetadataResponse>(out, version).unwrap();
        assert_eq!(header.correlation_id, 42);
        let mut expected = input.clone();
        for b in &mut expected.brokers {
            b.host = s(&format!("b{}.example", b.node_id.0));
            b.port = 19000 + b.node_id.0;
        }
        assert_eq!(output, expected, "v{version}");
        let racks: Vec<_> = fake.seen.borrow().iter().map(|x| x.3.clone()).collect();
        let want = if version == 0 { vec!["?"; 3] } else { vec!["rack-1", "rack-2", "rack-3"] };
        assert_eq!(racks, want, "v{version}");
        assert_eq!(fake.seen.borrow()[0].1, "10.0.0.1");
    }
}

#[test]
fn find_coordinator_top_level_and_batched_forms() {
    for version in 0..=FindCoordinatorResponse::VERSIONS.max {
        let input = if version < 4 {
            FindCoordinatorResponse::default().with_node_id(BrokerId(2)).with_host(s("10.0.0.2")).with_port(9092)
        } else {
            FindCoordinatorResponse::default().with_coordinators(vec![
                Coordinator::default()
                    .with_key(s("group-a"))
                    .with_node_id(BrokerId(2))
                    .with_host(s("10.0.0.2"))
                    .with_port(9092),
                // An error entry keeps node -1, empty host, port -1.
                Coordinator::default()
                    .with_key(s("group-b"))
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(15),
            ])
        };
        let out =
            rewrite(Rewrite::FindCoordinator, version, frame(&input, version, 1), &Fake::default()).unwrap().to_bytes();
        let output = decode::<FindCoordinatorResponse>(out, version).unwrap().message;
        if version < 4 {
            assert_eq!((output.host.as_str(), output.port), ("b2.example", 19002), "v{version}");
        } else {
            assert_eq!(output.host.as_str(), "", "v{version}: the old fields stay empty");
            assert_eq!((output.coordinators[0].host.as_str(), output.coordinators[0].port), ("b2.example", 19002));
            assert_eq!(output.coordinators[1], input.coordinators[1], "error entries stay as they are");
        }
    }
}

#[test]
fn find_coordinator_errors_pass_unchanged() {
    for version in 0..4 {
        let input = FindCoordinatorResponse::default().with_error_code(15).with_node_id(BrokerId(-1)).with_port(-1);
        let fake = Fake::default();
        let out = rewrite(Rewrite::FindCoordinator, version, frame(&input, version, 1), &fake).unwrap().to_bytes();
        assert_eq!(out, frame(&input, version, 1));
        assert!(fake.seen.borrow().is_empty());
    }
}

#[test]
fn describe_cluster_brokers_are_rewritten() {
    for version in 0..=DescribeClusterResponse::VERSIONS.max {
        let input = DescribeClusterResponse::default().with_cluster_id(s("c")).with_brokers(vec![
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(7))
                .with_host(s("10.0.0.7"))
                .with_port(9092)
                .with_rack(Some(s("r"))),
        ]);
        let out =
            rewrite(Rewrite::DescribeCluster, version, frame(&input, version, 9), &Fake::default()).unwrap().to_bytes();
        let output = decode::<DescribeClusterResponse>(out, version).unwrap().message;
        assert_eq!((output.brokers[0].host.as_str(), output.brokers[0].port), ("b7.example", 19007));
        assert_eq!(output.brokers[0].rack.as_deref(), Some("r"));
        assert_eq!(output.cluster_id.as_str(), "c");
    }
}

fn config(name: &str, value: Option<&str>, synonyms: &[(&str, &str)]) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(s(name))
        .with_value(value.map(s))
        .with_config_source(2)
        .with_synonyms(
            synonyms
                .iter()
                .map(|(n, v)| DescribeConfigsSynonym::default().with_name(s(n)).with_value(Some(s(v))).with_source(4))
                .collect(),
        )
        .with_config_type(2)
        .with_documentation(Some(s("doc")))
}

#[test]
fn describe_configs_values_that_name_hosts_are_answered_as_sensitive() {
    let broker = DescribeConfigsResult::default().with_resource_type(4).with_resource_name(s("1")).with_configs(vec![
        config(
            "advertised.listeners",
            Some("INTERNAL://10.0.0.11:9092"),
            &[("advertised.listeners", "INTERNAL://10.0.0.11:9092")],
        ),
        config("log.retention.ms", Some("1000"), &[("log.retention.hours", "168")]),
        config("listeners", None, &[]),
        config("confluent.metrics.reporter.bootstrap.servers", Some("10.0.0.12:9092"), &[]),
        config("num.io.threads", Some("8"), &[]),
    ]);
    let topic = DescribeConfigsResult::default()
        .with_resource_type(2)
        .with_resource_name(s("orders"))
        .with_configs(vec![config("cleanup.policy", Some("delete"), &[])]);
    for version in 1..=DescribeConfigsResponse::VERSIONS.max {
        let input = DescribeConfigsResponse::default()
            .with_throttle_time_ms(3)
            .with_results(vec![topic.clone(), broker.clone()]);
        let out =
            rewrite(Rewrite::DescribeConfigs, version, frame(&input, version, 4), &Fake::default()).unwrap().to_bytes();
        assert!(!out.windows(4).any(|w| w == b"10.0"), "v{version}: an upstream host is left");
        let Decoded { header, message: output, trailing } = decode::<DescribeConfigsResponse>(out, version).unwrap();
        assert_eq!((header.correlation_id, trailing.len()), (4, 0));
        let configs = &output.results[1].configs;
        assert_eq!((configs[0].value.as_ref(), configs[0].is_sensitive), (None, true), "v{version}");
        assert_eq!(configs[0].synonyms[0].value, None);
        assert_eq!(configs[1].value.as_deref(), Some("1000"));
        assert_eq!(configs[1].synonyms[0].value.as_deref(), Some("168"));
        assert_eq!((configs[2].value.as_ref(), configs[2].is_sensitive), (None, true));
        assert_eq!((configs[3].value.as_ref(), configs[3].is_sensitive), (None, true));
        // What the version carries of the input (v1-v2 have no config_type or documentation), redacted.
        let mut expected = decode::<DescribeConfigsResponse>(frame(&input, version, 4), version).unwrap().message;
        describe_configs::redact(&mut expected);
        assert_eq!(output, expected, "v{version}: nothing else changes");
    }
}

#[test]
fn describe_configs_v0_is_walked_in_its_own_layout() {
    // v0 (before Kafka 4.0): is_default instead of config_source, no synonyms, i16 strings.
    fn v0(entries: &[(&str, Option<&str>, bool)]) -> Bytes {
        let mut f = vec![0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0xff, 0xff, 4, 0, 1, b'1'];
        f.extend_from_slice(&(entries.len() as i32).to_be_bytes());
        for (name, value, sensitive) in entries {
            f.extend_from_slice(&(name.len() as i16).to_be_bytes());
            f.extend_from_slice(name.as_bytes());
            match value {
                Some(v) => {
                    f.extend_from_slice(&(v.len() as i16).to_be_bytes());
                    f.extend_from_slice(v.as_bytes());
                }
                None => f.extend_from_slice(&[0xff, 0xff]),
            }
            f.extend_from_slice(&[1, 0, u8::from(*sensitive)]);
        }
        let size = (f.len() - 4) as i32;
        f[..4].copy_from_slice(&size.to_be_bytes());
        f.into()
    }
    let input = v0(&[("num.io.threads", Some("8"), false), ("listeners", Some("PLAINTEXT://10.0.0.11:9092"), false)]);
    let out = rewrite(Rewrite::DescribeConfigs, 0, input, &Fake::default()).unwrap().to_bytes();
    assert_eq!(out, v0(&[("num.io.threads", Some("8"), false), ("listeners", None, true)]));
}

#[test]
fn describe_configs_without_hosts_is_the_same_frame_and_a_cut_answer_is_an_error() {
    let input = DescribeConfigsResponse::default().with_results(vec![
        DescribeConfigsResult::default().with_resource_name(s("orders")).with_configs(vec![config(
            "cleanup.policy",
            Some("delete"),
            &[("log.cleanup.policy", "delete")],
        )]),
    ]);
    for version in 1..=DescribeConfigsResponse::VERSIONS.max {
        let f = frame(&input, version, 1);
        let out = rewrite(Rewrite::DescribeConfigs, version, f.clone(), &Fake::default()).unwrap();
        assert_eq!(out.pieces(), std::slice::from_ref(&f), "v{version}");
        let cut = f.slice(..f.len() - 3);
        assert!(rewrite(Rewrite::DescribeConfigs, version, cut, &Fake::default()).is_err(), "v{version}");
    }
}

#[test]
fn trailing_bytes_are_carried_through_and_truncation_is_an_error() {
    let input = MetadataResponse::default().with_brokers(vec![
        MetadataResponseBroker::default().with_node_id(BrokerId(1)).with_host(s("10.0.0.1")).with_port(9092),
    ]);
    let mut long = frame(&input, 12, 1).to_vec();
    long.extend([0, 7]);
    let out = rewrite(Rewrite::Metadata, 12, long.into(), &Fake::default()).unwrap().to_bytes();
    let d = decode::<MetadataResponse>(out, 12).unwrap();
    assert_eq!(d.message.brokers[0].host.as_str(), "b1.example");
    assert_eq!(&d.trailing[..], [0, 7]);
    // Cut inside brokers[], which the gateway reads: an error, never a guess.
    let full = frame(&input, 12, 1);
    for cut in [9, 15, 20, 30] {
        let r = rewrite(Rewrite::Metadata, 12, full.slice(..cut), &Fake::default());
        assert!(matches!(r, Err(RewriteError::Malformed { .. })), "cut at {cut}: {r:?}");
    }
}

fn versions_response(keys: &[(i16, i16, i16)]) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(
        keys.iter()
            .map(|&(k, min, max)| ApiVersion::default().with_api_key(k).with_min_version(min).with_max_version(max))
            .collect(),
    )
}

#[test]
fn api_versions_are_capped_removed_or_left_alone() {
    let broker = [
        (0, 3, 14),     // Produce from a future broker: capped at what the gateway decodes
        (1, 4, 19),     // Fetch likewise
        (3, 0, 14),     // Metadata from a future broker: capped at what we decode
        (17, 0, 1),     // SaslHandshake: untouched (v0's bare tokens are followed)
        (18, 0, 5),     // ApiVersions
        (55, 0, 2),     // DescribeQuorum: capped at 1
        (78, 0, 2),     // ShareFetch from a future broker: v0 (4.0's early access) and v2 cut
        (79, 1, 1),     // ShareAcknowledge: rewritten, kept
        (52, 0, 2),     // Vote, a controller API: removed
        (89, 0, 0),     // unknown to the gateway: untouched
        (10_000, 0, 3), // vendor key: untouched
        (60, 3, 4),     // DescribeCluster only at versions we cannot rewrite: removed
        (32, 0, 9),     // DescribeConfigs from a future broker: capped
    ];
    for version in 0..=ApiVersionsResponse::VERSIONS.max {
        let input = versions_response(&broker).with_throttle_time_ms(if version >= 1 { 5 } else { 0 });
        let out =
            rewrite(Rewrite::ApiVersions, version, frame(&input, version, 3), &Fake::default()).unwrap().to_bytes();
        let output = decode::<ApiVersionsResponse>(out, version).unwrap().message;
        let got: Vec<_> = output.api_keys.iter().map(|k| (k.api_key, k.min_version, k.max_version)).collect();
        assert_eq!(
            got,
            [
                (0, 3, 13),
                (1, 4, 18),
                (3, 0, 13),
                (17, 0, 1),
                (18, 0, 4),
                (55, 0, 1),
                (78, 1, 1),
                (79, 1, 1),
                (89, 0, 0),
                (10_000, 0, 3),
                (32, 0, 4)
            ],
            "v{version}"
        );
        assert_eq!(output.throttle_time_ms, input.throttle_time_ms);
    }
}

#[test]
fn kip_511_fallback_from_the_broker_is_read_in_the_v0_layout() {
    // The client asked with v3; the broker does not know v3 and answers error 35 in the v0 layout.
    let input = versions_response(&[(18, 0, 2), (0, 0, 14)]).with_error_code(UNSUPPORTED_VERSION);
    let out = rewrite(Rewrite::ApiVersions, 3, frame(&input, 0, 5), &Fake::default()).unwrap().to_bytes();
    let output = decode::<ApiVersionsResponse>(out, 0).unwrap().message;
    assert_eq!(output.error_code, UNSUPPORTED_VERSION);
    let got: Vec<_> = output.api_keys.iter().map(|k| (k.api_key, k.max_version)).collect();
    assert_eq!(got, [(18, 2), (0, 13)]);
}

#[test]
fn an_error_35_answer_in_a_foreign_layout_passes_as_it_came() {
    // librdkafka's mock cluster answers a v3 request with error 35, a one-byte count and no tags.
    let body = [0, 0, 0, 9, 0, 0, 0, 1, 0, 35, 1, 0, 18, 0, 0, 0, 2, 0, 0, 0, 0];
    let mut f = body.to_vec();
    let size = (f.len() - 4) as i32;
    f[..4].copy_from_slice(&size.to_be_bytes());
    let frame = Bytes::from(f);
    assert_eq!(rewrite(Rewrite::ApiVersions, 3, frame.clone(), &Fake::default()).unwrap().to_bytes(), frame);
}

#[test]
fn the_gateways_own_fallback_names_the_newest_version_it_knows() {
    let Decoded { header, message: output, .. } = decode::<ApiVersionsResponse>(fallback(77).freeze(), 0).unwrap();
    assert_eq!(header.correlation_id, 77);
    assert_eq!(output.error_code, UNSUPPORTED_VERSION);
    assert_eq!(output.api_keys.len(), 1);
    assert_eq!((output.api_keys[0].api_key, output.api_keys[0].max_version), (18, ApiVersionsResponse::VERSIONS.max));
}

#[test]
fn plans_follow_the_limits() {
    assert_eq!(plan(3, 12), Ok(Action::Rewrite(Rewrite::Metadata)));
    assert_eq!(plan(10, 4), Ok(Action::Rewrite(Rewrite::FindCoordinator)));
    assert_eq!(plan(60, 0), Ok(Action::Rewrite(Rewrite::DescribeCluster)));
    assert_eq!(plan(32, 0), Ok(Action::Rewrite(Rewrite::DescribeConfigs)));
    assert_eq!(plan(32, 4), Ok(Action::Rewrite(Rewrite::DescribeConfigs)));
    assert_eq!(plan(18, 3), Ok(Action::Rewrite(Rewrite::ApiVersions)));
    assert_eq!(plan(18, 5), Ok(Action::ApiVersionsFallback));
    assert_eq!(plan(0, 9), Ok(Action::Forward));
    assert_eq!(plan(0, 10), Ok(Action::Rewrite(Rewrite::Produce)));
    assert_eq!(plan(1, 15), Ok(Action::Forward));
    assert_eq!(plan(1, 16), Ok(Action::Rewrite(Rewrite::Fetch)));
    assert_eq!(plan(78, 1), Ok(Action::Rewrite(Rewrite::ShareFetch)));
    assert_eq!(plan(79, 1), Ok(Action::Rewrite(Rewrite::ShareAcknowledge)));
    assert_eq!(plan(2, 99), Ok(Action::Forward), "no address in ListOffsets at any version");
    assert_eq!(plan(89, 0), Ok(Action::Forward));
    assert_eq!(plan(-3, 0), Ok(Action::Forward));
    assert_eq!(plan(10_010, 7), Ok(Action::Forward));
    assert_eq!(plan(17, 0), Ok(Action::Forward), "SaslHandshake v0: its bare tokens are followed by the session");
    for (key, version) in
        [(0, 14), (1, 19), (3, 14), (55, 2), (78, 0), (78, 2), (79, 2), (60, 3), (10, 7), (32, 5), (52, 0), (82, 0)]
    {
        let err = plan(key, version).unwrap_err();
        assert_eq!((err.api_key, err.api_version), (key, version));
    }
    assert_eq!(
        plan(55, 2).unwrap_err().to_string(),
        "DescribeQuorum v2 is refused: its response could carry broker addresses the gateway cannot rewrite (allowed: v0-v1; v2+ responses carry the controllers' listeners)"
    );
    assert_eq!(api_name(ApiKey::DescribeCluster as i16), "DescribeCluster");
}

fn produce_response(version: i16, endpoints: bool) -> ProduceResponse {
    let partition = PartitionProduceResponse::default().with_index(2).with_error_code(6).with_base_offset(-1);
    let topic =
        TopicProduceResponse::default().with_name(TopicName(s("orders"))).with_partition_responses(vec![partition]);
    let mut response = ProduceResponse::default().with_responses(vec![topic]);
    if version >= 13 {
        response.responses[0].name = TopicName(s(""));
        response.responses[0].topic_id = uuid_for_tests();
    }
    if endpoints {
        response.node_endpoints = vec![
            produce_response::NodeEndpoint::default()
                .with_node_id(BrokerId(3))
                .with_host(s("10.0.0.3"))
                .with_port(9092)
                .with_rack(Some(s("us-west-2b"))),
        ];
    }
    response
}

fn uuid_for_tests() -> uuid::Uuid {
    uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef)
}

#[test]
fn produce_node_endpoints_are_rewritten_at_v10_to_v13() {
    for version in 10..=ProduceResponse::VERSIONS.max {
        let input = produce_response(version, true);
        let fake = Fake::default();
        let out = rewrite(Rewrite::Produce, version, frame(&input, version, 4), &fake).unwrap().to_bytes();
        let output = decode::<ProduceResponse>(out, version).unwrap().message;
        let mut expected = input.clone();
        expected.node_endpoints[0].host = s("b3.example");
        expected.node_endpoints[0].port = 19003;
        assert_eq!(output, expected, "v{version}");
        assert_eq!(fake.seen.borrow()[0].3, "us-west-2b", "the rack comes with the endpoint");
    }
}

fn fetch_response(endpoints: bool, records: &[u8]) -> FetchResponse {
    let partition = PartitionData::default()
        .with_partition_index(1)
        .with_high_watermark(100)
        .with_records(Some(Bytes::copy_from_slice(records)))
        .with_aborted_transactions(Some(vec![fetch_response::AbortedTransaction::default().with_first_offset(7)]))
        .with_unknown_tagged_field(9, Bytes::from_static(b"kept"));
    let topic = FetchableTopicResponse::default().with_topic_id(uuid_for_tests()).with_partitions(vec![partition]);
    let mut response = FetchResponse::default().with_responses(vec![topic]).with_session_id(77);
    if endpoints {
        response.node_endpoints = (1..=2)
            .map(|n| {
                fetch_response::NodeEndpoint::default()
                    .with_node_id(BrokerId(n))
                    .with_host(s(&format!("10.0.0.{n}")))
                    .with_port(9092)
            })
            .collect();
        response.unknown_tagged_fields.insert(5, Bytes::from_static(b"later tag"));
    }
    response
}

#[test]
fn fetch_node_endpoints_are_rewritten_at_v16_to_v18_without_touching_records() {
    let records: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    for version in 16..=FetchResponse::VERSIONS.max {
        let input = fetch_response(true, &records);
        let original = frame(&input, version, 8);
        let out = rewrite(Rewrite::Fetch, version, original.clone(), &Fake::default()).unwrap();
        let pieces = out.pieces();
        assert_eq!(pieces.len(), 3, "v{version}: size, the untouched middle, the new tags");
        // The middle piece is the original frame's memory, records included: nothing was copied.
        assert_eq!(pieces[1].as_ptr(), original[4..].as_ptr(), "v{version}");
        let output = decode::<FetchResponse>(out.to_bytes(), version).unwrap().message;
        let mut expected = input.clone();
        for e in &mut expected.node_endpoints {
            e.host = s(&format!("b{}.example", e.node_id.0));
            e.port = 19000 + e.node_id.0;
        }
        assert_eq!(output, expected, "v{version}");
    }
}

#[test]
fn fetch_without_node_endpoints_passes_as_the_same_bytes() {
    for version in 16..=FetchResponse::VERSIONS.max {
        let original = frame(&fetch_response(false, b"records"), version, 8);
        let fake = Fake::default();
        let out = rewrite(Rewrite::Fetch, version, original.clone(), &fake).unwrap();
        assert_eq!(out.pieces(), [original], "v{version}");
        assert!(fake.seen.borrow().is_empty());
    }
}

#[test]
fn a_truncated_fetch_response_is_an_error() {
    let full = frame(&fetch_response(true, b"records"), 16, 8);
    for cut in [5, 20, full.len() / 2, full.len() - 1] {
        let r = rewrite(Rewrite::Fetch, 16, full.slice(..cut), &Fake::default());
        assert!(matches!(r, Err(RewriteError::Malformed { .. })), "cut at {cut}: {r:?}");
    }
}

#[test]
fn produce_without_node_endpoints_passes_as_the_same_bytes() {
    for version in 10..=ProduceResponse::VERSIONS.max {
        let original = frame(&produce_response(version, false), version, 4);
        let out = rewrite(Rewrite::Produce, version, original.clone(), &Fake::default()).unwrap();
        assert_eq!(out.pieces(), [original], "v{version}");
    }
}

#[test]
fn default_valued_tags_of_api_versions_go_out_in_kafkas_form() {
    // What tansu 0.6 sends at v3: every tagged field, defaults included; librdkafka < 2.3 fails on it.
    let input = versions_response(&[(3, 0, 12)]).with_throttle_time_ms(9);
    let mut plain = frame(&input, 3, 5).to_vec();
    assert_eq!(plain.pop(), Some(0), "no tags");
    let mut explicit = plain.clone();
    explicit.extend([4, 0, 1, 1, 1, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 1, 1, 3, 1, 0]);
    let size = (explicit.len() - 4) as i32;
    explicit[..4].copy_from_slice(&size.to_be_bytes());
    let out = rewrite(Rewrite::ApiVersions, 3, Bytes::from(explicit), &Fake::default()).unwrap().to_bytes();
    assert_eq!(out, frame(&input, 3, 5), "the same answer, without the default-valued tags");
    // A non-default value stays, byte for byte.
    let with_features = input.clone().with_finalized_features_epoch(7);
    let original = frame(&with_features, 3, 5);
    assert_eq!(rewrite(Rewrite::ApiVersions, 3, original.clone(), &Fake::default()).unwrap().to_bytes(), original);
}

#[test]
fn fetch_max_version_caps_fetch_in_plans_and_api_versions() {
    let caps = Caps { fetch_max: 15 };
    assert_eq!(caps.plan(1, 15), Ok(Action::Forward), "below v16 a Fetch answer streams");
    let refused = caps.plan(1, 16).unwrap_err();
    assert_eq!((refused.api_key, refused.api_version), (1, 16));
    assert!(refused.to_string().contains("allowed: v0-v15; capped by gateway.fetch_max_version"), "{refused}");
    assert_eq!(caps.plan(0, 13), Ok(Action::Rewrite(Rewrite::Produce)), "Produce is not capped");
    let input = versions_response(&[(1, 4, 18), (0, 3, 13)]);
    for version in 0..=ApiVersionsResponse::VERSIONS.max {
        let f = frame(&input, version, 3);
        let out = caps.rewrite(Rewrite::ApiVersions, version, &f, &Fake::default()).unwrap().to_bytes();
        let output = decode::<ApiVersionsResponse>(out, version).unwrap().message;
        let got: Vec<_> = output.api_keys.iter().map(|k| (k.api_key, k.min_version, k.max_version)).collect();
        assert_eq!(got, [(1, 4, 15), (0, 3, 13)], "v{version}");
    }
    // A cap below every version the broker offers removes Fetch rather than offer none.
    assert_eq!(Caps { fetch_max: 3 }.limited(1, 4, 18), None);
    // The default is the table: nothing capped.
    assert_eq!(Caps::default().allowed(ApiKey::Fetch), Some((0, api_versions::FETCH_MAX)));
}

fn share_fetch_response(endpoints: bool, records: &[u8]) -> ShareFetchResponse {
    use kafka_protocol::messages::share_fetch_response as sf;
    let moved = sf::PartitionData::default()
        .with_partition_index(0)
        .with_error_code(6)
        .with_error_message(Some(s("not the leader")))
        .with_current_leader(sf::LeaderIdAndEpoch::default().with_leader_id(2).with_leader_epoch(4));
    let with_records = sf::PartitionData::default()
        .with_partition_index(1)
        .with_records(Some(Bytes::copy_from_slice(records)))
        .with_acquired_records(vec![
            sf::AcquiredRecords::default().with_first_offset(0).with_last_offset(9).with_delivery_count(1),
        ])
        .with_unknown_tagged_field(9, Bytes::from_static(b"kept"));
    let topic = sf::ShareFetchableTopicResponse::default()
        .with_topic_id(uuid_for_tests())
        .with_partitions(vec![moved, with_records]);
    let mut response = ShareFetchResponse::default()
        .with_acquisition_lock_timeout_ms(30_000)
        .with_responses(vec![topic])
        .with_unknown_tagged_field(5, Bytes::from_static(b"later tag"));
    if endpoints {
        response.node_endpoints = (1..=2)
            .map(|n| {
                sf::NodeEndpoint::default()
                    .with_node_id(BrokerId(n))
                    .with_host(s(&format!("10.0.0.{n}")))
                    .with_port(9092)
                    .with_rack(Some(s("us-west-2c")))
            })
            .collect();
    }
    response
}

fn share_acknowledge_response(endpoints: bool) -> ShareAcknowledgeResponse {
    use kafka_protocol::messages::share_acknowledge_response as sa;
    let partition = sa::PartitionData::default()
        .with_partition_index(3)
        .with_error_code(6)
        .with_current_leader(sa::LeaderIdAndEpoch::default().with_leader_id(1).with_leader_epoch(2));
    let topic =
        sa::ShareAcknowledgeTopicResponse::default().with_topic_id(uuid_for_tests()).with_partitions(vec![partition]);
    let mut response = ShareAcknowledgeResponse::default().with_responses(vec![topic]);
    if endpoints {
        response.node_endpoints =
            vec![sa::NodeEndpoint::default().with_node_id(BrokerId(1)).with_host(s("10.0.0.1")).with_port(9092)];
    }
    response
}

#[test]
fn share_fetch_node_endpoints_are_rewritten_without_touching_records() {
    let records: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    for version in ShareFetchResponse::VERSIONS.min..=ShareFetchResponse::VERSIONS.max {
        let input = share_fetch_response(true, &records);
        let original = frame(&input, version, 8);
        let fake = Fake::default();
        let out = rewrite(Rewrite::ShareFetch, version, original.clone(), &fake).unwrap();
        let pieces = out.pieces();
        assert_eq!(pieces.len(), 3, "v{version}: size, the untouched middle, the new endpoints and tags");
        // The middle piece is the original frame's memory, records included: nothing was copied.
        assert_eq!(pieces[1].as_ptr(), original[4..].as_ptr(), "v{version}");
        assert!(pieces[1].windows(records.len()).any(|w| w == records), "the records are in the untouched piece");
        let output = decode::<ShareFetchResponse>(out.to_bytes(), version).unwrap().message;
        let mut expected = input.clone();
        for e in &mut expected.node_endpoints {
            e.host = s(&format!("b{}.example", e.node_id.0));
            e.port = 19000 + e.node_id.0;
        }
        assert_eq!(output, expected, "v{version}");
        assert_eq!(fake.seen.borrow()[1], (2, "10.0.0.2".to_owned(), 9092, "us-west-2c".to_owned()));
    }
}

#[test]
fn share_acknowledge_node_endpoints_are_rewritten() {
    for version in ShareAcknowledgeResponse::VERSIONS.min..=ShareAcknowledgeResponse::VERSIONS.max {
        let input = share_acknowledge_response(true);
        let out = rewrite(Rewrite::ShareAcknowledge, version, frame(&input, version, 8), &Fake::default())
            .unwrap()
            .to_bytes();
        let output = decode::<ShareAcknowledgeResponse>(out, version).unwrap().message;
        let mut expected = input.clone();
        (expected.node_endpoints[0].host, expected.node_endpoints[0].port) = (s("b1.example"), 19001);
        assert_eq!(output, expected, "v{version}");
    }
}

#[test]
fn share_answers_without_endpoints_pass_as_the_same_bytes_and_cut_ones_are_errors() {
    let fetch = frame(&share_fetch_response(false, b"records"), 1, 8);
    let ack = frame(&share_acknowledge_response(false), 1, 8);
    for (kind, original) in [(Rewrite::ShareFetch, fetch), (Rewrite::ShareAcknowledge, ack)] {
        let fake = Fake::default();
        let out = rewrite(kind, 1, original.clone(), &fake).unwrap();
        assert_eq!(out.pieces(), std::slice::from_ref(&original), "{kind:?}");
        assert!(fake.seen.borrow().is_empty());
    }
    let full = frame(&share_fetch_response(true, b"records"), 1, 8);
    for cut in [5, 20, full.len() / 2, full.len() - 2] {
        let r = rewrite(Rewrite::ShareFetch, 1, full.slice(..cut), &Fake::default());
        assert!(matches!(r, Err(RewriteError::Malformed { .. })), "cut at {cut}: {r:?}");
    }
}
