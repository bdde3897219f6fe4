//! Every input that once crashed a fuzz target (fuzz/regressions/) is replayed through the same
//! code on every test run. The first two: Metadata and DescribeCluster answers whose array count
//! (2^31 - 1, and a 5-byte varint) made kafka-protocol pre-allocate hundreds of gigabytes and abort
//! the process, before rewrites walked frames instead of decoding them. The PROXY header target's
//! crashes would be in fuzz/regressions/proxy_header/ (none so far); its seeds, each cloud's header
//! and the v1 forms (fuzz/seeds/proxy_header/), run through it too.

use std::path::Path;

fn files(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).map(|p| std::fs::read(p).unwrap()).collect()
}

#[test]
fn every_crashing_input_now_runs_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let frames = files(&dir);
    for data in &frames {
        kafka_gateway::fuzzing::run(data);
    }
    assert!(frames.len() >= 2, "the regression inputs are missing");
}

#[test]
fn the_proxy_header_targets_crashes_and_seeds_run_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let crashes = files(&root.join("regressions/proxy_header"));
    let seeds = files(&root.join("seeds/proxy_header"));
    for data in crashes.iter().chain(&seeds) {
        kafka_gateway::fuzzing::proxy_header(data);
    }
    assert!(seeds.len() >= 9, "the seeds are missing");
    // Each seed is a header a load balancer writes, followed by a Kafka frame's first bytes.
    for seed in &seeds {
        let parsed = kafka_gateway::proxy::parse(seed);
        assert!(matches!(parsed, Ok(kafka_gateway::proxy::Parsed::Done(..))), "{parsed:?}");
    }
}
