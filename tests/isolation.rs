//! Bad input harms nothing else: malformed and oversized frames close the connection that sent them,
//! while a real client's traffic through the same gateway, ports and brokers goes on untouched.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use kafka_gateway::upstream::{Connection, Link};
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `bytes` and expects the gateway to close the connection without answering.
async fn closed_after(addr: SocketAddr, bytes: &[u8]) {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(bytes).await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut rest)).await;
    match read {
        Ok(Ok(_)) | Ok(Err(_)) => assert!(rest.is_empty(), "{bytes:02x?} got an answer: {rest:02x?}"),
        Err(_) => panic!("{bytes:02x?}: the connection stayed open"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_only_their_connection_while_a_client_produces() {
    let mock = mock_cluster();
    mock.create_topic("steady", 3, 3).unwrap();
    let link = PrivateLink::new();
    let mut config = aws_config(link.gateway_ip.into(), 9092, &mock.bootstrap_servers());
    config.max_frame_bytes = 1024 * 1024;
    let bootstrap = bootstrap_of(&config);
    let broker_1 = SocketAddr::new(bootstrap.ip(), 9093);
    let _gateway = start(config).await;
    link.set_hosts(&AWS_NAMES);

    // A connection opened before the trouble, used again after it.
    let mut bystander = Connection::open(&host_port(broker_1), &Link::plain(Duration::from_secs(5))).await.unwrap();
    let request = MetadataRequest::default().with_topics(Some(vec![]));
    let before: MetadataResponse = bystander.call(ApiKey::Metadata, 12, &request).await.unwrap();

    let client = example("kafka_client");
    let boot = bootstrap.to_string();
    let producer = link.spawn(&client, &["produce", "--bootstrap", &boot, "--topic", "steady", "--count", "30000"]);

    for addr in [bootstrap, broker_1] {
        // Oversized: 2 MiB announced, above the 1 MiB limit; nothing of it is forwarded.
        let mut big = (2 * 1024 * 1024i32).to_be_bytes().to_vec();
        big.extend(request_frame(0, 7, 1, &[0; 64])[4..].iter());
        closed_after(addr, &big).await;
        // A negative size.
        closed_after(addr, &[0x80, 0, 0, 0, 0, 0, 0, 0]).await;
        // Text where a frame should be: "GET " is a size of 1.19 GB.
        closed_after(addr, b"GET / HTTP/1.1\r\n\r\n").await;
        // A Produce v3 request whose header claims a 300-byte client id in a 14-byte frame.
        closed_after(addr, &[0, 0, 0, 14, 0, 0, 0, 3, 0, 0, 0, 1, 1, 44, 0, 0, 0, 0]).await;
        // A size too small for any request header.
        closed_after(addr, &[0, 0, 0, 2, 0, 0]).await;
    }

    let after: MetadataResponse = bystander.call(ApiKey::Metadata, 12, &request).await.unwrap();
    assert_eq!(after, before, "the bystander's connection works as before");
    let produced = producer.wait_with_output().await.unwrap();
    assert_eq!(stdout_of(&produced).trim(), "produced 30000 errors 0");
    let consumed = link
        .run(&client, &["consume", "--bootstrap", &boot, "--topic", "steady", "--group", "g", "--count", "30000"])
        .await;
    assert_eq!(stdout_of(&consumed).trim(), "consumed 30000 distinct 30000 duplicates 0");
}
