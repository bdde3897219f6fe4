//! The deployment kit checked with real tools: the plans of every cloud (tests/deploy/check-plan.py),
//! the Kubernetes overlays (tests/deploy/check-kubernetes.py) and the systemd unit
//! (`systemd-analyze verify`). The Python tools live in .tools/py, where scripts/test-tools puts
//! them (pinned, from PyPI): run it first.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_kafka-gateway");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn tools() -> PathBuf {
    let tools = root().join(".tools/py");
    assert!(tools.join("bin/kubectl").exists(), "{} has no kubectl: run scripts/test-tools", tools.display());
    tools
}

/// Runs a check script with the tools on its path; fails with everything it printed.
fn python(script: &str) {
    let out = Command::new("python3")
        .arg(root().join("tests/deploy").join(script))
        .arg(BIN)
        .env("PYTHONPATH", tools())
        .env("KUBECTL", tools().join("bin/kubectl"))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{script}:\n{text}");
    println!("{text}");
}

#[test]
fn plans_agree_with_validate_and_pass_the_clouds_tools() {
    python("check-plan.py");
}

#[test]
fn kubernetes_overlays_render_validate_and_agree_with_the_gateway() {
    python("check-kubernetes.py");
}

/// The unit as systemd reads it: `systemd-analyze verify` with the binary path pointed at this
/// build (verify checks that every command is executable) must print nothing at all (an unknown or
/// misspelt directive is only a warning), `systemd-analyze security --offline` must rate it
/// exposure 2.0 or better, and the directives the deployment relies on must be there.
#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = std::fs::read_to_string(root().join("deploy/systemd/kafka-gateway.service")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kafka-gateway.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/kafka-gateway", BIN)).unwrap();
    let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&path).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.trim().is_empty(), "systemd-analyze verify:\n{text}");
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let overall = text.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_default().to_owned();
    assert!(out.status.success(), "systemd-analyze security: {overall}\n{}", String::from_utf8_lossy(&out.stderr));
    println!("{overall}");

    let value = |key: &str| {
        unit.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .next_back()
            .unwrap_or_else(|| panic!("the unit has no {key}="))
            .to_owned()
    };
    for (key, want) in [
        ("Type", "notify"),
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("Restart", "on-failure"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("KillMode", "mixed"),
    ] {
        assert_eq!(value(key), want, "{key}");
    }
    // The stop timeout outlasts the drain (gateway.drain_secs, 30 s by default).
    let stop: u64 = value("TimeoutStopSec").trim_end_matches('s').parse().unwrap();
    assert!(stop > 30, "TimeoutStopSec={stop}");
    // Two descriptors per connection; benches/README's connection target is 10,000.
    let nofile: u64 = value("LimitNOFILE").parse().unwrap();
    assert!(nofile >= 2 * 10_000 + 1_024, "LimitNOFILE={nofile}");
}
