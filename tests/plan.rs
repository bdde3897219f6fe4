//! `kafka-gateway plan` as an operator meets it: the brokers from flags, the live cluster or a
//! running gateway; bad flags refused by name. What the plans contain is checked against
//! `validate` and the clouds' own tools in tests/deploy/check-plan.py (run by tests/deploy.rs).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::process::command as gateway;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_kafka-gateway");

fn write(dir: &Path, bootstrap: &str) -> PathBuf {
    let path = dir.join("gateway.toml");
    let text = format!(
        r#"
        [upstream]
        bootstrap_servers = "{bootstrap}"
        connect_timeout_ms = 2000
        [listeners.tidb]
        bind = "127.0.0.1"
        bootstrap_port = 29092
        broker_port_base = 29092
        advertised = "b{{node_id}}.{{az}}.unique_name.aws.plc.tidbcloud.com:{{port}}"
        az_by_rack = {{ "us-west-2a" = "usw2-az1", "us-west-2c" = "usw2-az2", "us-west-2b" = "usw2-az3" }}
        "#
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn plan_asks_the_live_cluster_when_no_broker_is_named() {
    let mock = mock_cluster();
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &mock.bootstrap_servers());
    let out = gateway(&["plan", "--config", path.to_str().unwrap(), "--for", "aws"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("# kafka-gateway plan: cloud=aws group=tidb bootstrap=29092 brokers=1:29093,2:29094,3:29095"),
        "{stdout}"
    );
    for (i, name) in AWS_NAMES.iter().enumerate() {
        assert!(stdout.contains(&format!("#     {name}:{}  broker {}", 29093 + i, i + 1)), "{stdout}");
    }
}

#[test]
fn plan_asks_a_running_gateway_with_admin() {
    let mock = mock_cluster();
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &mock.bootstrap_servers());
    let base = free_ports(3);
    let admin = format!("127.0.0.1:{}", free_ports(0));
    let text = std::fs::read_to_string(&path).unwrap().replace("29092", &base.to_string())
        + &format!("[admin]\nbind = \"{admin}\"\n");
    std::fs::write(&path, text).unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--config", path.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !gateway(&["health", "--config", path.to_str().unwrap()]).status.success() {
        assert!(std::time::Instant::now() < deadline, "the gateway did not turn ready");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = gateway(&["plan", "--config", path.to_str().unwrap(), "--for", "azure", "--admin", &admin]);
    child.kill().unwrap();
    child.wait().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let ports: Vec<String> = (1..=3).map(|n| format!("{}:{}", n, base + n)).collect();
    let marker = format!("# kafka-gateway plan: cloud=azure group=tidb bootstrap={base} brokers={}", ports.join(","));
    assert!(stdout.contains(&marker), "{stdout}");
    assert_eq!(stdout.matches("az network lb rule create").count(), 4, "bootstrap and 3 brokers: {stdout}");
}

#[test]
fn plan_refuses_a_cluster_it_cannot_name() {
    let mock = mock_cluster();
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &mock.bootstrap_servers());
    let text = std::fs::read_to_string(&path).unwrap().replace(r#", "us-west-2b" = "usw2-az3""#, "");
    std::fs::write(&path, text).unwrap();
    let out = gateway(&["plan", "--config", path.to_str().unwrap(), "--for", "gcp", "--format", "terraform"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("problem: listener group tidb: the template uses {az} but broker 3 has no AZ"), "{stderr}");
    assert!(out.stdout.is_empty(), "no plan is printed");
}

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "127.0.0.1:1");
    let config = path.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--for", "oci", "--broker", "1:us-west-2a"], "invalid value 'oci' for '--for <CLOUD>'"),
        (&["--for", "aws", "--format", "yaml", "--broker", "1:us-west-2a"], "invalid value 'yaml' for '--format"),
        (&["--for", "aws", "--broker", "one"], "invalid value 'one' for '--broker <ID[:RACK]>'"),
        (&["--for", "aws", "--broker", "1:us-west-2a", "--name", "Kafka_GW"], "--name: 'Kafka_GW' must start"),
        (&["--for", "aws", "--broker", "1:us-west-2a", "--only-new", "/nonexistent"], "--only-new /nonexistent: "),
        (&["--for", "aws", "--broker", "1:us-west-2a", "--admin", "127.0.0.1:1"], "cannot be used with"),
    ];
    for (args, needle) in cases {
        let mut all = vec!["plan", "--config", config];
        all.extend_from_slice(args);
        let out = gateway(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
