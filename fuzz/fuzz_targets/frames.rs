//! Fuzzes what the gateway does with bytes it did not choose: reading frame sizes and request
//! headers from a client's stream, and rewriting a broker's response of any kind and version
//! (see kafka_gateway::fuzzing).
//!
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run frames -- -max_total_time=1800` (protocol-fixtures/README.md)
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kafka_gateway::fuzzing::run(data));
