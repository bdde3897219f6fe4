//! SASL all the way through: clients authenticate to a cluster that enforces SASL (the mock
//! cluster behind a SASL listener, tests/support/sasl_front.py) through the gateway, which passes
//! their exchange untouched — SaslHandshake v1 with SaslAuthenticate, re-authentication (KIP-368),
//! and SaslHandshake v0 followed by bare tokens — while its own connections authenticate with
//! [upstream.sasl].

mod support;

use std::net::IpAddr;
use std::process::Command;

use kafka_gateway::Config;
use support::sasl::{SaslCluster, sasl_client};
use support::tls::{Pki, Stunnel};
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const ALICE: &str = "alice:alice-secret";
const GATEWAY: &str = "gateway:gateway-secret";

fn config_text(bind: IpAddr, base: u16, bootstrap: &str, sasl: &str) -> String {
    format!(
        r#"
        [upstream]
        bootstrap_servers = "{bootstrap}"
        metadata_refresh_secs = 2
        connect_timeout_ms = 5000
        {sasl}
        [listeners.tidb]
        bind = "{bind}"
        bootstrap_port = {base}
        broker_port_base = {base}
        advertised = "b{{node_id}}.{{az}}.unique_name.aws.plc.tidbcloud.com:{{port}}"
        az_by_rack = {{ "us-west-2a" = "usw2-az1", "us-west-2c" = "usw2-az2", "us-west-2b" = "usw2-az3" }}
        "#
    )
}

fn gateway_sasl(mechanism: &str, password: &str) -> String {
    format!("[upstream.sasl]\nmechanism = \"{mechanism}\"\nusername = \"gateway\"\npassword = \"{password}\"\n")
}

async fn run_client(link: &PrivateLink, args: &[&str], extra: &[String]) -> std::process::Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(extra.iter().map(String::as_str));
    link.run(&example("kafka_client"), &all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_authenticate_through_the_gateway_to_a_cluster_that_enforces_sasl() {
    let cluster = SaslCluster::start(&[ALICE, GATEWAY], 0, false);
    cluster.mock().create_topic("authed", 3, 3).unwrap();
    cluster.mock().create_topic("direct", 1, 3).unwrap();
    let client = example("kafka_client");

    // The reference: the cluster refuses a client without credentials, and takes alice directly.
    let plain = tokio::process::Command::new(&client)
        .args(["metadata", "--bootstrap", &cluster.bootstrap(), "--timeout-secs", "3"])
        .output()
        .await
        .unwrap();
    assert!(!plain.status.success(), "the cluster answered a client without credentials");
    let alice = sasl_client("SCRAM-SHA-512", "alice", "alice-secret");
    let bootstrap_direct = cluster.bootstrap();
    let args = ["produce", "--bootstrap", &bootstrap_direct, "--topic", "direct", "--count", "300"];
    let out = tokio::process::Command::new(&client).args(args).args(&alice).output().await.unwrap();
    assert_eq!(stdout_of(&out).trim(), "produced 300 errors 0");

    // The gateway's own discovery authenticates with [upstream.sasl].
    let link = PrivateLink::new();
    let text = config_text(
        link.gateway_ip.into(),
        9092,
        &cluster.bootstrap(),
        &gateway_sasl("SCRAM-SHA-512", "gateway-secret"),
    );
    let config = Config::from_toml(&text).unwrap();
    let bootstrap = bootstrap_of(&config).to_string();
    let _gateway = start(config).await;
    link.set_hosts(&AWS_NAMES);
    assert!(cluster.count("auth ok gateway SCRAM-SHA-512") >= 1, "{:?}", cluster.events());

    // Clients' own exchanges pass through: SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN.
    let out =
        run_client(&link, &["produce", "--bootstrap", &bootstrap, "--topic", "authed", "--count", "3000"], &alice)
            .await;
    assert_eq!(stdout_of(&out).trim(), "produced 3000 errors 0");
    let out = run_client(
        &link,
        &["consume", "--bootstrap", &bootstrap, "--topic", "authed", "--group", "g", "--count", "3000"],
        &alice,
    )
    .await;
    assert_eq!(stdout_of(&out).trim(), "consumed 3000 distinct 3000 duplicates 0");
    for mechanism in ["SCRAM-SHA-256", "PLAIN"] {
        let before = cluster.count(&format!("auth ok alice {mechanism} v1"));
        let out = run_client(
            &link,
            &["metadata", "--bootstrap", &bootstrap],
            &sasl_client(mechanism, "alice", "alice-secret"),
        )
        .await;
        let names: String =
            AWS_NAMES.iter().enumerate().map(|(i, name)| format!("broker {} {name}:{}\n", i + 1, 9093 + i)).collect();
        assert_eq!(stdout_of(&out), names, "{mechanism}");
        assert!(
            cluster.count(&format!("auth ok alice {mechanism} v1")) > before,
            "{mechanism}: {:?}",
            cluster.events()
        );
    }

    // A wrong password is the broker's refusal, passed on.
    let before = cluster.count("auth failed alice");
    let wrong = sasl_client("SCRAM-SHA-512", "alice", "not-her-password");
    let out = run_client(&link, &["metadata", "--bootstrap", &bootstrap, "--timeout-secs", "3"], &wrong).await;
    assert!(!out.status.success(), "a wrong password got through");
    assert!(cluster.count("auth failed alice") > before, "{:?}", cluster.events());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_re_authenticates_through_the_gateway_when_its_session_expires() {
    // Sessions of 3 s: a producer that pauses longer must re-authenticate on its open connections
    // (KIP-368), or the cluster closes them at its next request.
    let cluster = SaslCluster::start(&[ALICE, GATEWAY], 3000, false);
    cluster.mock().create_topic("long", 3, 3).unwrap();
    let link = PrivateLink::new();
    let sasl = gateway_sasl("SCRAM-SHA-256", "gateway-secret");
    let config = Config::from_toml(&config_text(link.gateway_ip.into(), 9092, &cluster.bootstrap(), &sasl)).unwrap();
    let bootstrap = bootstrap_of(&config).to_string();
    let _gateway = start(config).await;
    link.set_hosts(&AWS_NAMES);

    let alice = sasl_client("SCRAM-SHA-512", "alice", "alice-secret");
    let mut args =
        vec!["produce", "--bootstrap", &bootstrap, "--topic", "long", "--count", "3000", "--pause-every", "1000"];
    args.extend(alice.iter().map(String::as_str));
    let mut producer = link.spawn(&example("kafka_client"), &args);
    let mut lines = BufReader::new(producer.stdout.take().unwrap()).lines();
    let mut stdin = producer.stdin.take().unwrap();
    for expect in ["paused at 1000", "paused at 2000"] {
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some(expect));
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        stdin.write_all(b"go\n").await.unwrap();
    }
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("produced 3000 errors 0"));
    assert!(producer.wait().await.unwrap().success());
    assert!(cluster.count("auth ok alice SCRAM-SHA-512 v1 reauth") >= 1, "{:?}", cluster.events());
    assert_eq!(cluster.count("expired"), 0, "a session expired: {:?}", cluster.events());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_handshake_v0_tokens_cross_the_gateway_as_bare_frames() {
    // A cluster that offers SaslHandshake v0 only, as Kafka 0.10 did: librdkafka then sends its SASL
    // tokens as bare size-prefixed frames with no Kafka header, which the gateway must follow.
    let cluster = SaslCluster::start(&[ALICE, GATEWAY], 0, true);
    cluster.mock().create_topic("old", 1, 3).unwrap();
    let link = PrivateLink::new();
    let sasl = gateway_sasl("PLAIN", "gateway-secret");
    let config = Config::from_toml(&config_text(link.gateway_ip.into(), 9092, &cluster.bootstrap(), &sasl)).unwrap();
    let bootstrap = bootstrap_of(&config).to_string();
    let _gateway = start(config).await;
    link.set_hosts(&AWS_NAMES);
    for (mechanism, topic_count) in [("SCRAM-SHA-256", "300"), ("SCRAM-SHA-512", "300"), ("PLAIN", "300")] {
        let alice = sasl_client(mechanism, "alice", "alice-secret");
        let before = cluster.count(&format!("auth ok alice {mechanism} v0"));
        let out = run_client(
            &link,
            &["produce", "--bootstrap", &bootstrap, "--topic", "old", "--count", topic_count],
            &alice,
        )
        .await;
        assert_eq!(stdout_of(&out).trim(), format!("produced {topic_count} errors 0"), "{mechanism}");
        assert!(
            cluster.count(&format!("auth ok alice {mechanism} v0")) > before,
            "{mechanism}: {:?}",
            cluster.events()
        );
    }
    assert_eq!(cluster.count("auth ok alice SCRAM-SHA-256 v1"), 0, "{:?}", cluster.events());
    // A refused exchange ends with the cluster closing the connection; the gateway passes that on.
    let wrong = sasl_client("SCRAM-SHA-256", "alice", "wrong");
    let out = run_client(&link, &["metadata", "--bootstrap", &bootstrap, "--timeout-secs", "3"], &wrong).await;
    assert!(!out.status.success());
    assert!(cluster.count("auth failed alice SCRAM-SHA-256") >= 1, "{:?}", cluster.events());
}

#[test]
fn the_gateways_own_sasl_failure_reads_as_a_sentence_without_the_password() {
    let cluster = SaslCluster::start(&[GATEWAY], 0, false);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let here: IpAddr = "127.0.0.1".parse().unwrap();
    let check = |sasl: &str| {
        std::fs::write(&path, config_text(here, free_ports(3), &cluster.bootstrap(), sasl)).unwrap();
        let out =
            Command::new(env!("CARGO_BIN_EXE_kafka-gateway")).args(["check", "--config"]).arg(&path).output().unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (ok, out) = check(&gateway_sasl("SCRAM-SHA-512", "gateway-secret"));
    assert!(ok, "{out}");
    let (ok, out) = check(&gateway_sasl("SCRAM-SHA-256", "guessed-wrong"));
    assert!(!ok);
    assert!(out.contains("authentication failed for user gateway with SCRAM-SHA-256"), "{out}");
    assert!(!out.contains("guessed-wrong"), "the password was printed: {out}");
    // Without [upstream.sasl] the cluster closes the gateway's connection, and check says what to set.
    let (ok, out) = check("");
    assert!(!ok && out.contains("[upstream.sasl]"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_all_the_way_as_managed_kafka_services_offer_it() {
    // SASL_SSL on both sides, as MSK or Confluent expose a cluster: TLS (stunnel) before a SASL
    // listener before the brokers; the gateway terminates the client's TLS and opens its own, and
    // the client's SCRAM exchange crosses both.
    let cluster = SaslCluster::start(&[ALICE, GATEWAY], 0, false);
    cluster.mock().create_topic("managed", 3, 3).unwrap();
    let cluster_pki = Pki::new("cluster");
    let tls = Stunnel::start(&cluster_pki.server("broker", &["127.0.0.1"]), &cluster.front_addresses());
    cluster.advertise(&tls.ports);
    let link = PrivateLink::new();
    let gateway_pki = Pki::new("gateway");
    let ip = link.gateway_ip.to_string();
    let cert = gateway_pki.server("gateway", &[AWS_NAMES[0], AWS_NAMES[1], AWS_NAMES[2], &ip]);
    let extra = format!(
        "{}[upstream.tls]\nca = \"{}\"\n",
        gateway_sasl("SCRAM-SHA-512", "gateway-secret"),
        cluster_pki.ca.display()
    );
    let mut text = config_text(link.gateway_ip.into(), 9092, &tls.bootstrap(), &extra);
    text += &format!("[listeners.tidb.tls]\ncert = \"{}\"\nkey = \"{}\"\n", cert.cert.display(), cert.key.display());
    let config = Config::from_toml(&text).unwrap();
    let bootstrap = bootstrap_of(&config).to_string();
    let _gateway = start(config).await;
    link.set_hosts(&AWS_NAMES);
    let mut alice = sasl_client("SCRAM-SHA-512", "alice", "alice-secret");
    alice[1] = "security.protocol=SASL_SSL".into();
    alice.extend(["-X".into(), format!("ssl.ca.location={}", gateway_pki.ca.display())]);
    let out =
        run_client(&link, &["produce", "--bootstrap", &bootstrap, "--topic", "managed", "--count", "3000"], &alice)
            .await;
    assert_eq!(stdout_of(&out).trim(), "produced 3000 errors 0");
    let out = run_client(
        &link,
        &["consume", "--bootstrap", &bootstrap, "--topic", "managed", "--group", "g", "--count", "3000"],
        &alice,
    )
    .await;
    assert_eq!(stdout_of(&out).trim(), "consumed 3000 distinct 3000 duplicates 0");
    assert!(cluster.count("auth ok alice SCRAM-SHA-512 v1") >= 1 && cluster.count("auth ok gateway") >= 1);
}
