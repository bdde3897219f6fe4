//! Real clients behind a private link: librdkafka (the `rdkafka` crate) runs in a network namespace
//! that reaches only the gateway and resolves the TiDB Cloud names through its own hosts file. The
//! cluster is librdkafka's mock cluster with three brokers in three racks, on the host's loopback,
//! which the client cannot reach: a client that dialed an upstream address would fail.

mod support;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use support::*;

const TOPIC_PARTITIONS: i32 = 3;

/// Asserts the client sees exactly the guide's names, each broker on its own port.
async fn assert_pattern_names(link: &PrivateLink, bootstrap: &str) {
    let client = example("kafka_client");
    let out = stdout_of(&link.run(&client, &["metadata", "--bootstrap", bootstrap]).await);
    let expected: String =
        AWS_NAMES.iter().enumerate().map(|(i, name)| format!("broker {} {name}:{}\n", i + 1, 9093 + i)).collect();
    assert_eq!(out, expected);
}

/// Produces 10,000 messages with `acks` through a gateway behind a private link, and asserts a
/// consumer group reads each back exactly once; checks the names the client sees first.
async fn ten_thousand_through_the_link(topic: &str, acks: &str) {
    let mock = mock_cluster();
    mock.create_topic(topic, TOPIC_PARTITIONS, 3).unwrap();
    let link = PrivateLink::new();
    let config = aws_config(link.gateway_ip.into(), 9092, &mock.bootstrap_servers());
    let bootstrap = bootstrap_of(&config).to_string();
    let _gateway = start(config).await;
    link.set_hosts(&AWS_NAMES);

    assert_pattern_names(&link, &bootstrap).await;

    let client = example("kafka_client");
    let produce = ["produce", "--bootstrap", &bootstrap, "--topic", topic, "--count", "10000", "--acks", acks];
    let produced = link.run(&client, &produce).await;
    assert_eq!(stdout_of(&produced).trim(), "produced 10000 errors 0");

    let consumed = link
        .run(&client, &["consume", "--bootstrap", &bootstrap, "--topic", topic, "--group", "g1", "--count", "10000"])
        .await;
    assert_eq!(stdout_of(&consumed).trim(), "consumed 10000 distinct 10000 duplicates 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_through_a_private_link_come_back_exactly_once() {
    ten_thousand_through_the_link("orders", "all").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_fails_without_the_gateway_so_the_link_is_real() {
    // The same client, handed the cluster's own address, cannot reach it from the namespace: the
    // other tests' successes went through the gateway and nowhere else.
    let mock = mock_cluster();
    let link = PrivateLink::new();
    let client = example("kafka_client");
    let direct =
        link.run(&client, &["metadata", "--bootstrap", &mock.bootstrap_servers(), "--timeout-secs", "3"]).await;
    assert!(!direct.status.success(), "the namespace reached an upstream address");
    // And through the gateway, without names in the hosts file, metadata works but names don't resolve:
    // the client learns only pattern names, never an address it could dial instead.
    let config = aws_config(link.gateway_ip.into(), 9092, &mock.bootstrap_servers());
    let bootstrap = bootstrap_of(&config).to_string();
    let _gateway = start(config).await;
    assert_pattern_names(&link, &bootstrap).await;
    mock.create_topic("t", 1, 3).unwrap();
    let produced = link
        .run(
            &client,
            &["produce", "--bootstrap", &bootstrap, "--topic", "t", "--count", "1", "--message-timeout-ms", "3000"],
        )
        .await;
    assert!(!produced.status.success(), "produced without resolving the pattern names");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_follows_leader_moves_and_an_outage_through_the_gateway() {
    let mock = mock_cluster();
    mock.create_topic("moving", TOPIC_PARTITIONS, 3).unwrap();
    let link = PrivateLink::new();
    let config = aws_config(link.gateway_ip.into(), 9092, &mock.bootstrap_servers());
    let bootstrap = bootstrap_of(&config).to_string();
    let _gateway = start(config).await;
    link.set_hosts(&AWS_NAMES);

    // One producer for the whole test: between its phases every partition changes leader, then
    // broker 3 goes down, so its cached metadata and connections go stale and it must find the new
    // leaders through the gateway. (The cluster changes between phases rather than under in-flight
    // requests: librdkafka 2.12's mock cluster can lose acknowledged messages when a leader moves
    // under in-flight Produce v9 requests, with or without a gateway.)
    let client = example("kafka_client");
    let mut producer = link.spawn(
        &client,
        &["produce", "--bootstrap", &bootstrap, "--topic", "moving", "--count", "30000", "--pause-every", "10000"],
    );
    let mut lines = BufReader::new(producer.stdout.take().unwrap()).lines();
    let mut stdin = producer.stdin.take().unwrap();
    let mut next_phase = async |expect: &str| {
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some(expect));
    };
    next_phase("paused at 10000").await;
    for partition in 0..TOPIC_PARTITIONS {
        mock.partition_leader("moving", partition, Some(1 + (partition + 1) % 3)).unwrap();
    }
    stdin.write_all(b"go\n").await.unwrap();
    next_phase("paused at 20000").await;
    for partition in 0..TOPIC_PARTITIONS {
        mock.partition_leader("moving", partition, Some(1 + partition % 2)).unwrap();
    }
    mock.broker_down(3).unwrap();
    stdin.write_all(b"go\n").await.unwrap();
    next_phase("produced 30000 errors 0").await;
    mock.broker_up(3).unwrap();
    assert!(producer.wait().await.unwrap().success());

    let consumed = link
        .run(&client, &["consume", "--bootstrap", &bootstrap, "--topic", "moving", "--group", "g", "--count", "30000"])
        .await;
    assert_eq!(stdout_of(&consumed).trim(), "consumed 30000 distinct 30000 duplicates 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_starts_and_serves_while_a_broker_is_down() {
    let mock = mock_cluster();
    mock.create_topic("partial", 1, 3).unwrap();
    mock.partition_leader("partial", 0, Some(1)).unwrap();
    mock.broker_down(2).unwrap();
    let link = PrivateLink::new();
    let config = aws_config(link.gateway_ip.into(), 9092, &mock.bootstrap_servers());
    let bootstrap = bootstrap_of(&config).to_string();
    let _gateway = start(config).await;
    link.set_hosts(&AWS_NAMES);

    let client = example("kafka_client");
    let mut producer = link.spawn(
        &client,
        &["produce", "--bootstrap", &bootstrap, "--topic", "partial", "--count", "200", "--pause-every", "100"],
    );
    let mut lines = BufReader::new(producer.stdout.take().unwrap()).lines();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("paused at 100"));
    // Broker 2 comes back and takes the partition: the gateway must reach it now.
    mock.broker_up(2).unwrap();
    mock.partition_leader("partial", 0, Some(2)).unwrap();
    producer.stdin.take().unwrap().write_all(b"go\n").await.unwrap();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("produced 200 errors 0"));

    let consumed = link
        .run(&client, &["consume", "--bootstrap", &bootstrap, "--topic", "partial", "--group", "g", "--count", "200"])
        .await;
    assert_eq!(stdout_of(&consumed).trim(), "consumed 200 distinct 200 duplicates 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_producers_lose_nothing_through_the_gateway() {
    // librdkafka's mock answers Produce with acks=0 although Kafka does not: the gateway drops
    // those answers nobody waits for instead of closing the connection (which lost messages).
    ten_thousand_through_the_link("fire", "0").await;
}
