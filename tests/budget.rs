//! The held-response budget with real consumers: many librdkafka consumers fetch Fetch v16+ answers
//! (held whole by the gateway, to rewrite their KIP-951 endpoints) through a gateway whose budget is
//! far below what they ask for at once. The gateway runs as its own process, so its peak memory
//! (VmHWM) is its own; every message must arrive exactly once, and memory must go back after.

mod support;

use std::time::Duration;

use support::process::GatewayProcess;
use support::*;

const CONSUMERS: usize = 12;
const MESSAGES: usize = 24_000;
/// 1 KiB messages: 24 MB in the topic, which every consumer reads whole.
const SIZE: &str = "1024";
const BUDGET_MIB: u64 = 8;
/// What the gateway may take beyond its idle size and the budget: a read buffer per direction of
/// each connection while bytes are in flight (64 KiB; 2 × 4 connections per consumer), the worker
/// threads' buffer pools (up to 4 MiB each), freed pages jemalloc has not purged yet (it decays them
/// over 10 s) and its size classes. Measured: 16-24 MiB with an 8 MiB budget, where the same run
/// without a budget peaked 58 MiB above idle (benches/README.md).
const OVERHEAD_MIB: u64 = 32;
/// After the consumers leave, resident memory must come back within this much of its idle size:
/// the worker threads' buffer pools are kept for the next connections (measured: 5-7 MiB).
const RETURN_MARGIN_MIB: u64 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_far_beyond_the_budget_get_every_message_and_memory_stays_within_it() {
    let mock = mock_cluster();
    mock.create_topic("wide", 24, 3).unwrap();
    let budget = BUDGET_MIB * 1024 * 1024;
    let gateway = GatewayProcess::start(
        &mock.bootstrap_servers(),
        &format!("[gateway]\nmax_held_bytes = {budget}\nheld_wait_secs = 120"),
    )
    .await;
    let bootstrap = gateway.bootstrap.to_string();
    let client = example("kafka_client");
    let produced = tokio::process::Command::new(&client)
        .args(["produce", "--bootstrap", &bootstrap, "--topic", "wide", "--count", &MESSAGES.to_string()])
        .args(["--size", SIZE])
        .output()
        .await
        .unwrap();
    assert_eq!(stdout_of(&produced).trim(), format!("produced {MESSAGES} errors 0"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = gateway.memory_kib("VmRSS");
    let peak_before = gateway.memory_kib("VmHWM");

    // Each of a consumer's three broker connections may be answered 4 MiB at once (1 MiB from each
    // of the eight partitions a broker leads): twelve consumers ask for up to 144 MiB, 18 times the
    // budget. The budget is above the largest answer, which it could not split.
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|i| {
            tokio::process::Command::new(&client)
                .args(["consume", "--bootstrap", &bootstrap, "--topic", "wide", "--group", &format!("c{i}")])
                .args(["--count", &MESSAGES.to_string()])
                .args(["-X", "fetch.max.bytes=4194304", "-X", "max.partition.fetch.bytes=1048576"])
                .args(["-X", "fetch.wait.max.ms=100"])
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap()
        })
        .collect();
    // All run at once; their outputs are collected one after the other.
    for consumer in consumers {
        let out = consumer.wait_with_output().await.unwrap();
        assert_eq!(stdout_of(&out).trim(), format!("consumed {MESSAGES} distinct {MESSAGES} duplicates 0"));
    }
    let fetches = gateway.metric(r#"kafka_gateway_rewrites_total{group="g",api="Fetch"}"#).await;
    assert!(fetches > 0.0, "no Fetch v16+ answer was held: the test did not test the budget");
    let peak = gateway.memory_kib("VmHWM");
    println!(
        "gateway RSS idle {:.1} MiB (peak before the consumers {:.1}); peak with {CONSUMERS} consumers {:.1} MiB; \
         {fetches} Fetch answers held within a budget of {BUDGET_MIB} MiB",
        idle as f64 / 1024.0,
        peak_before as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    assert!(
        peak <= idle + (BUDGET_MIB + OVERHEAD_MIB) * 1024,
        "peak {peak} KiB above idle {idle} KiB + budget {BUDGET_MIB} MiB + overhead {OVERHEAD_MIB} MiB"
    );

    // Connections closed: memory goes back.
    let mut after = 0;
    let returned = eventually_async(Duration::from_secs(30), async || {
        let open = gateway.metric("kafka_gateway_connections_open{").await;
        after = gateway.memory_kib("VmRSS");
        open == 0.0 && after <= idle + RETURN_MARGIN_MIB * 1024
    })
    .await;
    println!(
        "gateway RSS after the consumers left: {:.1} MiB (idle {:.1})",
        after as f64 / 1024.0,
        idle as f64 / 1024.0
    );
    assert!(returned, "RSS stayed at {after} KiB after the burst, idle was {idle} KiB");
    // And where it settles, once jemalloc's decay (10 s) has passed over what was freed last.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let settled = gateway.memory_kib("VmRSS");
    println!("gateway RSS 12 s later: {:.1} MiB", settled as f64 / 1024.0);
    assert!(settled <= idle + RETURN_MARGIN_MIB * 1024, "RSS grew back to {settled} KiB while idle");
}

async fn eventually_async(limit: Duration, mut done: impl AsyncFnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    done().await
}
