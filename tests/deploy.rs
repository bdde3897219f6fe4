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
