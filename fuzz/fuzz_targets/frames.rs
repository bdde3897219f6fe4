//! Fuzzes what the gateway does with bytes it did not choose: reading frame sizes and request
//! headers from a client's stream, and rewriting a broker's response of any kind and version.
//!
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run frames -- -max_total_time=1800` (see protocol-fixtures/README.md)
#![no_main]

use bytes::Bytes;
use kafka_gateway::Config;
use kafka_gateway::fixture::Names;
use kafka_gateway::frame::{self, Peek, MIN_REQUEST};
use kafka_gateway::rewrite::{self, Rewrite};
use libfuzzer_sys::fuzz_target;

const KINDS: [Rewrite; 6] =
    [Rewrite::ApiVersions, Rewrite::Metadata, Rewrite::FindCoordinator, Rewrite::DescribeCluster, Rewrite::Produce, Rewrite::Fetch];

fn config() -> &'static Config {
    static CONFIG: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
    CONFIG.get_or_init(|| {
        Config::from_toml(
            r#"
            [upstream]
            bootstrap_servers = ["k:9092"]
            [listeners.f]
            broker_port_base = 10000
            broker_ports = { "1" = 9093 }
            advertised = "b{node_id}.{az}.{rack}.fuzz.example:{port}"
            az_by_rack = { "r" = "az1" }
            az_by_node = { "2" = "az2" }
            "#,
        )
        .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    if selector & 1 == 0 {
        // A client's byte stream, read the way the request pump reads it.
        let limit = 1 << (selector >> 3);
        let mut at = 0;
        while at < rest.len() {
            let Ok(Peek::Ready(len)) = frame::frame_len(&rest[at..], MIN_REQUEST, limit) else { break };
            match frame::peek_request(&rest[at..], len) {
                Ok(Peek::Ready(head)) => {
                    let _ = rewrite::plan(head.api_key, head.api_version);
                }
                _ => break,
            }
            at += len;
        }
        let _ = frame::peek_correlation_id(rest);
    } else {
        // A broker's response to a request of some kind and version.
        let Some((&version, body)) = rest.split_first() else { return };
        let kind = KINDS[usize::from(selector >> 1) % KINDS.len()];
        let version = i16::from(version % 24) - 2;
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        let names = Names { group: &config().groups[0], racks: [(3, "r".to_owned())].into() };
        if let Ok(out) = rewrite::rewrite(kind, version, Bytes::from(frame), &names) {
            // Whatever comes out must be a frame whose size prefix is right.
            let out = out.to_bytes();
            assert_eq!(out.len(), 4 + i32::from_be_bytes(out[..4].try_into().unwrap()) as usize);
        }
    }
});
