//! protocol-fixtures/: every case replays through the gateway's rewrite path, the cases cover every
//! rewritten API and version, the replay command fails on a wrong expectation, and what the gateway
//! records from a live cluster replays.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use kafka_gateway::Config;
use kafka_gateway::broker::HostPort;
use kafka_gateway::fixture::{self, Case, Expect};
use kafka_gateway::upstream::{Connection, Link};
use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest, MetadataRequest, MetadataResponse};
use kafka_protocol::protocol::StrBytes;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_kafka-gateway");

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("protocol-fixtures")
}

fn config() -> Config {
    Config::load(Some(&fixtures().join("gateway.toml")), &[]).unwrap()
}

fn cases() -> Vec<Case> {
    fixture::find(&[fixtures()]).unwrap().iter().map(|p| Case::load(p).unwrap()).collect()
}

#[test]
fn every_fixture_replays_through_the_rewrite_path() {
    let config = config();
    let cases = cases();
    assert!(cases.len() >= 100, "{} cases", cases.len());
    let failed: Vec<String> =
        cases.iter().map(|c| fixture::replay(c, &config.groups[0])).filter(|r| !r.passed).map(|r| r.render()).collect();
    assert!(failed.is_empty(), "{}", failed.join(""));
}

#[test]
fn the_fixtures_cover_every_rewritten_api_and_version() {
    let cases = cases();
    let have = |api: ApiKey, version: i16, pred: &dyn Fn(&Case) -> bool| {
        cases.iter().any(|c| c.sidecar.api_key == api as i16 && c.sidecar.api_version == version && pred(c))
    };
    let any = |_: &Case| true;
    let rewritten = |c: &Case| c.sidecar.expect == Expect::Rewritten;
    let real = |c: &Case| !c.sidecar.source.starts_with("generated");
    let mut missing = BTreeSet::new();
    for v in 0..=13 {
        if !have(ApiKey::Metadata, v, &rewritten) {
            missing.insert(format!("Metadata v{v}"));
        }
    }
    for v in 0..=12 {
        if !have(ApiKey::Metadata, v, &|c| real(c) && rewritten(c)) {
            missing.insert(format!("Metadata v{v} from a real broker"));
        }
    }
    for v in 0..=6 {
        if !have(ApiKey::FindCoordinator, v, &rewritten) {
            missing.insert(format!("FindCoordinator v{v}"));
        }
    }
    for v in 4..=6 {
        if !have(ApiKey::FindCoordinator, v, &|c| real(c) && rewritten(c)) {
            missing.insert(format!("FindCoordinator v{v} (batched) from a real broker"));
        }
    }
    let error_answer = |c: &Case| c.frame.len() > 10 && c.sidecar.expect == Expect::Unchanged;
    if !(0..=3).any(|v| have(ApiKey::FindCoordinator, v, &error_answer)) {
        missing.insert("a FindCoordinator error answer".into());
    }
    for v in 0..=2 {
        if !have(ApiKey::DescribeCluster, v, &rewritten) {
            missing.insert(format!("DescribeCluster v{v}"));
        }
    }
    for v in 1..=4 {
        if !have(ApiKey::DescribeConfigs, v, &rewritten) {
            missing.insert(format!("DescribeConfigs v{v} with values that name hosts"));
        }
        if !have(ApiKey::DescribeConfigs, v, &real) {
            missing.insert(format!("DescribeConfigs v{v} from a real broker"));
        }
    }
    for v in 0..=4 {
        if !have(ApiKey::ApiVersions, v, &any) {
            missing.insert(format!("ApiVersions v{v}"));
        }
    }
    let kip_511 = |c: &Case| c.frame.get(8..10) == Some(&[0, 35][..]);
    if !(0..=5).any(|v| have(ApiKey::ApiVersions, v, &kip_511)) {
        missing.insert("the KIP-511 ApiVersions fallback".into());
    }
    if !(10..=13).any(|v| have(ApiKey::Produce, v, &|c| real(c) && rewritten(c))) {
        missing.insert("Produce v10+ with node endpoints from a real broker".into());
    }
    if !(16..=18).any(|v| have(ApiKey::Fetch, v, &|c| real(c) && rewritten(c))) {
        missing.insert("Fetch v16+ with node endpoints from a real broker".into());
    }
    // Share groups: every version kafka-protocol knows (v1), with endpoints and without.
    for key in [ApiKey::ShareFetch, ApiKey::ShareAcknowledge] {
        for v in key.valid_versions().min..=key.valid_versions().max {
            if !have(key, v, &rewritten) {
                missing.insert(format!("{key:?} v{v} with node endpoints"));
            }
        }
    }
    if !have(ApiKey::ShareFetch, 1, &|c| c.sidecar.expect == Expect::Unchanged) {
        missing.insert("ShareFetch v1 without node endpoints".into());
    }
    assert!(missing.is_empty(), "no case for: {missing:?}");
}

#[test]
fn the_replay_command_passes_over_all_fixtures() {
    let out = Command::new(BIN)
        .args(["replay", "--config"])
        .arg(fixtures().join("gateway.toml"))
        .arg(fixtures())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("brokers[1].host: \"127.0.0.1\" → \"b2.usw2-az2.unique_name.aws.plc.tidbcloud.com\""),
        "{stdout}"
    );
    assert!(stdout.lines().last().unwrap().ends_with("0 failed (listener group fixtures)"), "{stdout}");
}

#[test]
fn the_replay_command_fails_on_a_wrong_expectation_and_says_what_differs() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixtures().join("mock/metadata-v12-rewritten");
    for ext in ["toml", "frame", "expected"] {
        std::fs::copy(source.with_extension(ext), dir.path().join(format!("wrong.{ext}"))).unwrap();
    }
    // The expectation names broker 2 in the wrong AZ.
    let expected = dir.path().join("wrong.expected");
    let mut bytes = std::fs::read(&expected).unwrap();
    let at = bytes.windows(11).position(|w| w == b"b2.usw2-az2").expect("broker 2's name in the expectation");
    bytes[at..at + 11].copy_from_slice(b"b2.usw2-az3");
    std::fs::write(&expected, bytes).unwrap();

    let out = Command::new(BIN)
        .args(["replay", "--config"])
        .arg(fixtures().join("gateway.toml"))
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL "), "{stdout}");
    assert!(stdout.contains("expected the frame in .expected, got a rewritten frame"), "{stdout}");
    assert!(
        stdout.contains("brokers[1].host: \"b2.usw2-az3.unique_name.aws.plc.tidbcloud.com\" → \"b2.usw2-az2.unique_name.aws.plc.tidbcloud.com\""),
        "{stdout}"
    );
    assert!(stdout.contains("1 cases: 0 passed, 1 failed"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_gateway_records_replays_with_the_same_configuration() {
    let mock = mock_cluster();
    let dir = tempfile::tempdir().unwrap();
    let base = free_ports(3);
    let mut config = aws_config([127, 0, 0, 1].into(), base, &mock.bootstrap_servers());
    config.record_dir = Some(dir.path().to_path_buf());
    let _gateway = start(config.clone()).await;
    let addr = HostPort { host: "127.0.0.1".into(), port: base };
    let mut conn = Connection::open(&addr, &Link::plain(Duration::from_secs(5))).await.unwrap();
    for version in [0, 4, 12] {
        let request = MetadataRequest::default().with_topics(Some(vec![]));
        let _: MetadataResponse = conn.call(ApiKey::Metadata, version, &request).await.unwrap();
    }
    let request = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g"));
    let _: kafka_protocol::messages::FindCoordinatorResponse =
        conn.call(ApiKey::FindCoordinator, 3, &request).await.unwrap();

    let recorded: Vec<Case> =
        fixture::find(&[dir.path().to_path_buf()]).unwrap().iter().map(|p| Case::load(p).unwrap()).collect();
    let kinds: BTreeSet<(i16, i16)> = recorded.iter().map(|c| (c.sidecar.api_key, c.sidecar.api_version)).collect();
    for want in [(3, 0), (3, 4), (3, 12), (10, 3)] {
        assert!(kinds.contains(&want), "nothing recorded for {want:?}: {kinds:?}");
    }
    for case in &recorded {
        let report = fixture::replay(case, &config.groups[0]);
        assert!(report.passed, "{}", report.render());
        assert!(case.sidecar.source.starts_with("recorded by kafka-gateway"));
    }
    // FindCoordinator carries no rack: the case keeps the racks the gateway knew.
    let coordinator = recorded.iter().find(|c| c.sidecar.api_key == 10).unwrap();
    assert_eq!(coordinator.sidecar.racks.len(), 3, "{:?}", coordinator.sidecar);
}
