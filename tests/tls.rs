//! TLS with real parts: a cluster reachable only over TLS (stunnel, OpenSSL, in front of each
//! broker of librdkafka's mock cluster), librdkafka clients speaking TLS to the gateway from a
//! network namespace that reaches only the gateway, mutual TLS, certificates rotated under a
//! running gateway, and every wrong setup failing with a sentence.

mod support;

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use kafka_gateway::Config;
use rustls::pki_types::ServerName;
use support::tls::{Leaf, Pki, TlsCluster};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The AWS per-AZ group of the guides on `bind`, in front of `bootstrap`, with `extra` TOML lines
/// appended (TLS sections).
fn config(bind: IpAddr, bootstrap: &str, extra: &str) -> Config {
    Config::from_toml(&config_text(bind, 9092, bootstrap, extra)).unwrap()
}

fn config_text(bind: IpAddr, base: u16, bootstrap: &str, extra: &str) -> String {
    format!(
        r#"
        [upstream]
        bootstrap_servers = "{bootstrap}"
        metadata_refresh_secs = 2
        connect_timeout_ms = 5000
        [listeners.tidb]
        bind = "{bind}"
        bootstrap_port = {base}
        broker_port_base = {base}
        advertised = "b{{node_id}}.{{az}}.unique_name.aws.plc.tidbcloud.com:{{port}}"
        az_by_rack = {{ "us-west-2a" = "usw2-az1", "us-west-2c" = "usw2-az2", "us-west-2b" = "usw2-az3" }}
        {extra}
        "#
    )
}

fn upstream_tls(ca: &Path) -> String {
    format!("[upstream.tls]\nca = \"{}\"\n", ca.display())
}

fn listener_tls(leaf: &Leaf, client_ca: Option<&Path>) -> String {
    let mut text =
        format!("[listeners.tidb.tls]\ncert = \"{}\"\nkey = \"{}\"\n", leaf.cert.display(), leaf.key.display());
    if let Some(ca) = client_ca {
        text += &format!("client_ca = \"{}\"\n", ca.display());
    }
    text
}

/// A certificate for the gateway's names: each broker's advertised name, and the gateway's own
/// address (where clients bootstrap in these tests). (A wildcard per AZ covers the same names for
/// rustls, but OpenSSL, librdkafka's TLS, refuses a wildcard over labels with an underscore, as the
/// guide's placeholder `unique_name` has.)
fn gateway_cert(pki: &Pki, ip: IpAddr) -> Leaf {
    let ip = ip.to_string();
    pki.server("gateway", &[AWS_NAMES[0], AWS_NAMES[1], AWS_NAMES[2], &ip])
}

/// librdkafka properties for TLS to the gateway, checking its certificate against `ca`.
fn ssl_client(ca: &Path) -> Vec<String> {
    vec!["-X".into(), "security.protocol=SSL".into(), "-X".into(), format!("ssl.ca.location={}", ca.display())]
}

async fn run_client(link: &PrivateLink, args: &[&str], extra: &[String]) -> std::process::Output {
    let client = example("kafka_client");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(extra.iter().map(String::as_str));
    link.run(&client, &all).await
}

fn expected_names() -> String {
    AWS_NAMES.iter().enumerate().map(|(i, name)| format!("broker {} {name}:{}\n", i + 1, 9093 + i)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_reachable_only_over_tls_serves_clients_through_the_gateway() {
    let pki = Pki::new("cluster");
    let cluster = TlsCluster::start(&pki.server("broker", &["127.0.0.1", "localhost"]));
    cluster.mock().create_topic("secure", 3, 3).unwrap();
    cluster.mock().create_topic("direct", 3, 3).unwrap();

    // The reference: librdkafka reaches the cluster directly over TLS, and only so.
    let client = example("kafka_client");
    let direct_tls = ["-X", "security.protocol=SSL", "-X"];
    let ca = format!("ssl.ca.location={}", pki.ca.display());
    let tls_bootstrap = cluster.bootstrap();
    let mut args = vec!["produce", "--bootstrap", &tls_bootstrap, "--topic", "direct", "--count", "1000"];
    args.extend(direct_tls);
    args.push(&ca);
    let out = tokio::process::Command::new(&client).args(&args).output().await.unwrap();
    assert_eq!(stdout_of(&out).trim(), "produced 1000 errors 0");
    let plaintext = tokio::process::Command::new(&client)
        .args(["metadata", "--bootstrap", &cluster.bootstrap(), "--timeout-secs", "3"])
        .output()
        .await
        .unwrap();
    assert!(!plaintext.status.success(), "the cluster answered plaintext on its TLS ports");

    let link = PrivateLink::new();
    let config = config(link.gateway_ip.into(), &cluster.bootstrap(), &upstream_tls(&pki.ca));
    let bootstrap = bootstrap_of(&config).to_string();
    let _gateway = start(config).await;
    link.set_hosts(&AWS_NAMES);
    let out = run_client(&link, &["metadata", "--bootstrap", &bootstrap], &[]).await;
    assert_eq!(stdout_of(&out), expected_names());
    let out =
        run_client(&link, &["produce", "--bootstrap", &bootstrap, "--topic", "secure", "--count", "5000"], &[]).await;
    assert_eq!(stdout_of(&out).trim(), "produced 5000 errors 0");
    let out = run_client(
        &link,
        &["consume", "--bootstrap", &bootstrap, "--topic", "secure", "--group", "g", "--count", "5000"],
        &[],
    )
    .await;
    assert_eq!(stdout_of(&out).trim(), "consumed 5000 distinct 5000 duplicates 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_both_sides_with_the_names_the_certificate_covers() {
    let cluster_pki = Pki::new("cluster");
    let cluster = TlsCluster::start(&cluster_pki.server("broker", &["127.0.0.1"]));
    cluster.mock().create_topic("both", 3, 3).unwrap();
    let link = PrivateLink::new();
    let pki = Pki::new("gateway");
    let tls = listener_tls(&gateway_cert(&pki, link.gateway_ip.into()), None);
    let config = config(link.gateway_ip.into(), &cluster.bootstrap(), &(upstream_tls(&cluster_pki.ca) + &tls));
    let bootstrap = bootstrap_of(&config).to_string();
    let _gateway = start(config).await;
    link.set_hosts(&AWS_NAMES);

    // librdkafka checks every broker's name against the certificate (its default since 1.9).
    let ssl = ssl_client(&pki.ca);
    let out = run_client(&link, &["metadata", "--bootstrap", &bootstrap], &ssl).await;
    assert_eq!(stdout_of(&out), expected_names());
    let out =
        run_client(&link, &["produce", "--bootstrap", &bootstrap, "--topic", "both", "--count", "5000"], &ssl).await;
    assert_eq!(stdout_of(&out).trim(), "produced 5000 errors 0");
    let out = run_client(
        &link,
        &["consume", "--bootstrap", &bootstrap, "--topic", "both", "--group", "g", "--count", "5000"],
        &ssl,
    )
    .await;
    assert_eq!(stdout_of(&out).trim(), "consumed 5000 distinct 5000 duplicates 0");

    // The same client refuses the gateway when it trusts another CA: the names are checked.
    let other = Pki::new("other");
    let out =
        run_client(&link, &["metadata", "--bootstrap", &bootstrap, "--timeout-secs", "3"], &ssl_client(&other.ca))
            .await;
    assert!(!out.status.success(), "a client that does not trust the gateway's CA got through");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_a_client_certificate_and_refuses_a_missing_one() {
    let logs = Logs::capture();
    let mock = mock_cluster();
    mock.create_topic("mtls", 1, 3).unwrap();
    let link = PrivateLink::new();
    let pki = Pki::new("gateway");
    let clients = Pki::new("clients");
    let tls = listener_tls(&gateway_cert(&pki, link.gateway_ip.into()), Some(&clients.ca));
    let config = config(link.gateway_ip.into(), &mock.bootstrap_servers(), &tls);
    let bootstrap = bootstrap_of(&config).to_string();
    let _gateway = start(config).await;
    link.set_hosts(&AWS_NAMES);

    let tidb = clients.client("tidb-cloud", "tidb-cloud-changefeed");
    let mut with_cert = ssl_client(&pki.ca);
    with_cert.extend([
        "-X".into(),
        format!("ssl.certificate.location={}", tidb.cert.display()),
        "-X".into(),
        format!("ssl.key.location={}", tidb.key.display()),
    ]);
    let out =
        run_client(&link, &["produce", "--bootstrap", &bootstrap, "--topic", "mtls", "--count", "500"], &with_cert)
            .await;
    assert_eq!(stdout_of(&out).trim(), "produced 500 errors 0");

    let without = ssl_client(&pki.ca);
    let out = run_client(&link, &["metadata", "--bootstrap", &bootstrap, "--timeout-secs", "3"], &without).await;
    assert!(!out.status.success(), "a client without a certificate got through");
    assert!(logs.wait_for("the client presented no certificate").await, "{}", logs.text());

    // A certificate from another CA is refused too.
    let stranger_pki = Pki::new("stranger");
    let stranger = stranger_pki.client("stranger", "someone-else");
    let mut foreign = ssl_client(&pki.ca);
    foreign.extend([
        "-X".into(),
        format!("ssl.certificate.location={}", stranger.cert.display()),
        "-X".into(),
        format!("ssl.key.location={}", stranger.key.display()),
    ]);
    let refusals = || logs.text().matches("closing connection: client TLS").count();
    let before = refusals();
    let out = run_client(&link, &["metadata", "--bootstrap", &bootstrap, "--timeout-secs", "3"], &foreign).await;
    assert!(!out.status.success(), "a client with a foreign certificate got through");
    // OpenSSL sends no certificate the server's CA list does not name, so the refusal reads as a
    // missing certificate; one a client did send would read "not signed by the group's client_ca".
    assert!(eventually(Duration::from_secs(15), || refusals() > before).await, "{}", logs.text());
    // rustls sends the certificate it is given: the gateway names the CA mismatch.
    let tcp = TcpStream::connect(bootstrap.as_str()).await.unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::pem::PemObject::from_pem_file(&pki.ca).unwrap()).unwrap();
    let chain = vec![rustls::pki_types::pem::PemObject::from_pem_file(&stranger.cert).unwrap()];
    let key = rustls::pki_types::pem::PemObject::from_pem_file(&stranger.key).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let name = ServerName::IpAddress(link.gateway_ip.into());
    if let Ok(mut tls) = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await {
        // TLS 1.3: the client's certificate is judged after the client thinks it is done.
        let _ = tls.write_all(&request_frame(18, 0, 1, &[])).await;
        let _ = tls.read(&mut [0; 16]).await;
    }
    assert!(logs.wait_for("not signed by the group's client_ca").await, "{}", logs.text());
}

/// A TLS client of the test's own, trusting `ca`, that returns the common name of the certificate
/// the gateway presented.
async fn presented_name(addr: std::net::SocketAddr, ca: &Path) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::IpAddress(addr.ip().into());
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| e.to_string())?;
    let der = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    // The common name is the only UTF8String/PrintableString after the subject's CN OID here.
    let text = String::from_utf8_lossy(&der);
    let cn = ["one.example", "two.example"].iter().find(|cn| text.contains(**cn)).copied().unwrap_or("?");
    Ok(cn.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_serves_new_connections_and_a_bad_one_keeps_the_old() {
    let logs = Logs::capture();
    let mock = mock_cluster();
    let pki = Pki::new("gateway");
    let one = pki.server("one", &["one.example", "127.0.0.1"]);
    let two = pki.server("two", &["two.example", "127.0.0.1"]);
    // The gateway reads its certificate from files that are replaced under it.
    let live = Leaf { cert: pki.dir.path().join("live.pem"), key: pki.dir.path().join("live-key.pem") };
    std::fs::copy(&one.cert, &live.cert).unwrap();
    std::fs::copy(&one.key, &live.key).unwrap();
    let base = free_ports(3);
    let text = config_text("127.0.0.1".parse().unwrap(), base, &mock.bootstrap_servers(), &listener_tls(&live, None));
    let config = Config::from_toml(&text).unwrap();
    let bootstrap = bootstrap_of(&config);
    let _gateway = start(config).await;
    assert_eq!(presented_name(bootstrap, &pki.ca).await.unwrap(), "one.example");

    std::fs::copy(&two.key, &live.key).unwrap();
    std::fs::copy(&two.cert, &live.cert).unwrap();
    let mut seen = String::new();
    for _ in 0..100 {
        seen = presented_name(bootstrap, &pki.ca).await.unwrap_or_default();
        if seen == "two.example" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(seen, "two.example", "the rotated certificate serves new connections");
    assert!(logs.wait_for("certificate files changed, loaded").await);

    // A broken file: the previous certificate keeps serving, and the operator reads why.
    std::fs::write(&live.cert, "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n").unwrap();
    assert!(logs.wait_for("the previous ones still serve").await, "{}", logs.text());
    assert_eq!(presented_name(bootstrap, &pki.ca).await.unwrap(), "two.example");
}

/// Runs the gateway binary with `args`, returning its status and everything it printed.
fn gateway_command(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-gateway")).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn check_with(dir: &Path, text: &str) -> (bool, String) {
    let path = support::tls::file(dir, "gateway.toml", text);
    gateway_command(&["check", "--config", path.to_str().unwrap()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_setups_fail_with_a_sentence_that_names_the_cause() {
    let logs = Logs::capture();
    let pki = Pki::new("cluster");
    let cluster = TlsCluster::start(&pki.server("broker", &["127.0.0.1"]));
    let here: IpAddr = "127.0.0.1".parse().unwrap();

    // The gateway reaching a TLS listener in plaintext.
    let (ok, out) = check_with(pki.dir.path(), &config_text(here, free_ports(3), &cluster.bootstrap(), ""));
    assert!(!ok && out.contains("[upstream.tls]"), "{out}");

    // A broker whose certificate has expired, and one issued for another name.
    let expired_pki = Pki::new("expired");
    let expired = TlsCluster::start(&expired_pki.expired("broker", &["127.0.0.1"]));
    let extra = upstream_tls(&expired_pki.ca);
    let (ok, out) = check_with(pki.dir.path(), &config_text(here, free_ports(3), &expired.bootstrap(), &extra));
    assert!(!ok && out.contains("certificate has expired"), "{out}");
    let misnamed_pki = Pki::new("misnamed");
    let misnamed = TlsCluster::start(&misnamed_pki.server("broker", &["kafka.elsewhere.example"]));
    let extra = upstream_tls(&misnamed_pki.ca);
    let (ok, out) = check_with(pki.dir.path(), &config_text(here, free_ports(3), &misnamed.bootstrap(), &extra));
    assert!(!ok && out.contains("does not name the host it was dialed as"), "{out}");
    // A CA that did not sign the brokers' certificates.
    let unrelated = Pki::new("unrelated");
    let extra = upstream_tls(&unrelated.ca);
    let (ok, out) = check_with(pki.dir.path(), &config_text(here, free_ports(3), &cluster.bootstrap(), &extra));
    assert!(!ok && out.contains("not signed by a CA the gateway trusts"), "{out}");

    // A running gateway: a TLS client on its plaintext listener, a plaintext client on its TLS one.
    let mock = mock_cluster();
    let plain_base = free_ports(3);
    let plain = Config::from_toml(&config_text(here, plain_base, &mock.bootstrap_servers(), "")).unwrap();
    let _plain = start(plain).await;
    let mut tcp = TcpStream::connect(("127.0.0.1", plain_base)).await.unwrap();
    // The first bytes of a TLS 1.2/1.3 ClientHello record.
    tcp.write_all(&[0x16, 0x03, 0x01, 0x00, 0xf4, 0x01, 0x00, 0x00, 0xf0, 0x03, 0x03]).await.unwrap();
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest).await;
    assert!(rest.is_empty());
    assert!(logs.wait_for("the client sent a TLS handshake to a plaintext listener").await, "{}", logs.text());

    let gateway_pki = Pki::new("gateway");
    let tls_base = free_ports(3);
    let text =
        config_text(here, tls_base, &mock.bootstrap_servers(), &listener_tls(&gateway_cert(&gateway_pki, here), None));
    let _tls = start(Config::from_toml(&text).unwrap()).await;
    let mut tcp = TcpStream::connect(("127.0.0.1", tls_base)).await.unwrap();
    tcp.write_all(&request_frame(18, 0, 1, &[])).await.unwrap();
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest).await;
    assert!(rest.is_empty(), "a plaintext client got an answer from a TLS listener");
    assert!(logs.wait_for("a plaintext client reached a TLS listener").await, "{}", logs.text());
    // Neither ever reads like a frame size or an allocation.
    assert!(!logs.text().contains("exceeds the limit"), "{}", logs.text());
}

#[test]
fn validate_names_the_advertised_names_a_certificate_does_not_cover() {
    let pki = Pki::new("gateway");
    // Covers AZ 1 and 2 only.
    let partial = pki.server(
        "partial",
        &["*.usw2-az1.unique_name.aws.plc.tidbcloud.com", "*.usw2-az2.unique_name.aws.plc.tidbcloud.com"],
    );
    let text = config_text("0.0.0.0".parse().unwrap(), 9092, "10.0.0.1:9092", &listener_tls(&partial, None));
    let path = support::tls::file(pki.dir.path(), "gateway.toml", &text);
    let config = path.to_str().unwrap();
    let brokers = ["--broker", "1:us-west-2a", "--broker", "2:us-west-2c", "--broker", "3:us-west-2b"];
    let (ok, out) = gateway_command(&[&["validate", "--config", config][..], &brokers].concat());
    assert!(!ok, "{out}");
    assert!(
        out.contains("listeners.tidb.tls.cert does not cover b3.usw2-az3.unique_name.aws.plc.tidbcloud.com"),
        "{out}"
    );
    assert!(!out.contains("cover b1.") && !out.contains("cover b2."), "{out}");

    // A certificate that does not load is a refused configuration, naming the key.
    std::fs::write(&partial.key, "not a key").unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_kafka-gateway")).args(["validate", "--config", config]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("listeners.tidb.tls.key"), "{stderr}");
}
