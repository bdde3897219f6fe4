//! Fuzzes the PROXY protocol header parser (v1 text and v2 binary with TLVs and CRC32c), which reads
//! the first bytes of every connection on a `proxy_protocol = "required"` listener before anything
//! else does (see kafka_gateway::fuzzing::proxy_header).
//!
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run proxy_header -- -max_total_time=1800` (protocol-fixtures/README.md)
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kafka_gateway::fuzzing::proxy_header(data));
