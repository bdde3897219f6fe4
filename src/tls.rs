//! TLS on either side of a session: the listener group's certificate towards its clients
//! ([`Acceptor`], `[listeners.<group>.tls]`) and `[upstream.tls]` towards the brokers
//! ([`Connector`]), loaded from PEM files and loaded again when the files change.
//!
//! A wrong setup fails with a sentence that names its likely cause: a plaintext client on a TLS
//! listener is told apart by its first byte (a Kafka frame's size starts with 0, a TLS handshake
//! with 0x16), and handshake failures are explained from rustls' error, never shown as a frame
//! size or an allocation.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme,
};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use crate::config::{ClientTls, ServerTls};

/// TLS material that could not be loaded, naming the configuration key, or a handshake that
/// failed, with its likely cause.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot read {}: {source}", path.display())]
    Read { key: String, path: PathBuf, source: io::Error },
    #[error("{key}: {} holds no PEM certificate", path.display())]
    NoCertificate { key: String, path: PathBuf },
    #[error("{key}: {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)", path.display())]
    NoKey { key: String, path: PathBuf },
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error(
        "a plaintext client reached a TLS listener (its first bytes are not a TLS handshake): give the client \
         security.protocol=SSL or SASL_SSL, or remove this group's [tls]"
    )]
    PlaintextClient,
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(e, path, key))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { key: key.to_owned(), path: path.to_owned() });
    }
    Ok(certs)
}

fn read_key(path: &Path, key: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey { key: key.to_owned(), path: path.to_owned() },
        e => pem_error(e, path, key),
    })
}

fn pem_error(e: rustls::pki_types::pem::Error, path: &Path, key: &str) -> TlsError {
    match e {
        rustls::pki_types::pem::Error::Io(source) => {
            TlsError::Read { key: key.to_owned(), path: path.to_owned(), source }
        }
        e => TlsError::Invalid { key: key.to_owned(), reason: format!("{}: {e}", path.display()) },
    }
}

fn read_roots(path: &Path, key: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path, key)? {
        roots
            .add(cert)
            .map_err(|e| TlsError::Invalid { key: key.to_owned(), reason: format!("{}: {e}", path.display()) })?;
    }
    Ok(roots)
}

fn invalid(key: &str) -> impl Fn(rustls::Error) -> TlsError + '_ {
    move |e| TlsError::Invalid { key: key.to_owned(), reason: e.to_string() }
}

/// The server side of a group's TLS, from its files.
fn server_config(files: &ServerTls, key: &str) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = read_certs(&files.cert, &format!("{key}.cert"))?;
    let private = read_key(&files.key, &format!("{key}.key"))?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(invalid(key))?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let roots = read_roots(ca, &format!("{key}.client_ca"))?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Invalid { key: format!("{key}.client_ca"), reason: e.to_string() })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    // Checks that the key belongs to the certificate.
    let config = builder.with_single_cert(chain, private).map_err(invalid(&format!("{key}.key")))?;
    Ok(Arc::new(config))
}

/// The client side towards the brokers, from `[upstream.tls]`.
fn client_config(tls: &ClientTls) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(invalid("upstream.tls"))?;
    let builder = if tls.insecure_skip_verify {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
    } else {
        let roots = match &tls.ca {
            Some(ca) => read_roots(ca, "upstream.tls.ca")?,
            None => system_roots()?,
        };
        builder.with_root_certificates(roots)
    };
    let config = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(read_certs(cert, "upstream.tls.cert")?, read_key(key, "upstream.tls.key")?)
            .map_err(invalid("upstream.tls.key"))?,
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The system's CA certificates (/etc/ssl/certs and the like).
fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(TlsError::Invalid {
            key: "upstream.tls.ca".into(),
            reason: "no CA given and no system CA certificates found; set ca to the cluster's CA".into(),
        });
    }
    Ok(roots)
}

/// Each file's modification time and length: a new file, a rewrite or a Kubernetes secret's
/// symlink swap all change it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Vec<Option<(SystemTime, u64)>>);

impl Stamp {
    fn of(paths: &[PathBuf]) -> Self {
        Self(
            paths.iter().map(|p| std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len())))).collect(),
        )
    }
}

/// A TLS configuration built from files, built again when they change. A new set of files that
/// does not load keeps the old configuration serving.
struct Reloading<T> {
    paths: Vec<PathBuf>,
    current: RwLock<(Stamp, T)>,
    /// The files as they were when a load last failed, so that one bad rotation is reported once.
    failed: Mutex<Option<Stamp>>,
}

/// What a look at the files found.
#[derive(Debug)]
pub enum Reload {
    Unchanged,
    Loaded,
    /// The files changed but do not load; the previous configuration still serves.
    Refused(TlsError),
}

impl<T: Clone> Reloading<T> {
    fn new(paths: Vec<PathBuf>, load: impl FnOnce() -> Result<T, TlsError>) -> Result<Self, TlsError> {
        let stamp = Stamp::of(&paths);
        Ok(Self { paths, current: RwLock::new((stamp, load()?)), failed: Mutex::new(None) })
    }

    fn get(&self) -> T {
        self.current.read().unwrap_or_else(|p| p.into_inner()).1.clone()
    }

    fn reload(&self, load: impl FnOnce() -> Result<T, TlsError>) -> Reload {
        let stamp = Stamp::of(&self.paths);
        if self.current.read().unwrap_or_else(|p| p.into_inner()).0 == stamp {
            return Reload::Unchanged;
        }
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if failed.as_ref() == Some(&stamp) {
            return Reload::Unchanged;
        }
        match load() {
            Ok(loaded) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = (stamp, loaded);
                *failed = None;
                Reload::Loaded
            }
            Err(e) => {
                *failed = Some(stamp);
                Reload::Refused(e)
            }
        }
    }
}

/// TLS towards one listener group's clients.
pub struct Acceptor {
    files: ServerTls,
    /// `listeners.<group>.tls`, for messages.
    key: String,
    config: Reloading<Arc<ServerConfig>>,
}

impl Acceptor {
    pub fn load(files: &ServerTls, key: &str) -> Result<Self, TlsError> {
        let paths = [Some(&files.cert), Some(&files.key), files.client_ca.as_ref()];
        let paths = paths.into_iter().flatten().cloned().collect();
        let config = Reloading::new(paths, || server_config(files, key))?;
        Ok(Self { files: files.clone(), key: key.to_owned(), config })
    }

    /// Loads the files again if they changed since the last look.
    pub fn reload(&self) -> Reload {
        self.config.reload(|| server_config(&self.files, &self.key))
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Completes the handshake of an accepted connection.
    pub async fn accept(&self, tcp: TcpStream) -> Result<TlsStream<TcpStream>, TlsError> {
        let mut first = [0u8; 1];
        // A Kafka frame starts with its size, whose first byte is 0 below 16 MiB; a TLS
        // handshake record starts with 0x16.
        if tcp.peek(&mut first).await.map_err(|e| TlsError::Handshake(e.to_string()))? == 1 && first[0] != 0x16 {
            return Err(TlsError::PlaintextClient);
        }
        let acceptor = TlsAcceptor::from(self.config.get());
        match acceptor.accept(tcp).await {
            Ok(stream) => Ok(TlsStream::Server(stream)),
            Err(e) => Err(TlsError::Handshake(explain(&e, Side::Server))),
        }
    }

    /// Which of `hosts` the current certificate does not cover (by its SANs), for `check`.
    pub fn uncovered<'h>(&self, hosts: impl IntoIterator<Item = &'h str>) -> Result<Vec<&'h str>, TlsError> {
        let chain = read_certs(&self.files.cert, &format!("{}.cert", self.key))?;
        let leaf = webpki::EndEntityCert::try_from(&chain[0])
            .map_err(|e| TlsError::Invalid { key: format!("{}.cert", self.key), reason: e.to_string() })?;
        Ok(hosts
            .into_iter()
            .filter(|host| match ServerName::try_from(*host) {
                Ok(name) => leaf.verify_is_valid_for_subject_name(&name).is_err(),
                Err(_) => true,
            })
            .collect())
    }
}

/// TLS towards the brokers.
pub struct Connector {
    files: ClientTls,
    config: Reloading<Arc<ClientConfig>>,
}

impl Connector {
    pub fn load(files: &ClientTls) -> Result<Self, TlsError> {
        let paths = [files.ca.as_ref(), files.cert.as_ref(), files.key.as_ref()];
        let paths = paths.into_iter().flatten().cloned().collect();
        let config = Reloading::new(paths, || client_config(files))?;
        Ok(Self { files: files.clone(), config })
    }

    pub fn reload(&self) -> Reload {
        self.config.reload(|| client_config(&self.files))
    }

    pub fn insecure(&self) -> bool {
        self.files.insecure_skip_verify
    }

    /// Completes the handshake with a broker whose advertised (or configured) host is `host`: the
    /// name its certificate is checked for, as a client would, unless `server_name` overrides it.
    pub async fn connect(&self, host: &str, tcp: TcpStream) -> Result<TlsStream<TcpStream>, TlsError> {
        let name = self.files.server_name.as_deref().unwrap_or(host);
        let name = ServerName::try_from(name.to_owned())
            .map_err(|_| TlsError::Handshake(format!("'{name}' is not a name a certificate can be checked for")))?;
        match TlsConnector::from(self.config.get()).connect(name, tcp).await {
            Ok(stream) => Ok(TlsStream::Client(stream)),
            Err(e) => Err(TlsError::Handshake(explain(&e, Side::Client))),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    /// The gateway accepts (a client's handshake).
    Server,
    /// The gateway connects (to a broker).
    Client,
}

/// A handshake failure as a sentence with its likely cause.
fn explain(e: &io::Error, side: Side) -> String {
    let peer = if side == Side::Server { "the client" } else { "the broker" };
    let Some(rustls) = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) else {
        return match e.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => {
                format!("{peer} closed the connection during the handshake ({e})")
            }
            _ => e.to_string(),
        };
    };
    use rustls::Error::*;
    let cause = match rustls {
        InvalidMessage(_) if side == Side::Client => {
            "the broker does not speak TLS on this port: remove [upstream.tls], or point at its SSL listener".into()
        }
        InvalidMessage(_) => "the client does not speak TLS".into(),
        InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => {
            format!("{peer}'s certificate has expired")
        }
        InvalidCertificate(CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. }) => {
            format!("{peer}'s certificate is not valid yet (check the clocks)")
        }
        InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }) => {
            "the broker's certificate does not name the host it was dialed as: set upstream.tls.server_name, or \
             make the broker advertise a name its certificate covers"
                .into()
        }
        InvalidCertificate(CertificateError::UnknownIssuer) if side == Side::Client => {
            "the broker's certificate is not signed by a CA the gateway trusts: set upstream.tls.ca".into()
        }
        InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the client's certificate is not signed by the group's client_ca".into()
        }
        NoCertificatesPresented => "the client presented no certificate, and the group's client_ca requires one".into(),
        AlertReceived(AlertDescription::CertificateRequired) => {
            "the broker requires a client certificate: set upstream.tls.cert and key".into()
        }
        AlertReceived(AlertDescription::UnknownCA | AlertDescription::BadCertificate) if side == Side::Client => {
            "the broker refused the gateway's certificate (upstream.tls.cert)".into()
        }
        AlertReceived(alert) => format!("{peer} refused the handshake ({alert:?})"),
        other => other.to_string(),
    };
    format!("{cause} ({rustls})")
}

/// `insecure_skip_verify`: any certificate is taken, though the handshake still proves the peer
/// holds the key of the certificate it showed.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
