//! How the gateway learns brokers: at start, by retrying a cluster that is not there yet, and from
//! the responses on their way to clients — with listeners open before a client hears of a broker.
//! A fake broker plays the cluster here, because it can add brokers and odd node ids on demand.

mod support;

use std::time::Duration;

use kafka_gateway::broker::HostPort;
use kafka_gateway::upstream::Target;
use kafka_gateway::upstream::{Connection, Link};
use kafka_gateway::{Config, Gateway};
use kafka_protocol::messages::*;
use support::*;
use tokio::io::AsyncReadExt;

fn config(bootstrap: &str, base: u16, refresh_secs: u64) -> Config {
    Config::from_toml(&format!(
        r#"
        [upstream]
        bootstrap_servers = ["{bootstrap}"]
        metadata_refresh_secs = {refresh_secs}
        connect_timeout_ms = 1000
        [listeners.azure]
        bind = "127.0.0.1"
        bootstrap_port = {base}
        broker_port_base = {base}
        advertised = "b{{node_id}}.abc.eastus.azure.3199745.tidbcloud.com:{{port}}"
        "#
    ))
    .unwrap()
}

fn node(id: i32, port: u16) -> FakeNode {
    (id, "127.0.0.1".into(), i32::from(port), None)
}

fn brokers_listening(gateway: &Gateway) -> Vec<i32> {
    gateway
        .listening()
        .into_iter()
        .filter_map(|(_, t, _)| if let Target::Broker(n) = t { Some(n) } else { None })
        .collect()
}

async fn metadata_via(addr: &HostPort) -> MetadataResponse {
    let mut conn = Connection::open(addr, &Link::plain(Duration::from_secs(5))).await.unwrap();
    conn.call(ApiKey::Metadata, 12, &MetadataRequest::default().with_topics(Some(vec![]))).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_named_in_a_response_has_its_listener_before_the_client_reads_the_name() {
    let fake = FakeBroker::start(0, vec![]).await;
    fake.set_nodes(vec![node(1, fake.addr.port())]);
    // Sparse and large ids, far from 1..N, each on base + id.
    let base = loop {
        let base = free_ports(0);
        if [1u16, 7, 1001].iter().all(|n| std::net::TcpListener::bind(("127.0.0.1", base + n)).is_ok()) {
            break base;
        }
    };
    // Discovery would run only once an hour: what the test sees comes from the client's response.
    let gateway = start(config(&fake.addr.to_string(), base, 3600)).await;
    assert_eq!(brokers_listening(&gateway), [1]);

    fake.set_nodes(vec![node(1, fake.addr.port()), node(7, fake.addr.port()), node(1001, fake.addr.port())]);
    let metadata = metadata_via(&HostPort { host: "127.0.0.1".into(), port: base }).await;
    let named: Vec<_> = metadata.brokers.iter().map(|b| (b.node_id.0, b.host.to_string(), b.port)).collect();
    assert_eq!(
        named,
        [1, 7, 1001].map(|n| (n, format!("b{n}.abc.eastus.azure.3199745.tidbcloud.com"), i32::from(base) + n))
    );
    // The ports in the answer accept connections at once, and reach the broker.
    for b in &metadata.brokers {
        let addr = HostPort { host: "127.0.0.1".into(), port: b.port as u16 };
        let again = metadata_via(&addr).await;
        assert_eq!(again.brokers.len(), 3, "through broker {}'s port", b.node_id.0);
    }
    assert_eq!(brokers_listening(&gateway), [1, 7, 1001]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_starts_without_a_cluster_and_finds_it_when_it_comes() {
    let cluster_port = free_ports(0);
    let base = free_ports(2);
    // Discovery every 30 s: the first attempts after a failed start back off from 1 s instead.
    let gateway = start(config(&format!("127.0.0.1:{cluster_port}"), base, 30)).await;
    // Serving already: the bootstrap port is open though nothing is behind it.
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", base)).await.is_ok());
    assert!(brokers_listening(&gateway).is_empty());
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The broker names its nodes from its first answer: a discovery that reached it between its
    // start and a later `set_nodes` would see none and wait the whole interval.
    let _fake = FakeBroker::start(cluster_port, vec![node(1, cluster_port), node(2, cluster_port)]).await;
    assert!(eventually(Duration::from_secs(20), || brokers_listening(&gateway) == [1, 2]).await);
    let metadata = metadata_via(&HostPort { host: "127.0.0.1".into(), port: base + 2 }).await;
    assert_eq!(metadata.brokers.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_vendor_api_keys_pass_untouched_both_ways() {
    let fake = FakeBroker::start(0, vec![]).await;
    fake.set_nodes(vec![node(1, fake.addr.port())]);
    let base = free_ports(1);
    let _gateway = start(config(&fake.addr.to_string(), base, 3600)).await;
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", base + 1)).await.unwrap();
    for (key, version) in [(10_001, 0), (10_050, 7), (200, 3), (93, 0)] {
        let request = request_frame(key, version, 40 + key as i32, &[1, 2, 3, 250, 251]);
        let answer = exchange(&mut conn, &request).await.unwrap();
        let mut expected = vec![0, 0, 0, 17];
        expected.extend((40 + key as i32).to_be_bytes());
        expected.extend(b"fake-response");
        assert_eq!(answer, expected, "key {key}");
        assert_eq!(fake.received.lock().unwrap().last(), Some(&request), "key {key} reached the broker as sent");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_whose_port_collides_is_refused_never_misnamed() {
    let fake = FakeBroker::start(0, vec![]).await;
    fake.set_nodes(vec![node(1, fake.addr.port())]);
    let base = free_ports(1);
    let gateway = start(config(&fake.addr.to_string(), base, 3600)).await;
    // Node 0 would listen on base + 0: the bootstrap port.
    fake.set_nodes(vec![node(0, fake.addr.port()), node(1, fake.addr.port())]);
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", base)).await.unwrap();
    let request = request_frame(3, 1, 9, &[0, 0, 0, 0]);
    let answer = exchange(&mut conn, &request).await;
    assert!(answer.is_err(), "a response naming node 0 reached the client: {answer:?}");
    let mut rest = Vec::new();
    assert_eq!(conn.read_to_end(&mut rest).await.unwrap_or(0), 0, "the connection is closed");
    assert_eq!(brokers_listening(&gateway), [1], "no listener for node 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_joins_gets_its_ports_and_one_that_leaves_loses_them() {
    let owned = OwnedMock::new();
    let base = loop {
        let base = free_ports(4);
        if std::net::TcpListener::bind(("127.0.0.1", base + 4)).is_ok() {
            break base;
        }
    };
    let bootstrap = owned.plaintext().join(",");
    let config = Config::from_toml(&format!(
        r#"
        [upstream]
        bootstrap_servers = "{bootstrap}"
        metadata_refresh_secs = 1
        broker_grace_secs = 2
        [listeners.azure]
        bind = "127.0.0.1"
        bootstrap_port = {base}
        broker_port_base = {base}
        advertised = "b{{node_id}}.abc.eastus.azure.3199745.tidbcloud.com:{{port}}"
        "#
    ))
    .unwrap();
    let gateway = start(config).await;
    assert_eq!(brokers_listening(&gateway), [1, 2, 3]);
    owned.add_broker(4);
    assert!(eventually(Duration::from_secs(20), || brokers_listening(&gateway) == [1, 2, 3, 4]).await);
    let named = metadata_via(&HostPort { host: "127.0.0.1".into(), port: base + 4 }).await;
    assert!(named.brokers.iter().any(|b| b.node_id.0 == 4 && b.port == i32::from(base) + 4));
    owned.decommission(3);
    assert!(eventually(Duration::from_secs(20), || brokers_listening(&gateway) == [1, 2, 4]).await);
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", base + 3)).await.is_err(), "broker 3's port is closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_whose_address_changes_is_dialed_at_the_new_one() {
    // Broker 1 moves from one host to another (a pod rescheduled, say), keeping its node id.
    let (old, new) = (FakeBroker::start(0, vec![]).await, FakeBroker::start(0, vec![]).await);
    old.set_nodes(vec![node(1, old.addr.port())]);
    let base = free_ports(1);
    let _gateway = start(config(&old.addr.to_string(), base, 1)).await;
    let ping = request_frame(10_001, 0, 5, &[]);
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", base + 1)).await.unwrap();
    exchange(&mut conn, &ping).await.unwrap();
    assert!(old.received.lock().unwrap().contains(&ping));
    for fake in [&old, &new] {
        fake.set_nodes(vec![node(1, new.addr.port())]);
    }
    // After the next discovery, new connections to broker 1's port reach it where it is now...
    let moved = eventually(Duration::from_secs(10), || {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", base + 1)).unwrap();
        std::io::Write::write_all(&mut conn, &ping).unwrap();
        let mut size = [0u8; 4];
        std::io::Read::read_exact(&mut conn, &mut size).is_ok() && new.received.lock().unwrap().contains(&ping)
    })
    .await;
    assert!(moved, "broker 1's port still dials its old address");
    // ...while the connection opened before the move stays where it was.
    exchange(&mut conn, &ping).await.unwrap();
}
