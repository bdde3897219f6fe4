//! Metrics tests: a session's pumps over in-memory pipes count exactly what crossed them, and the
//! exposition says so in Prometheus' text format.

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::{BrokerId, MetadataResponse, ResponseHeader};
use kafka_protocol::protocol::StrBytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

use super::*;
use crate::broker::{Advertise, HostPort, NameError, Named};
use crate::session::Limits;
use crate::session::testing::{counting, proxy_in};

struct Fake;

impl Advertise for Fake {
    fn advertise(&self, b: &Named<'_>) -> Result<HostPort, NameError> {
        Ok(HostPort { host: format!("b{}.example", b.node_id), port: 19000 + b.node_id as u16 })
    }
}

fn request(api_key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut f = vec![0; 4];
    f.extend(api_key.to_be_bytes());
    f.extend(version.to_be_bytes());
    f.extend(correlation_id.to_be_bytes());
    f.extend(4i16.to_be_bytes());
    f.extend(b"test");
    f.extend(body);
    let size = (f.len() - 4) as i32;
    f[..4].copy_from_slice(&size.to_be_bytes());
    f
}

fn response(correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut f = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    f.extend(correlation_id.to_be_bytes());
    f.extend(body);
    f
}

/// The value of the sample `name{labels}` in an exposition (labels as the text has them).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn a_session_counts_requests_bytes_rewrites_and_latency_exactly() {
    let metrics = Metrics::new();
    let group = counting(
        Limits { request: 1 << 20, response: 1 << 20, splice_min: 0 },
        Arc::new(Fake),
        GroupCounters::new(&metrics, "g"),
    );
    // Pipes larger than all the test writes: each side writes everything before it reads.
    let (mut client, client_side) = duplex(1 << 16);
    let (mut broker, broker_side) = duplex(1 << 16);
    let session = tokio::spawn(proxy_in(group, client_side, broker_side, Default::default()));

    // Two ListOffsets v5 (forwarded), one Metadata v12 (rewritten), one acks=0 Produce (no answer).
    let list = request(2, 5, 1, &[1, 2, 3]);
    let list2 = request(2, 5, 2, &[]);
    let meta = request(3, 12, 3, &[0xff, 0xff, 0xff, 0xff, 0, 0, 0]);
    let acks0 = request(0, 9, 4, &[0, 0, 0, 0]);
    let requests = [list.clone(), list2.clone(), meta.clone(), acks0.clone()].concat();
    client.write_all(&requests).await.unwrap();
    let mut got = vec![0; requests.len()];
    broker.read_exact(&mut got).await.unwrap();
    assert_eq!(got, requests);

    let header = ResponseHeader::default().with_correlation_id(3);
    let metadata = MetadataResponse::default().with_brokers(vec![
        MetadataResponseBroker::default()
            .with_node_id(BrokerId(1))
            .with_host(StrBytes::from_static_str("10.0.0.1"))
            .with_port(9092),
    ]);
    let meta_response = crate::rewrite::encode(&header, &metadata, 12, &[]).unwrap().to_vec();
    let responses = [response(1, &[7; 40]), response(2, &[]), meta_response.clone()].concat();
    broker.write_all(&responses).await.unwrap();
    let rewritten_len = {
        // The first two pass as they are; then the rewritten Metadata, whose length is its own.
        let mut passed = vec![0; 48 + 8];
        client.read_exact(&mut passed).await.unwrap();
        let size = client.read_i32().await.unwrap() as usize;
        let mut rest = vec![0; size];
        client.read_exact(&mut rest).await.unwrap();
        assert!(String::from_utf8_lossy(&rest).contains("b1.example"));
        56 + 4 + size
    };
    drop(client);
    session.await.unwrap().unwrap();

    let text = metrics.render();
    let g = r#"group="g""#;
    assert_eq!(
        sample(&text, &format!(r#"kafka_gateway_requests_total{{{g},api="ListOffsets",version="5"}}"#)),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!(r#"kafka_gateway_requests_total{{{g},api="Metadata",version="12"}}"#)),
        Some(1.0)
    );
    assert_eq!(sample(&text, &format!(r#"kafka_gateway_requests_total{{{g},api="Produce",version="9"}}"#)), Some(1.0));
    let bytes = |direction: &str| {
        sample(&text, &format!(r#"kafka_gateway_bytes_total{{{g},broker="bootstrap",direction="{direction}"}}"#))
    };
    assert_eq!(bytes("to_broker"), Some(requests.len() as f64));
    assert_eq!(bytes("to_client"), Some(rewritten_len as f64));
    assert_eq!(sample(&text, &format!(r#"kafka_gateway_rewrites_total{{{g},api="Metadata"}}"#)), Some(1.0));
    assert_eq!(sample(&text, &format!(r#"kafka_gateway_rewrites_total{{{g},api="Fetch"}}"#)), Some(0.0));
    assert_eq!(sample(&text, &format!(r#"kafka_gateway_held_response_bytes{{{g}}}"#)), Some(0.0), "released");
    // Every answered request timed once; the acks=0 Produce has no answer to time.
    let count =
        |api: &str| sample(&text, &format!(r#"kafka_gateway_request_duration_seconds_count{{{g},api="{api}"}}"#));
    assert_eq!((count("ListOffsets"), count("Metadata"), count("Produce")), (Some(2.0), Some(1.0), None));
    let p99 =
        sample(&text, &format!(r#"kafka_gateway_request_duration_seconds{{{g},api="ListOffsets",quantile="0.99"}}"#));
    assert!(p99.is_some_and(|s| s > 0.0 && s < 60.0), "{p99:?}");
    assert_eq!(
        sample(&text, r#"kafka_gateway_connections_open{broker="bootstrap",group="g"}"#),
        Some(0.0),
        "the session ended"
    );
}

#[tokio::test]
async fn a_request_at_a_capped_version_is_refused_and_counted() {
    let metrics = Metrics::new();
    let group = counting(
        Limits { request: 1 << 20, response: 1 << 20, splice_min: 0 },
        Arc::new(Fake),
        GroupCounters::new(&metrics, "g"),
    );
    let (mut client, client_side) = duplex(64);
    let (_broker, broker_side) = duplex(64);
    client.write_all(&request(55, 2, 1, &[])).await.unwrap();
    let err = proxy_in(group, client_side, broker_side, Default::default()).await.unwrap_err();
    assert_eq!((err.side(), err.refusal()), (crate::session::Side::Client, Some("version_capped")));
}

#[test]
fn every_family_is_exported_once_with_its_kind() {
    let metrics = Metrics::new();
    let g = GroupCounters::new(&metrics, "g");
    let _session = g.session(Some(1));
    metrics.listener("g", Some(1));
    metrics.set_cluster(3, std::time::Duration::from_secs(2), true);
    let text = metrics.render();
    for family in FAMILIES {
        let name = format!("{PREFIX}{}", family.name);
        let kind = match family.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        };
        assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{name} missing:\n{text}");
        assert_eq!(text.matches(&format!("# TYPE {name} ")).count(), 1, "{name}");
    }
    assert_eq!(sample(&text, "kafka_gateway_brokers"), Some(3.0));
    assert_eq!(sample(&text, "kafka_gateway_ready"), Some(1.0));
    assert_eq!(
        sample(&text, &format!(r#"kafka_gateway_build_info{{version="{}"}}"#, env!("CARGO_PKG_VERSION"))),
        Some(1.0)
    );
    assert_eq!(sample(&text, r#"kafka_gateway_connections_open{broker="1",group="g"}"#), Some(1.0));
    metrics.reloaded(true);
    metrics.reloaded(false);
    metrics.reloaded(false);
    let text = metrics.render();
    assert_eq!(sample(&text, r#"kafka_gateway_reloads_total{result="applied"}"#), Some(1.0));
    assert_eq!(sample(&text, r#"kafka_gateway_reloads_total{result="refused"}"#), Some(2.0));
}

#[test]
fn with_metrics_off_a_session_counts_only_its_own_totals() {
    let counters = GroupCounters::off().session(None);
    counters.request(0, 9);
    assert_eq!(counters.clock(), None, "no clock is read");
    counters.to_broker(()).count(10);
    assert_eq!(counters.totals(), counters::Totals { to_broker: 10, to_client: 0, requests: 1 });
}
