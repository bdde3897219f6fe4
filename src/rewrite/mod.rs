//! Step 4 of a frame's journey: the responses that can name a broker are decoded, their hosts and
//! ports replaced by the listener group's names, and encoded again; everything else is forwarded.
//!
//! [`plan`] decides, when a request passes, what its response will need; [`rewrite`] does it when the
//! response comes back. Both read one table, [`api_versions::LIMITS`], so the versions a client may
//! negotiate and the versions the gateway can rewrite never drift apart.

pub mod api_versions;
mod describe_cluster;
pub mod describe_configs;
mod endpoints;
mod fetch;
mod find_coordinator;
pub mod metadata;
mod produce;
mod walk;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

use crate::frame::SIZE_LEN;
use crate::topology::AdvertiseError;

/// The response families the gateway rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rewrite {
    ApiVersions,
    Metadata,
    FindCoordinator,
    DescribeCluster,
    /// Configuration values that name hosts are answered as sensitive.
    DescribeConfigs,
    /// v10+: KIP-951 node endpoints.
    Produce,
    /// v16+: KIP-951 node endpoints, after the records.
    Fetch,
}

/// What a request's response will need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The same bytes go back to the client.
    Forward,
    Rewrite(Rewrite),
    /// An ApiVersions request newer than the gateway can edit: the broker's answer is replaced by the
    /// KIP-511 fallback (error 35 in the v0 layout) so the client retries at a version we know.
    ApiVersionsFallback,
}

/// A request at a version whose response could carry an address the gateway cannot rewrite.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} v{api_version} is refused: its response could carry broker addresses the gateway cannot rewrite ({})",
    api_name(*api_key), api_versions::describe_limit(*api_key))]
pub struct Refused {
    pub api_key: i16,
    pub api_version: i16,
}

/// Decides, when a request passes, what its response will need.
pub fn plan(api_key: i16, api_version: i16) -> Result<Action, Refused> {
    let Ok(key) = ApiKey::try_from(api_key) else {
        return Ok(Action::Forward); // unknown and vendor keys pass untouched
    };
    if key == ApiKey::ApiVersions {
        return Ok(match api_versions::allowed(key) {
            Some((_, max)) if api_version > max => Action::ApiVersionsFallback,
            _ => Action::Rewrite(Rewrite::ApiVersions),
        });
    }
    if let Some(limit) = api_versions::LIMITS.iter().find(|l| l.key == key) {
        if !limit.allows(api_version) {
            return Err(Refused { api_key, api_version });
        }
    }
    Ok(match key {
        ApiKey::Metadata => Action::Rewrite(Rewrite::Metadata),
        ApiKey::FindCoordinator => Action::Rewrite(Rewrite::FindCoordinator),
        ApiKey::DescribeCluster => Action::Rewrite(Rewrite::DescribeCluster),
        ApiKey::DescribeConfigs => Action::Rewrite(Rewrite::DescribeConfigs),
        // Only KIP-951 versions name brokers; older ones stream through untouched.
        ApiKey::Produce if api_version >= 10 => Action::Rewrite(Rewrite::Produce),
        ApiKey::Fetch if api_version >= 16 => Action::Rewrite(Rewrite::Fetch),
        _ => Action::Forward,
    })
}

/// What a response says about a broker's rack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rack<'a> {
    /// The response has no rack field (Metadata v0, FindCoordinator): use what is known.
    Unreported,
    /// The response reports the rack, possibly none.
    Reported(Option<&'a str>),
}

/// A broker as a response names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Named<'a> {
    pub node_id: i32,
    pub host: &'a str,
    pub port: i32,
    pub rack: Rack<'a>,
}

/// A broker's address as the remote client must see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertised {
    pub host: String,
    pub port: u16,
}

/// Turns brokers named in responses into their advertised addresses. The gateway's implementation
/// also records the upstream address and opens the broker's listener before answering; replay and
/// tests use pure ones.
pub trait Advertise {
    fn advertise(&self, broker: Named<'_>) -> Result<Advertised, AdvertiseError>;

    /// The racks known for brokers whose responses carry none (node id → rack), for recording.
    fn racks(&self) -> std::collections::BTreeMap<i32, String> {
        Default::default()
    }
}

/// A response the gateway could not rewrite; the client's connection is closed rather than let an
/// upstream address through.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error("cannot decode {api} v{version} response: {source:#}")]
    Decode { api: &'static str, version: i16, source: anyhow::Error },
    #[error("cannot encode {api} v{version} response: {source:#}")]
    Encode { api: &'static str, version: i16, source: anyhow::Error },
    #[error(transparent)]
    Advertise(#[from] AdvertiseError),
}

/// A rewritten frame, in pieces written one after the other, so that large unchanged parts (the
/// records of a Fetch response) are passed on without being copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten(Vec<Bytes>);

impl Rewritten {
    pub fn pieces(&self) -> &[Bytes] {
        &self.0
    }

    /// The whole frame in one buffer (for tests and tools; the gateway writes the pieces).
    pub fn to_bytes(&self) -> Bytes {
        match self.0.as_slice() {
            [one] => one.clone(),
            pieces => pieces.concat().into(),
        }
    }
}

impl From<Bytes> for Rewritten {
    fn from(frame: Bytes) -> Self {
        Self(vec![frame])
    }
}

impl From<Vec<Bytes>> for Rewritten {
    fn from(pieces: Vec<Bytes>) -> Self {
        Self(pieces)
    }
}

/// Rewrites one whole response frame (size prefix included) answering a request of `version`.
pub fn rewrite(kind: Rewrite, version: i16, frame: Bytes, adv: &dyn Advertise) -> Result<Rewritten, RewriteError> {
    match kind {
        Rewrite::ApiVersions => api_versions::rewrite(version, frame).map(Rewritten::from),
        Rewrite::Metadata => metadata::rewrite(version, frame, adv),
        Rewrite::FindCoordinator => find_coordinator::rewrite(version, frame, adv),
        Rewrite::DescribeCluster => describe_cluster::rewrite(version, frame, adv),
        Rewrite::DescribeConfigs => describe_configs::rewrite(version, frame),
        Rewrite::Produce => produce::rewrite(version, frame, adv),
        Rewrite::Fetch => fetch::rewrite(version, frame, adv),
    }
}

/// A response message the gateway rewrites, decoded and encoded whole only by tests and tools
/// (the gateway itself walks frames: see walk.rs).
pub trait Response: Decodable + Encodable + HeaderVersion {
    const NAME: &'static str;
}

/// A decoded response frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded<M> {
    pub header: ResponseHeader,
    pub message: M,
    /// Bytes after the last field. Real brokers send none; some (librdkafka's mock cluster writes
    /// its empty tag buffer twice in Metadata v9+) do, and clients ignore them, so they are carried
    /// through as they came rather than refused or dropped.
    pub trailing: Bytes,
}

/// Decodes a whole response frame (size prefix included).
pub fn decode<M: Response>(frame: Bytes, version: i16) -> Result<Decoded<M>, RewriteError> {
    let decode_err = |source| RewriteError::Decode { api: M::NAME, version, source };
    let mut body = frame.slice(SIZE_LEN.min(frame.len())..);
    let header = ResponseHeader::decode(&mut body, M::header_version(version)).map_err(decode_err)?;
    let message = M::decode(&mut body, version).map_err(decode_err)?;
    Ok(Decoded { header, message, trailing: body })
}

/// Encodes a response frame with its size prefix, then `trailing` as it is.
pub fn encode<M: Response>(
    header: &ResponseHeader,
    message: &M,
    version: i16,
    trailing: &[u8],
) -> Result<BytesMut, RewriteError> {
    let encode_err = |source| RewriteError::Encode { api: M::NAME, version, source };
    let header_version = M::header_version(version);
    let size = header.compute_size(header_version).map_err(encode_err)?
        + message.compute_size(version).map_err(encode_err)?
        + trailing.len();
    let mut out = BytesMut::with_capacity(SIZE_LEN + size);
    out.put_i32(i32::try_from(size).map_err(|e| encode_err(e.into()))?);
    header.encode(&mut out, header_version).map_err(encode_err)?;
    message.encode(&mut out, version).map_err(encode_err)?;
    out.put_slice(trailing);
    Ok(out)
}

/// A broker address as it stands in a decoded response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    /// `None` when the response has no rack field (FindCoordinator, Metadata v0).
    pub rack: Option<Option<String>>,
}

impl Address {
    pub fn named(&self) -> Named<'_> {
        let rack = match &self.rack {
            Some(rack) => Rack::Reported(rack.as_deref()),
            None => Rack::Unreported,
        };
        Named { node_id: self.node_id, host: &self.host, port: self.port, rack }
    }
}

/// Takes every broker address the gateway rewrites out of a decoded response, in order, leaving
/// empty hosts and port 0 behind: two responses that differ only in the addresses the gateway
/// owns are equal afterwards. For tests, property checks and the replay's invariant check; it
/// must name exactly the fields `rewrite` touches.
pub fn take_addresses(response: &mut kafka_protocol::messages::ResponseKind, version: i16) -> Vec<Address> {
    use kafka_protocol::messages::ResponseKind as R;
    fn take(node_id: i32, host: &mut StrBytes, port: &mut i32, rack: Option<Option<&StrBytes>>) -> Address {
        let rack = rack.map(|r| r.map(|r| r.to_string()));
        let address = Address { node_id, host: host.to_string(), port: *port, rack };
        (*host, *port) = (StrBytes::default(), 0);
        address
    }
    match response {
        R::Metadata(m) => m
            .brokers
            .iter_mut()
            .map(|b| take(b.node_id.0, &mut b.host, &mut b.port, (version >= 1).then_some(b.rack.as_ref())))
            .collect(),
        R::DescribeCluster(m) => {
            m.brokers.iter_mut().map(|b| take(b.broker_id.0, &mut b.host, &mut b.port, Some(b.rack.as_ref()))).collect()
        }
        R::FindCoordinator(m) if version < 4 => match m.error_code == 0 && m.node_id.0 >= 0 {
            true => vec![take(m.node_id.0, &mut m.host, &mut m.port, None)],
            false => vec![],
        },
        R::FindCoordinator(m) => m
            .coordinators
            .iter_mut()
            .filter(|c| c.error_code == 0 && c.node_id.0 >= 0)
            .map(|c| take(c.node_id.0, &mut c.host, &mut c.port, None))
            .collect(),
        R::Produce(m) => m
            .node_endpoints
            .iter_mut()
            .map(|e| take(e.node_id.0, &mut e.host, &mut e.port, Some(e.rack.as_ref())))
            .collect(),
        R::Fetch(m) => m
            .node_endpoints
            .iter_mut()
            .map(|e| take(e.node_id.0, &mut e.host, &mut e.port, Some(e.rack.as_ref())))
            .collect(),
        _ => vec![],
    }
}

/// The name of an API key for messages, `key 10001` for keys the gateway does not know.
pub fn api_name(api_key: i16) -> String {
    match ApiKey::try_from(api_key) {
        Ok(key) => format!("{key:?}"),
        Err(()) => format!("API key {api_key}"),
    }
}

#[cfg(test)]
mod tests;
