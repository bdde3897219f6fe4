//! TLS parts for the tests: certificates made fresh in every run (rcgen), and a cluster that can
//! only be reached over TLS — stunnel (Debian's stunnel4, OpenSSL) in front of each broker of
//! librdkafka's mock cluster, which advertises stunnel's ports, so that librdkafka clients reach it
//! directly over TLS as a fair reference.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rdkafka::client::{Client, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::types::RDKafkaType;

use super::{RACKS, free_ports};

/// A certificate authority in a temporary directory, and the certificates it signs.
pub struct Pki {
    pub dir: tempfile::TempDir,
    /// The CA certificate, PEM.
    pub ca: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM files.
#[derive(Clone)]
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, format!("{name} test CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let ca = dir.path().join(format!("{name}-ca.pem"));
        std::fs::write(&ca, cert.pem()).unwrap();
        Self { dir, ca, issuer: Issuer::new(params, key) }
    }

    /// A server certificate for `names` (DNS names, wildcards or IP addresses), its common name the
    /// first of them.
    pub fn server(&self, file: &str, names: &[&str]) -> Leaf {
        self.leaf(file, names, ExtendedKeyUsagePurpose::ServerAuth, |_| {})
    }

    /// A client certificate with common name `cn`.
    pub fn client(&self, file: &str, cn: &str) -> Leaf {
        self.leaf(file, &[cn], ExtendedKeyUsagePurpose::ClientAuth, |_| {})
    }

    /// A server certificate whose validity ended yesterday.
    pub fn expired(&self, file: &str, names: &[&str]) -> Leaf {
        self.leaf(file, names, ExtendedKeyUsagePurpose::ServerAuth, |params| {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        })
    }

    fn leaf(
        &self,
        file: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> Leaf {
        let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        adjust(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let leaf = Leaf {
            cert: self.dir.path().join(format!("{file}.pem")),
            key: self.dir.path().join(format!("{file}-key.pem")),
        };
        std::fs::write(&leaf.cert, cert.pem()).unwrap();
        std::fs::write(&leaf.key, key.serialize_pem()).unwrap();
        leaf
    }
}

/// librdkafka's mock cluster (3 brokers, the guides' racks) reachable only through stunnel: the
/// brokers advertise stunnel's ports.
pub struct TlsCluster {
    /// The mock's own client, leaked so that the cluster can be borrowed for the whole test.
    owner: &'static Client<DefaultClientContext>,
    /// stunnel's port for broker N is `ports[N - 1]`.
    pub ports: [u16; 3],
    /// The brokers' own plaintext addresses (not advertised).
    pub plaintext: Vec<String>,
    stunnel: Child,
    _dir: tempfile::TempDir,
}

impl TlsCluster {
    /// The cluster behind stunnel, which presents `cert` for every broker.
    pub fn start(cert: &Leaf) -> Self {
        let mut config = ClientConfig::new();
        config.set("test.mock.num.brokers", "3");
        let native = config.create_native_config().unwrap();
        let owner = Client::new(&config, native, RDKafkaType::RD_KAFKA_PRODUCER, DefaultClientContext).unwrap();
        let owner: &'static Client<DefaultClientContext> = Box::leak(Box::new(owner));
        let mock = owner.mock_cluster().expect("a mock cluster");
        for (i, rack) in RACKS.iter().enumerate() {
            mock.broker_rack(i as i32 + 1, rack).unwrap();
        }
        let plaintext: Vec<String> = mock.bootstrap_servers().split(',').map(str::to_owned).collect();
        let base = free_ports(3);
        let ports = [base + 1, base + 2, base + 3];
        let dir = tempfile::tempdir().unwrap();
        let mut conf = String::from("foreground = yes\npid =\ndebug = 3\n");
        for (n, (port, broker)) in ports.iter().zip(&plaintext).enumerate() {
            conf += &format!(
                "[broker{}]\naccept = 127.0.0.1:{port}\nconnect = {broker}\ncert = {}\nkey = {}\n",
                n + 1,
                cert.cert.display(),
                cert.key.display()
            );
        }
        let conf_path = dir.path().join("stunnel.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let stunnel = Command::new("stunnel4")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("stunnel4 (scripts/test-tools installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        for port in ports {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "stunnel did not open {port}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let cluster = Self { owner, ports, plaintext, stunnel, _dir: dir };
        cluster.advertise(&ports);
        cluster
    }

    pub fn mock(&self) -> MockCluster<'static, DefaultClientContext> {
        self.owner.mock_cluster().expect("a mock cluster")
    }

    /// stunnel's addresses, as clients bootstrap from them.
    pub fn bootstrap(&self) -> String {
        self.ports.map(|p| format!("127.0.0.1:{p}")).join(",")
    }

    /// Makes the brokers advertise `ports` (broker N on `ports[N - 1]`) on 127.0.0.1.
    fn advertise(&self, ports: &[u16]) {
        // SAFETY: `owner` created the mock cluster and lives as long as the process; librdkafka
        // copies the host string.
        unsafe {
            let cluster = rdkafka::bindings::rd_kafka_handle_mock_cluster(self.owner.native_ptr());
            for (n, &port) in ports.iter().enumerate() {
                rdkafka::bindings::rd_kafka_mock_broker_set_host_port(
                    cluster,
                    n as i32 + 1,
                    c"127.0.0.1".as_ptr(),
                    port.into(),
                );
            }
        }
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        let _ = self.stunnel.kill();
        let _ = self.stunnel.wait();
    }
}

/// Writes `text` to a file in `dir` and returns its path.
pub fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}
