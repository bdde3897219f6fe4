//! The configuration of TLS and SASL: `[listeners.<group>.tls]` (the certificate a group shows its
//! clients), `[upstream.tls]` and `[upstream.sasl]` (how the gateway reaches the brokers).
//!
//! Shapes and files are checked here; the PEM contents are loaded and checked by `tls.rs`, before
//! the gateway listens.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

/// `[listeners.<group>.tls]`: the group's clients speak TLS to the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// The certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Clients must present a certificate signed by one of these CAs (mTLS).
    pub client_ca: Option<PathBuf>,
}

/// `[upstream.tls]`: the gateway speaks TLS to the brokers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// The CAs the brokers' certificates are checked against; the system's roots otherwise.
    pub ca: Option<PathBuf>,
    /// A certificate and key the gateway presents (mTLS towards the brokers).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The name every broker's certificate is checked for, instead of the host the cluster
    /// advertises for it.
    pub server_name: Option<String>,
    /// Accept any certificate. Dangerous: anyone on the path can read and change the traffic.
    pub insecure_skip_verify: bool,
}

/// `[upstream.sasl]`: how the gateway's own connections (discovery, `check`) authenticate.
/// Clients' connections carry their own SASL exchange through the gateway untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sasl {
    pub mechanism: Mechanism,
    pub username: String,
    pub password: Secret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Mechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl Mechanism {
    /// The name SaslHandshake carries.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// A password. It prints as `***` wherever a configuration or an error is printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

// ---- the file's shape ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServerTls {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClientTls {
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    server_name: Option<String>,
    #[serde(default)]
    insecure_skip_verify: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSasl {
    mechanism: Mechanism,
    username: String,
    password: Option<String>,
    password_file: Option<PathBuf>,
}

/// Never prints the password, even when figment or a test prints the raw configuration.
impl fmt::Debug for RawSasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawSasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password_file", &self.password_file)
            .finish_non_exhaustive()
    }
}

/// A file the configuration names must exist and be readable now, not at the first connection.
fn readable(path: &Path, key: &str) -> Result<PathBuf, ConfigError> {
    match std::fs::File::open(path) {
        Ok(_) if path.is_file() => Ok(path.to_path_buf()),
        Ok(_) => Err(ConfigError::new(key, format!("{} is not a file", path.display()))),
        Err(e) => Err(ConfigError::new(key, format!("cannot read {}: {e}", path.display()))),
    }
}

impl RawServerTls {
    pub(super) fn validate(self, prefix: &str) -> Result<ServerTls, ConfigError> {
        Ok(ServerTls {
            cert: readable(&self.cert, &format!("{prefix}.cert"))?,
            key: readable(&self.key, &format!("{prefix}.key"))?,
            client_ca: self.client_ca.map(|ca| readable(&ca, &format!("{prefix}.client_ca"))).transpose()?,
        })
    }
}

impl RawClientTls {
    pub(super) fn validate(self) -> Result<ClientTls, ConfigError> {
        let key = |field: &str| format!("upstream.tls.{field}");
        match (&self.cert, &self.key) {
            (Some(_), None) => return Err(ConfigError::new(key("key"), "missing: cert needs its key")),
            (None, Some(_)) => return Err(ConfigError::new(key("cert"), "missing: key needs its cert")),
            _ => {}
        }
        if let Some(name) = &self.server_name {
            if name.is_empty() || rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
                return Err(ConfigError::new(key("server_name"), format!("'{name}' is not a host name or address")));
            }
        }
        Ok(ClientTls {
            ca: self.ca.map(|p| readable(&p, &key("ca"))).transpose()?,
            cert: self.cert.map(|p| readable(&p, &key("cert"))).transpose()?,
            key: self.key.map(|p| readable(&p, &key("key"))).transpose()?,
            server_name: self.server_name,
            insecure_skip_verify: self.insecure_skip_verify,
        })
    }
}

impl RawSasl {
    pub(super) fn validate(self) -> Result<Sasl, ConfigError> {
        let key = |field: &str| format!("upstream.sasl.{field}");
        if self.username.is_empty() {
            return Err(ConfigError::new(key("username"), "must not be empty"));
        }
        let password = match (self.password, self.password_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(key("password"), "give password or password_file, not both"));
            }
            (None, None) => return Err(ConfigError::new(key("password"), "missing: give password or password_file")),
            (Some(password), None) => password,
            // A secret mounted as a file usually ends with a newline nobody meant.
            (None, Some(path)) => {
                std::fs::read_to_string(&path).map(|s| s.trim_end_matches(['\n', '\r']).to_owned()).map_err(|e| {
                    ConfigError::new(key("password_file"), format!("cannot read {}: {e}", path.display()))
                })?
            }
        };
        if password.is_empty() {
            return Err(ConfigError::new(key("password"), "must not be empty"));
        }
        Ok(Sasl { mechanism: self.mechanism, username: self.username, password: Secret(password) })
    }
}
