//! TLS material for the benches, made fresh in every run (rcgen; never a committed key): a CA, and
//! one certificate for 127.0.0.1 that every TLS server of a run presents (stunnel before the mock
//! brokers, the gateway, a stand-in broker, another proxy) and that every TLS client checks.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

pub struct Pki {
    /// Holds the files until the run ends (e2e.rs writes stunnel's configuration here too;
    /// connections.rs only keeps it).
    #[allow(dead_code)]
    pub dir: tempfile::TempDir,
    /// The CA certificate, PEM.
    pub ca: PathBuf,
    /// The servers' certificate (SANs 127.0.0.1, localhost, *.bench.test) and its key, PEM.
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, "kafka-gateway bench CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(params, ca_key);

        // rcgen makes "127.0.0.1" an IP address SAN: what librdkafka (OpenSSL) and rustls check
        // when they dial 127.0.0.1. `*.bench.test` is for proxies that want a distinct host name
        // per bootstrap server (kafka_proxy: benches/README.md), resolved to 127.0.0.1 by them.
        let names = ["127.0.0.1", "localhost", "*.bench.test"].map(str::to_owned).to_vec();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();

        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let ca = write("ca.pem", ca_cert.pem());
        let cert = write("server.pem", cert.pem());
        let key = write("server-key.pem", key.serialize_pem());
        Self { dir, ca, cert, key }
    }
}
