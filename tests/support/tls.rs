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
use rdkafka::client::DefaultClientContext;
use rdkafka::mocking::MockCluster;

use super::{OwnedMock, free_ports};

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

/// stunnel (Debian's stunnel4, OpenSSL) terminating TLS in front of `targets`, one port each.
pub struct Stunnel {
    /// stunnel's port for `targets[N]` is `ports[N]`.
    pub ports: Vec<u16>,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Stunnel {
    /// Presents `cert` on a port per target.
    pub fn start(cert: &Leaf, targets: &[String]) -> Self {
        let base = free_ports(targets.len() as u16);
        let ports: Vec<u16> = (1..=targets.len() as u16).map(|n| base + n).collect();
        let dir = tempfile::tempdir().unwrap();
        let mut conf = String::from("foreground = yes\npid =\ndebug = 3\n");
        for (n, (port, target)) in ports.iter().zip(targets).enumerate() {
            conf += &format!(
                "[service{n}]\naccept = 127.0.0.1:{port}\nconnect = {target}\ncert = {}\nkey = {}\n",
                cert.cert.display(),
                cert.key.display()
            );
        }
        let conf_path = dir.path().join("stunnel.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("stunnel4")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("stunnel4 (scripts/test-tools installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        for &port in &ports {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "stunnel did not open {port}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Self { ports, child, _dir: dir }
    }

    /// stunnel's addresses, as clients bootstrap from them.
    pub fn bootstrap(&self) -> String {
        self.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
    }
}

impl Drop for Stunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// librdkafka's mock cluster (3 brokers, the guides' racks) reachable only through stunnel: the
/// brokers advertise stunnel's ports.
pub struct TlsCluster {
    owned: OwnedMock,
    stunnel: Stunnel,
}

impl TlsCluster {
    /// The cluster behind stunnel, which presents `cert` for every broker.
    pub fn start(cert: &Leaf) -> Self {
        let owned = OwnedMock::new();
        let stunnel = Stunnel::start(cert, &owned.plaintext());
        owned.advertise(&stunnel.ports);
        Self { owned, stunnel }
    }

    pub fn mock(&self) -> MockCluster<'static, DefaultClientContext> {
        self.owned.mock()
    }

    /// stunnel's addresses, as clients bootstrap from them.
    pub fn bootstrap(&self) -> String {
        self.stunnel.bootstrap()
    }
}

/// Writes `text` to a file in `dir` and returns its path.
pub fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}
