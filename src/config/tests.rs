//! Configuration tests: every file under tests/configs/ and the env/flag layers of the contract.

// figment::Jail closures return figment::Error, whose size is not ours to choose.
#![allow(clippy::result_large_err)]

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use super::*;

fn files(kind: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/configs").join(kind);
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no files in {}", dir.display());
    files
}

#[test]
fn every_valid_file_loads() {
    for path in files("valid") {
        let text = fs::read_to_string(&path).unwrap();
        if let Err(e) = Config::from_toml(&text) {
            panic!("{} was refused: {e}", path.display());
        }
    }
}

#[test]
fn every_invalid_file_is_refused_naming_its_key() {
    for path in files("invalid") {
        let text = fs::read_to_string(&path).unwrap();
        let expected = text
            .lines()
            .find_map(|l| l.strip_prefix("# error-key: "))
            .unwrap_or_else(|| panic!("{} lacks an '# error-key:' line", path.display()));
        match Config::from_toml(&text) {
            Ok(_) => panic!("{} was accepted", path.display()),
            Err(e) => assert_eq!(e.key, expected, "{}: {e}", path.display()),
        }
    }
}

#[test]
fn the_design_card_example_means_what_it_says() {
    let text =
        fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/configs/valid/design-card.toml"))
            .unwrap();
    let config = Config::from_toml(&text).unwrap();
    assert_eq!(config.max_frame_bytes, 100 * 1024 * 1024);
    assert_eq!(config.tcp_keepalive, Some(Duration::from_secs(60)));
    assert_eq!(config.busy_poll, None, "the busy poll is off unless asked for");
    assert_eq!(config.splice_min_bytes, 16 * 1024);
    let g = &config.groups[0];
    assert_eq!(g.name, "tidb");
    assert_eq!(g.bind, "0.0.0.0".parse::<IpAddr>().unwrap());
    assert_eq!(g.bootstrap_port, Some(9092));
    assert_eq!(g.broker_port(1), Ok(9093));
    assert_eq!(g.broker_port(7), Ok(9100));
    assert_eq!(g.az_of(1, Some("us-west-2c")), Some("usw2-az2"));
    // az_by_node is the most specific rule and wins over the rack.
    assert_eq!(g.az_of(4, Some("us-west-2c")), Some("usw2-az1"));
    assert_eq!(g.az_of(5, Some("eu-central-1a")), Some("usw2-az1"), "default_az");
}

#[test]
fn ports_beyond_65535_and_negative_ids_are_errors() {
    let text = "[upstream]\nbootstrap_servers = ['k:9092']\n[listeners.t]\nbroker_port_base = 65000\nadvertised = 'b{node_id}.x:{port}'\n";
    let config = Config::from_toml(text).unwrap();
    assert_eq!(config.groups[0].broker_port(535), Ok(65535));
    assert!(matches!(config.groups[0].broker_port(536), Err(PortError::OutOfRange { .. })));
    assert!(matches!(config.groups[0].broker_port(-1), Err(PortError::OutOfRange { .. })));
    let err = config.check_ports(&BTreeSet::from([1, 600])).unwrap_err();
    assert_eq!(err.key, "listeners.t.broker_port_base (+ broker 600)");
}

#[test]
fn discovered_node_ids_can_collide_with_the_bootstrap_port() {
    let text =
        fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/configs/valid/aws-per-az.toml"))
            .unwrap();
    let config = Config::from_toml(&text).unwrap();
    config.check_ports(&BTreeSet::from([1, 2, 3])).unwrap();
    // Node 0 would listen on 9092 + 0, the bootstrap port.
    let err = config.check_ports(&BTreeSet::from([0, 1])).unwrap_err();
    assert_eq!(err.key, "listeners.tidb.broker_port_base (+ broker 0)");
    assert!(err.reason.contains("listeners.tidb.bootstrap_port"), "{err}");
}

#[test]
fn environment_overrides_the_file_and_flags_override_both() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "gw.toml",
            "[upstream]\nbootstrap_servers = ['a:9092']\n[listeners.tidb]\nbootstrap_port = 9092\nbroker_port_base = 9092\nadvertised = 'b{node_id}.x:{port}'\n",
        )?;
        jail.set_env("KAFKA_GATEWAY_UPSTREAM__BOOTSTRAP_SERVERS", "b:9092,c:9092");
        jail.set_env("KAFKA_GATEWAY_LISTENERS__TIDB__BOOTSTRAP_PORT", "19092");
        jail.set_env("KAFKA_GATEWAY_LISTENERS__TIDB__ADVERTISED", "b{node_id}.{az}.abc.aws.plc.tidbcloud.com:{port}");
        jail.set_env("KAFKA_GATEWAY_LISTENERS__TIDB__DEFAULT_AZ", "usw2-az1");
        let path = jail.directory().join("gw.toml");
        let flags = [
            "listeners.tidb.broker_port_base=20000".into(),
            "gateway.busy_poll_us=50".into(),
            "gateway.splice_min_bytes=0".into(),
        ];
        let config = Config::load(Some(&path), &flags).unwrap();
        assert_eq!(config.busy_poll, Some(Duration::from_micros(50)));
        assert_eq!(config.splice_min_bytes, 0, "0 turns splicing off");
        let hosts: Vec<_> = config.upstream.bootstrap_servers.iter().map(|h| h.to_string()).collect();
        assert_eq!(hosts, ["b:9092", "c:9092"]);
        let g = &config.groups[0];
        assert_eq!(g.bootstrap_port, Some(19092));
        assert_eq!(g.broker_port(3), Ok(20003));
        assert_eq!(g.advertised.to_string(), "b{node_id}.{az}.abc.aws.plc.tidbcloud.com:{port}");
        assert_eq!(g.az_of(3, None), Some("usw2-az1"));
        Ok(())
    });
}

#[test]
fn an_unknown_environment_key_is_refused_naming_it() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("KAFKA_GATEWAY_UPSTREAM__BOOTSTRAP_SERVERS", "a:9092");
        jail.set_env("KAFKA_GATEWAY_LISTENERS__T__BROKER_PORT_BASE", "9092");
        jail.set_env("KAFKA_GATEWAY_LISTENERS__T__ADVERTISED", "b{node_id}.x:{port}");
        jail.set_env("KAFKA_GATEWAY_LISTENERS__T__BROKER_PORT_BAS", "9092");
        let err = Config::load(None, &[]).unwrap_err();
        assert_eq!(err.key, "listeners.t.broker_port_bas");
        assert!(err.reason.contains("environment"), "{err}");
        Ok(())
    });
}

#[test]
fn a_missing_config_file_and_a_malformed_flag_are_named() {
    figment::Jail::expect_with(|_| {
        let err = Config::load(Some(Path::new("/nonexistent/gw.toml")), &[]).unwrap_err();
        assert_eq!(err.key, "--config");
        let err = Config::load(None, &["listeners.t.bind".into()]).unwrap_err();
        assert_eq!(err.key, "--set");
        let err =
            Config::load(None, &["upstream.bootstrap_servers=k:1".into(), "listeners.t.broker_port_base=x".into()])
                .unwrap_err();
        assert_eq!(err.key, "listeners.t.broker_port_base");
        assert!(err.reason.ends_with("(from --set)"), "{err}");
        Ok(())
    });
}

#[test]
fn host_port_parsing() {
    assert_eq!(HostPort::parse("10.0.0.1:9092").unwrap().to_string(), "10.0.0.1:9092");
    assert_eq!(HostPort::parse("[::1]:9092").unwrap().host, "::1");
    assert_eq!(HostPort::parse("[::1]:9092").unwrap().to_string(), "[::1]:9092");
    for bad in ["10.0.0.1", ":9092", "k:0", "k:99999", "k:x"] {
        assert!(HostPort::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_admin_endpoint_is_on_loopback_unless_moved_or_turned_off() {
    let base = "[upstream]\nbootstrap_servers = ['k:9092']\n[listeners.t]\nbroker_port_base = 9000\nadvertised = 'b{node_id}.x:{port}'\n";
    let config = Config::from_toml(base).unwrap();
    assert_eq!(config.admin.bind, Some("127.0.0.1:9644".parse().unwrap()));
    assert_eq!(config.admin.ready_stale, Some(Duration::from_secs(120)), "at least two minutes");
    assert_eq!(config.log_format, LogFormat::Text);
    let off = Config::from_toml(&format!("{base}[admin]\nbind = ''\nready_stale_secs = 0\n")).unwrap();
    assert_eq!((off.admin.bind, off.admin.ready_stale), (None, None));
    // The default follows a slow discovery interval rather than refusing it.
    let slow = base.replace("bootstrap_servers", "metadata_refresh_secs = 300\nbootstrap_servers");
    assert_eq!(Config::from_toml(&slow).unwrap().admin.ready_stale, Some(Duration::from_secs(1200)));
    let text =
        fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/configs/valid/monitoring.toml"))
            .unwrap();
    let config = Config::from_toml(&text).unwrap();
    assert_eq!(config.admin.bind, Some("0.0.0.0:9644".parse().unwrap()));
    assert_eq!(config.admin.ready_stale, Some(Duration::from_secs(600)));
    assert_eq!(config.log_format, LogFormat::Json);
}

#[test]
fn an_empty_admin_bind_from_a_flag_turns_the_endpoint_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.toml");
    fs::write(&path, "[upstream]\nbootstrap_servers = ['k:9092']\n[listeners.t]\nbroker_port_base = 9000\nadvertised = 'b{node_id}.x:{port}'\n").unwrap();
    let config = Config::load(Some(&path), &["admin.bind=".to_owned()]).unwrap();
    assert_eq!(config.admin.bind, None);
    let config = Config::load(Some(&path), &["admin.bind=127.0.0.1:19644".to_owned()]).unwrap();
    assert_eq!(config.admin.bind, Some("127.0.0.1:19644".parse().unwrap()));
}
