//! Which broker is which: the types every step names brokers with, the one question a rewrite asks
//! ("what do clients call node N?", [`Advertise`]), and the one error of answering it. Nothing here
//! opens a socket; learning a broker is the gateway's step (see `gateway.rs`).

use std::fmt;

use crate::template::RenderError;

/// A `host:port` address: a broker's upstream listener as the cluster advertises it, a bootstrap
/// server as the operator wrote it, or a name the gateway advertises.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (host, port) = s.rsplit_once(':').ok_or_else(|| format!("'{s}' is not host:port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("'{s}' has no host"));
        }
        let port = port.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| format!("'{s}' has no valid port"))?;
        Ok(Self { host: host.to_owned(), port })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A broker as the gateway knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub node_id: i32,
    /// Where the cluster says it listens.
    pub upstream: HostPort,
    pub rack: Option<String>,
}

impl Broker {
    /// The broker as a response naming it with its rack would.
    pub fn named(&self) -> Named<'_> {
        Named {
            node_id: self.node_id,
            host: &self.upstream.host,
            port: i32::from(self.upstream.port),
            rack: Rack::Reported(self.rack.as_deref()),
        }
    }
}

/// What a response says about a broker's rack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rack<'a> {
    /// The response has no rack field (Metadata v0, FindCoordinator): use what is known.
    Unreported,
    /// The response reports the rack, possibly none.
    Reported(Option<&'a str>),
}

/// A broker as a response names it, borrowed from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Named<'a> {
    pub node_id: i32,
    pub host: &'a str,
    pub port: i32,
    pub rack: Rack<'a>,
}

impl Named<'_> {
    /// The address the broker advertises, if it is one the gateway could dial.
    pub fn upstream(&self) -> Result<HostPort, NameError> {
        let bad = || NameError::BadUpstream { node_id: self.node_id, host: self.host.to_owned(), port: self.port };
        let port = u16::try_from(self.port).ok().filter(|&p| p != 0).ok_or_else(bad)?;
        if self.host.is_empty() || self.node_id < 0 {
            return Err(bad());
        }
        Ok(HostPort { host: self.host.to_owned(), port })
    }
}

/// What clients call a broker: the only thing a rewrite needs to know of the gateway.
pub trait Advertise {
    fn advertise(&self, broker: &Named<'_>) -> Result<HostPort, NameError>;

    /// The racks known for brokers whose responses carry none (node id → rack), for recording.
    fn racks(&self) -> std::collections::BTreeMap<i32, String> {
        Default::default()
    }
}

/// Why a broker has no port in a listener group.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error(
        "broker {node_id} has no port in listener group {group}: it is not in broker_ports and there is no broker_port_base"
    )]
    Unassigned { group: String, node_id: i32 },
    #[error("broker {node_id} would listen on {base} + {node_id}, beyond port 65535, in listener group {group}")]
    OutOfRange { group: String, node_id: i32, base: u16 },
}

/// Why a broker cannot be shown to clients; the response naming it is not forwarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(transparent)]
    Port(#[from] PortError),
    #[error("listener group {group}: {source}")]
    Render { group: String, source: RenderError },
    #[error("broker {node_id} is advertised at {host:?}:{port}, which is not an address")]
    BadUpstream { node_id: i32, host: String, port: i32 },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(node_id: i32, host: &str, port: i32) -> Named<'_> {
        Named { node_id, host, port, rack: Rack::Unreported }
    }

    #[test]
    fn only_dialable_addresses_are_upstreams() {
        assert_eq!(named(1, "10.0.0.1", 9092).upstream().unwrap().to_string(), "10.0.0.1:9092");
        for bad in [named(1, "", 9092), named(1, "h", 0), named(1, "h", 70_000), named(-1, "h", 9092)] {
            assert!(matches!(bad.upstream(), Err(NameError::BadUpstream { .. })), "{bad:?}");
        }
    }

    #[test]
    fn host_ports_parse_and_print_ipv6_in_brackets() {
        let v6 = HostPort::parse("[::1]:9092").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 9092));
        assert_eq!(v6.to_string(), "[::1]:9092");
        for bad in ["nohost", ":9092", "h:0", "h:x"] {
            assert!(HostPort::parse(bad).is_err(), "{bad}");
        }
    }
}
