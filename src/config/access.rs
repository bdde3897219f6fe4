//! The configuration of who may connect to a listener group and for how long:
//! `[listeners.<group>.access]` (PROXY protocol, endpoint and source allowlists, a connection
//! limit, an idle timeout). What the rules do with a connection is `access.rs`.

use std::fmt;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::ConfigError;
use crate::proxy::Endpoint;

/// Whether a group's connections start with a PROXY protocol header. Never guessed from the bytes:
/// a header is only believed where the operator says a load balancer puts one, since anyone who can
/// reach a listener could otherwise claim any address and endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    #[default]
    Off,
    Required,
}

/// `[listeners.<group>.access]`, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    pub proxy_protocol: ProxyProtocol,
    /// The private-link endpoints that may connect; empty: any.
    pub allow_endpoints: Vec<Endpoint>,
    /// The client networks that may connect (the PROXY header's source, else the peer); empty: any.
    pub allow_sources: Vec<IpNet>,
    /// Client connections open at once in the group, beyond which new ones are refused; None: no limit.
    pub max_connections: Option<usize>,
    /// A client connection with no request (and none awaiting its answer) for this long closes.
    pub idle_timeout: Option<Duration>,
}

/// One line per group for `check` and `validate`.
impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |items: Vec<String>| if items.is_empty() { "any".to_owned() } else { items.join(", ") };
        write!(
            f,
            "proxy_protocol {}; endpoints {}; sources {}; max_connections {}; idle_timeout {}",
            match self.proxy_protocol {
                ProxyProtocol::Off => "off",
                ProxyProtocol::Required => "required",
            },
            list(self.allow_endpoints.iter().map(ToString::to_string).collect()),
            list(self.allow_sources.iter().map(ToString::to_string).collect()),
            self.max_connections.map_or_else(|| "unlimited".to_owned(), |n| n.to_string()),
            self.idle_timeout.map_or_else(|| "never".to_owned(), |t| format!("{}s", t.as_secs())),
        )
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccess {
    #[serde(default)]
    proxy_protocol: ProxyProtocol,
    #[serde(default)]
    allow_endpoints: Vec<String>,
    #[serde(default)]
    allow_sources: Vec<String>,
    max_connections: Option<usize>,
    #[serde(default)]
    idle_timeout_secs: u64,
}

impl RawAccess {
    pub(super) fn validate(self, prefix: &str) -> Result<Access, ConfigError> {
        let key = |field: &str| format!("{prefix}.{field}");
        let allow_endpoints = self
            .allow_endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| e.trim().parse().map_err(|m| ConfigError::new(format!("{}[{i}]", key("allow_endpoints")), m)))
            .collect::<Result<Vec<Endpoint>, _>>()?;
        if !allow_endpoints.is_empty() && self.proxy_protocol != ProxyProtocol::Required {
            return Err(ConfigError::new(
                key("allow_endpoints"),
                "needs proxy_protocol = \"required\": the endpoint ID comes from the load balancer's PROXY header",
            ));
        }
        let allow_sources = self
            .allow_sources
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let s = s.trim();
                // A bare address is a network of one.
                s.parse::<IpNet>().or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from)).map_err(|_| {
                    ConfigError::new(
                        format!("{}[{i}]", key("allow_sources")),
                        format!("'{s}' is not a CIDR network (10.0.0.0/8) or an address"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.max_connections == Some(0) {
            return Err(ConfigError::new(key("max_connections"), "must be at least 1 (leave it out for no limit)"));
        }
        Ok(Access {
            proxy_protocol: self.proxy_protocol,
            allow_endpoints,
            allow_sources: allow_sources.into_iter().map(|n| n.trunc()).collect(),
            max_connections: self.max_connections,
            idle_timeout: (self.idle_timeout_secs > 0).then(|| Duration::from_secs(self.idle_timeout_secs)),
        })
    }
}
