//! The rules of a listener group against connections that name themselves in PROXY headers.

use std::time::Duration;

use super::*;
use crate::proxy::build::{Tlv, v2};

fn gate(toml: &str) -> Arc<Gate> {
    let config = crate::Config::from_toml(&format!(
        "[upstream]\nbootstrap_servers = [\"k:9092\"]\n[listeners.g]\nbroker_port_base = 9000\n\
         advertised = \"b{{node_id}}:{{port}}\"\n[listeners.g.access]\n{toml}"
    ))
    .unwrap();
    Arc::new(Gate::new(config.groups[0].access.clone(), Duration::from_secs(10)))
}

const LB: &str = "10.9.9.9:5000";

async fn admit(gate: &Gate, bytes: &[u8]) -> Result<Admitted, Refusal> {
    let mut stream = bytes;
    gate.admit(&mut stream, LB.parse().unwrap()).await.map_err(|(r, _)| r)
}

fn client(s: &str) -> Option<SocketAddr> {
    Some(s.parse().unwrap())
}

#[tokio::test]
async fn without_proxy_protocol_the_peer_is_the_client_and_nothing_is_read() {
    let g = gate("");
    let who = admit(&g, b"\0\0\0\x10kafka").await.unwrap();
    assert_eq!(who, Admitted { client: LB.parse().unwrap(), endpoint: None, local: false });
    // The sources list applies to the peer then.
    let g = gate(r#"allow_sources = ["10.9.0.0/16"]"#);
    assert!(admit(&g, b"").await.is_ok());
    let g = gate(r#"allow_sources = ["10.8.0.0/16"]"#);
    assert!(matches!(admit(&g, b"").await, Err(Refusal::Source(_))));
}

#[tokio::test]
async fn each_clouds_endpoint_is_admitted_only_when_allowed() {
    let g = gate(
        r#"proxy_protocol = "required"
        allow_endpoints = ["vpce-0a1b2c3d4e5f67890", "azure:1234567", "psc:9876543210"]"#,
    );
    for tlv in [Tlv::Aws("vpce-0a1b2c3d4e5f67890"), Tlv::Azure(1_234_567), Tlv::Gcp(9_876_543_210)] {
        let who = admit(&g, &v2(false, client("10.1.1.1:999"), &[tlv], true)).await.unwrap();
        assert_eq!(who.client, "10.1.1.1:999".parse().unwrap());
        assert!(who.endpoint.is_some());
    }
    for tlv in [Tlv::Aws("vpce-0000000000000000"), Tlv::Azure(7), Tlv::Gcp(7)] {
        assert!(matches!(
            admit(&g, &v2(false, client("10.1.1.1:999"), &[tlv], false)).await,
            Err(Refusal::Endpoint(_))
        ));
    }
    assert!(matches!(admit(&g, &v2(false, client("10.1.1.1:999"), &[], false)).await, Err(Refusal::NoEndpoint)));
}

#[tokio::test]
async fn sources_are_the_headers_and_both_lists_must_admit() {
    let g = gate(
        r#"proxy_protocol = "required"
        allow_endpoints = ["psc:5"]
        allow_sources = ["10.0.0.0/8", "2001:db8::/32"]"#,
    );
    assert!(admit(&g, &v2(false, client("10.2.3.4:1"), &[Tlv::Gcp(5)], false)).await.is_ok());
    assert!(admit(&g, &v2(false, client("[2001:db8::9]:1"), &[Tlv::Gcp(5)], false)).await.is_ok());
    assert!(matches!(
        admit(&g, &v2(false, client("192.168.0.1:1"), &[Tlv::Gcp(5)], false)).await,
        Err(Refusal::Source(_))
    ));
    assert!(matches!(
        admit(&g, &v2(false, client("10.2.3.4:1"), &[Tlv::Gcp(6)], false)).await,
        Err(Refusal::Endpoint(_))
    ));
    // UNSPEC: no client address, so no source to check: refused, though the LB's own is allowed.
    assert!(matches!(admit(&g, &v2(false, None, &[Tlv::Gcp(5)], false)).await, Err(Refusal::NoSource)));
}

#[tokio::test]
async fn local_is_a_health_check_and_no_header_is_refused() {
    let g = gate(
        r#"proxy_protocol = "required"
        allow_endpoints = ["psc:5"]"#,
    );
    assert!(admit(&g, &v2(true, None, &[], false)).await.unwrap().local);
    assert!(matches!(admit(&g, b"\0\0\0\x10kafka and more").await, Err(Refusal::Header(ReadError::Header(_)))));
    assert!(matches!(admit(&g, b"PROXY TCP4").await, Err(Refusal::Header(ReadError::Closed))));
}

#[tokio::test]
async fn a_header_that_never_ends_is_the_callers_to_time_out() {
    let g = gate(r#"proxy_protocol = "required""#);
    let (_w, mut r) = tokio::io::duplex(64);
    let r = tokio::time::timeout(Duration::from_millis(50), g.admit(&mut r, LB.parse().unwrap())).await;
    assert!(r.is_err(), "admit returned without a header");
}

#[test]
fn the_connection_limit_counts_slots_and_gives_them_back() {
    let g = gate("max_connections = 2");
    let a = g.enter().unwrap();
    let _b = g.enter().unwrap();
    assert!(matches!(g.enter(), Err(Refusal::TooMany { limit: 2 })));
    assert_eq!(g.open(), 2);
    drop(a);
    let _c = g.enter().unwrap();
    assert_eq!(g.open(), 2);
}
