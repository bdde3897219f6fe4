//! Every input that once crashed the fuzz target (fuzz/regressions/) is replayed through the same
//! code on every test run. The first two: Metadata and DescribeCluster answers whose array count
//! (2^31 - 1, and a 5-byte varint) made kafka-protocol pre-allocate hundreds of gigabytes and abort
//! the process, before rewrites walked frames instead of decoding them.

#[test]
fn every_crashing_input_now_runs_clean() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        kafka_gateway::fuzzing::run(&data);
        count += 1;
    }
    assert!(count >= 2, "the regression inputs are missing");
}
