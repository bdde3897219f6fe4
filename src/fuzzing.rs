//! What the fuzz target (fuzz/fuzz_targets/frames.rs) runs on each input, here so that the test
//! suite replays every input that once crashed it (fuzz/regressions/).
//!
//! The first byte selects: even, a client's byte stream read the way the request pump reads it;
//! odd, a broker's response to a request of the kind in bits 1-7 (modulo the number of kinds) and the
//! version in the second byte.

use bytes::Bytes;

use crate::config::Config;
use crate::fixture::Names;
use crate::frame::{self, MIN_REQUEST, Peek};
use crate::rewrite::{self, Rewrite};

/// The kinds a response input selects; new kinds go at the end, so that every recorded input
/// (fuzz/regressions/) keeps selecting the kind it crashed.
pub const KINDS: [Rewrite; 9] = [
    Rewrite::ApiVersions,
    Rewrite::Metadata,
    Rewrite::FindCoordinator,
    Rewrite::DescribeCluster,
    Rewrite::DescribeConfigs,
    Rewrite::Produce,
    Rewrite::Fetch,
    Rewrite::ShareFetch,
    Rewrite::ShareAcknowledge,
];

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
        .expect("the fuzzing configuration")
    })
}

/// Runs one input; panics (or aborts) only on a bug.
pub fn run(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else { return };
    if selector & 1 == 0 {
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
        let Some((&version, body)) = rest.split_first() else { return };
        let kind = KINDS[usize::from(selector >> 1) % KINDS.len()];
        let version = i16::from(version % 24) - 2;
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        let names = Names { group: config().groups[0].clone(), racks: [(3, "r".to_owned())].into() };
        if let Ok(out) = rewrite::rewrite(kind, version, &Bytes::from(frame), &names) {
            // Whatever comes out must be a frame whose size prefix is right.
            let out = out.to_bytes();
            assert_eq!(out.len(), 4 + i32::from_be_bytes(out[..4].try_into().unwrap()) as usize);
        }
    }
}

/// Runs one input through the PROXY header parser (fuzz/fuzz_targets/proxy_header.rs): whatever the
/// bytes, it answers within its bound, asks only for more than it was given, and a header it accepts
/// reads the same from exactly its own bytes, while every shorter prefix of it asks for more.
pub fn proxy_header(data: &[u8]) {
    use crate::proxy::{MAX_HEADER, Parsed, parse};
    match parse(data) {
        Ok(Parsed::NeedMore(n)) => assert!(n > data.len() && n <= MAX_HEADER, "asked for {n} of {}", data.len()),
        Ok(Parsed::Done(header, used)) => {
            assert!(used <= data.len() && used <= MAX_HEADER);
            assert_eq!(parse(&data[..used]), Ok(Parsed::Done(header, used)));
            for cut in [0, used / 2, used - 1] {
                assert!(matches!(parse(&data[..cut]), Ok(Parsed::NeedMore(n)) if n > cut && n <= used));
            }
        }
        Err(_) => {}
    }
}
