//! A guard against silent protocol drift. The gateway's version table (`api_versions::LIMITS`) is
//! written out by hand, for the layouts its walks were written for. This test fails when
//! kafka-protocol, or a broker the tests run, knows a version of an API whose answers can carry a
//! broker address above what that table lets through or was reviewed to refuse, and when
//! kafka-protocol learns an API key nobody has classified here (which does not compile): so an
//! upgrade of either cannot let an unrewritten version reach a client unnoticed.

mod support;

use std::time::Duration;

use kafka_gateway::broker::HostPort;
use kafka_gateway::rewrite::api_versions::{self, Caps};
use kafka_gateway::upstream::Connection;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use support::*;

/// What the answers of an API can say about brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answers {
    /// Nothing that names a broker's address.
    NoAddress,
    /// Broker addresses the gateway rewrites (or hides), up to the table's version.
    Rewritten,
    /// Broker addresses from the given version on, which the gateway refuses: the newest version
    /// kafka-protocol knew when that was decided, so that a newer one is looked at again.
    Refused { from: i16, reviewed_up_to: i16 },
}

/// Every API key kafka-protocol knows. A key added by an upgrade stops this from compiling until
/// someone reads its response schema and says what its answers carry.
fn answers(key: ApiKey) -> Answers {
    use Answers::*;
    use ApiKey::*;
    match key {
        Metadata | FindCoordinator | DescribeCluster | DescribeConfigs | Produce | Fetch | ShareFetch
        | ShareAcknowledge => Rewritten,
        // Edited rather than rewritten, but its layout must be known all the same.
        ApiVersions => Rewritten,
        // v2+: the controllers' listeners.
        DescribeQuorum => Refused { from: 2, reviewed_up_to: 2 },
        // KRaft's controller APIs: node endpoints, or the current leader's host and port.
        Vote => Refused { from: 0, reviewed_up_to: 2 },
        BeginQuorumEpoch | EndQuorumEpoch | FetchSnapshot => Refused { from: 0, reviewed_up_to: 1 },
        UpdateRaftVoter => Refused { from: 0, reviewed_up_to: 0 },
        // ACL `host` fields are client hosts of a rule, not brokers; the rest carry no host at all.
        ListOffsets
        | OffsetCommit
        | OffsetFetch
        | JoinGroup
        | Heartbeat
        | LeaveGroup
        | SyncGroup
        | DescribeGroups
        | ListGroups
        | SaslHandshake
        | CreateTopics
        | DeleteTopics
        | DeleteRecords
        | InitProducerId
        | OffsetForLeaderEpoch
        | AddPartitionsToTxn
        | AddOffsetsToTxn
        | EndTxn
        | WriteTxnMarkers
        | TxnOffsetCommit
        | DescribeAcls
        | CreateAcls
        | DeleteAcls
        | AlterConfigs
        | AlterReplicaLogDirs
        | DescribeLogDirs
        | SaslAuthenticate
        | CreatePartitions
        | CreateDelegationToken
        | RenewDelegationToken
        | ExpireDelegationToken
        | DescribeDelegationToken
        | DeleteGroups
        | ElectLeaders
        | IncrementalAlterConfigs
        | AlterPartitionReassignments
        | ListPartitionReassignments
        | OffsetDelete
        | DescribeClientQuotas
        | AlterClientQuotas
        | DescribeUserScramCredentials
        | AlterUserScramCredentials
        | AlterPartition
        | UpdateFeatures
        | Envelope
        | DescribeProducers
        | BrokerRegistration
        | BrokerHeartbeat
        | UnregisterBroker
        | DescribeTransactions
        | ListTransactions
        | AllocateProducerIds
        | ConsumerGroupHeartbeat
        | ConsumerGroupDescribe
        | ControllerRegistration
        | GetTelemetrySubscriptions
        | PushTelemetry
        | AssignReplicasToDirs
        | ListConfigResources
        | DescribeTopicPartitions
        | ShareGroupHeartbeat
        | ShareGroupDescribe
        | AddRaftVoter
        | RemoveRaftVoter
        | InitializeShareGroupState
        | ReadShareGroupState
        | WriteShareGroupState
        | DeleteShareGroupState
        | ReadShareGroupStateSummary
        | DescribeShareGroupOffsets
        | AlterShareGroupOffsets
        | DeleteShareGroupOffsets => NoAddress,
    }
}

/// Why `max`, a version someone knows of `key`, is not covered by the table; `None` if it is.
fn uncovered(key: ApiKey, max: i16) -> Option<String> {
    let allowed = Caps::default().allowed(key);
    match answers(key) {
        Answers::NoAddress => None,
        Answers::Rewritten => match allowed {
            Some((_, top)) if max <= top => None,
            Some((_, top)) => Some(format!(
                "{key:?} v{max} is known, the gateway's table stops at v{top}: write and test the walk of the new \
                 layout, then raise LIMITS"
            )),
            None => Some(format!("{key:?} is rewritten but not in the table")),
        },
        Answers::Refused { from, reviewed_up_to } => {
            let refused = match allowed {
                None => true,
                Some((_, top)) => top < from,
            };
            if !refused {
                Some(format!("{key:?} v{from}+ must be refused, the table allows {allowed:?}"))
            } else if max > reviewed_up_to {
                Some(format!("{key:?} v{max} is known, reviewed up to v{reviewed_up_to}: read its schema again"))
            } else {
                None
            }
        }
    }
}

#[test]
fn kafka_protocol_knows_no_version_of_an_address_carrying_api_above_the_table() {
    let problems: Vec<String> = ApiKey::iter().filter_map(|key| uncovered(key, key.valid_versions().max)).collect();
    assert!(problems.is_empty(), "{problems:#?}");
    // The guard itself: a crate that knew one version more of each would be caught.
    for key in ApiKey::iter().filter(|k| answers(*k) != Answers::NoAddress) {
        let known = key.valid_versions().max;
        assert!(uncovered(key, known + 1).is_some() || api_versions::allowed(key) == Some((1, i16::MAX)), "{key:?}");
    }
}

/// The (key, max) entries a broker's ApiVersions answer offers.
async fn offered(addr: &HostPort, version: i16) -> Vec<(i16, i16)> {
    let mut conn =
        Connection::open(addr, &kafka_gateway::upstream::Link::plain(Duration::from_secs(10))).await.unwrap();
    let answer: ApiVersionsResponse =
        conn.call(ApiKey::ApiVersions, version, &ApiVersionsRequest::default()).await.unwrap();
    assert_eq!(answer.error_code, 0, "ApiVersions v{version} from {addr}");
    answer.api_keys.iter().map(|k| (k.api_key, k.max_version)).collect()
}

fn check_broker(name: &str, offered: &[(i16, i16)]) -> Vec<String> {
    offered
        .iter()
        .filter_map(|&(key, max)| ApiKey::try_from(key).ok().map(|key| (key, max)))
        .filter_map(|(key, max)| uncovered(key, max).map(|why| format!("{name}: {why}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_broker_in_the_tests_offers_a_version_above_the_table() {
    let mock = mock_cluster();
    let tansu = Tansu::start();
    let share = ShareMock::start();
    let first = |list: &str| HostPort::parse(list.split(',').next().unwrap()).unwrap();
    let mut problems = Vec::new();
    // (The mocks answer ApiVersions up to v2, tansu up to v4.)
    let mock_offers = offered(&first(&mock.bootstrap_servers()), 2).await;
    problems.extend(check_broker("librdkafka 2.12 mock cluster", &mock_offers));
    problems.extend(check_broker("tansu 0.6", &offered(&host_port(tansu.addr), 4).await));
    let share_offers = offered(&first(&share.bootstrap), 2).await;
    problems.extend(check_broker("librdkafka 2.16 mock cluster", &share_offers));
    assert!(problems.is_empty(), "{problems:#?}");
    // What these brokers offer of the APIs this guards, so that the guard is not vacuous.
    assert!(mock_offers.iter().any(|&(k, max)| k == ApiKey::Fetch as i16 && max >= 16), "{mock_offers:?}");
    assert!(share_offers.contains(&(ApiKey::ShareFetch as i16, 1)), "{share_offers:?}");
}
