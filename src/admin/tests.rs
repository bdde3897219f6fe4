//! Admin endpoint tests: every route over real HTTP, against a stand-in for the gateway.

use std::sync::Mutex;

use super::*;
use crate::report::Row;

struct Stub {
    ready: Mutex<Result<(), NotReady>>,
}

impl Observe for Stub {
    fn readiness(&self) -> Result<(), NotReady> {
        self.ready.lock().unwrap().clone()
    }

    fn topology(&self) -> Report {
        let row = |node_id, advertised: Result<String, String>| Row {
            group: "tidb".into(),
            node_id,
            rack: Some("us-west-2a".into()),
            upstream: "10.0.0.1:9092".into(),
            az: Some("usw2-az1".into()),
            advertised,
            listen: Some("127.0.0.1:9093".parse().unwrap()),
            connections: Some(4),
        };
        Report {
            cluster_id: Some("c1".into()),
            answered_by: Some("10.0.0.1:9092".into()),
            rows: vec![row(1, Ok("b1.example:9093".into())), row(2, Err("broker 2 has no AZ".into()))],
            problems: vec!["broker 2 has no AZ".into()],
            access: vec!["access tidb: proxy_protocol required; endpoints any".into()],
        }
    }

    fn metrics(&self) -> String {
        "# TYPE kafka_gateway_brokers gauge\nkafka_gateway_brokers 2\n".into()
    }
}

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn every_route_answers_over_http() {
    let stub = Arc::new(Stub { ready: Mutex::new(Err(NotReady::Starting)) });
    let admin = serve("127.0.0.1:0".parse().unwrap(), Arc::clone(&stub) as Arc<dyn Observe>).await.unwrap();
    let addr = admin.local_addr().to_string();

    assert_eq!(get(&addr, "/livez", T).await.unwrap(), (200, "ok\n".into()));
    let (status, body) = get(&addr, "/readyz", T).await.unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("starting"), "{body}");
    *stub.ready.lock().unwrap() = Ok(());
    assert_eq!(get(&addr, "/readyz", T).await.unwrap(), (200, "ready\n".into()));
    *stub.ready.lock().unwrap() = Err(NotReady::Draining);
    assert_eq!(get(&addr, "/readyz", T).await.unwrap().0, 503);

    let (status, body) = get(&addr, "/metrics", T).await.unwrap();
    assert_eq!((status, body.as_str()), (200, stub.metrics().as_str()));

    // The topology goes out as JSON for scripts and comes back as the same report.
    let (status, json) = get(&addr, "/topology", T).await.unwrap();
    assert_eq!(status, 200);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["rows"][0]["advertised"], "b1.example:9093");
    assert_eq!(value["rows"][0]["connections"], 4);
    assert_eq!(value["rows"][1]["problem"], "broker 2 has no AZ");
    assert!(value["rows"][1]["advertised"].is_null());
    assert_eq!(topology(&addr, T).await.unwrap(), stub.topology());

    assert_eq!(get(&addr, "/nothing", T).await.unwrap().0, 404);
}

#[tokio::test]
async fn other_methods_are_refused_and_a_dropped_endpoint_stops_listening() {
    let stub = Arc::new(Stub { ready: Mutex::new(Ok(())) });
    let admin = serve("127.0.0.1:0".parse().unwrap(), stub).await.unwrap();
    let addr = admin.local_addr();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"POST /readyz HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    drop(admin);
    let refused = async {
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(T, refused).await.expect("the port closes once the endpoint is dropped");
}

#[tokio::test]
async fn a_client_names_what_failed() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = get(&format!("127.0.0.1:{port}"), "/readyz", T).await.unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err}");
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[test]
fn a_wildcard_bind_is_reached_on_loopback() {
    assert_eq!(reachable("0.0.0.0:9644".parse().unwrap()), "127.0.0.1:9644".parse().unwrap());
    assert_eq!(reachable("[::]:9644".parse().unwrap()), "[::1]:9644".parse().unwrap());
    assert_eq!(reachable("10.1.2.3:9644".parse().unwrap()), "10.1.2.3:9644".parse().unwrap());
}
