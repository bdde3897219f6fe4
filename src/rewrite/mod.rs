//! Step 4 of a frame's journey: the responses that can name a broker are decoded, their hosts and
//! ports replaced by the listener group's names, and encoded again; everything else is forwarded.
//!
//! [`plan`] decides, when a request passes, what its response will need; [`rewrite`] does it when the
//! response comes back. Both read one table, [`api_versions::LIMITS`], through one listener group's
//! [`Caps`] (the operator's narrowing of it), so the versions a client may negotiate and the
//! versions the gateway can rewrite never drift apart.

pub mod api_versions;
mod describe_cluster;
pub mod describe_configs;
mod endpoints;
mod fetch;
mod find_coordinator;
pub mod metadata;
mod produce;
mod share;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

pub use api_versions::Caps;

use crate::broker::{Advertise, NameError, Named, Rack};
use crate::wire::{SIZE_LEN, WireError};

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
    /// KIP-932 share groups: node endpoints, after the records.
    ShareFetch,
    /// KIP-932 share groups: node endpoints.
    ShareAcknowledge,
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
    /// A bare SASL token after SaslHandshake v0: no header, no correlation id; the answer is a bare
    /// token too, forwarded as it comes (see sasl.rs).
    RawToken,
}

/// A request at a version whose response could carry an address the gateway cannot rewrite.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} v{api_version} is refused: its response could carry broker addresses the gateway cannot rewrite ({})",
    api_name(*api_key), caps.describe(*api_key))]
pub struct Refused {
    pub api_key: i16,
    pub api_version: i16,
    /// The caps that refused it, to say why.
    pub caps: Caps,
}

/// Decides, when a request passes, what its response will need, with the default caps.
pub fn plan(api_key: i16, api_version: i16) -> Result<Action, Refused> {
    Caps::default().plan(api_key, api_version)
}

/// Rewrites one whole response frame (size prefix included) answering a request of `version`, with
/// the default caps. Pure: it names brokers through `names` and opens nothing.
pub fn rewrite<'f>(
    kind: Rewrite,
    version: i16,
    frame: &'f Bytes,
    names: &dyn Advertise,
) -> Result<Rewritten<'f>, RewriteError> {
    Caps::default().rewrite(kind, version, frame, names)
}

impl Caps {
    /// Decides, when a request passes, what its response will need.
    pub fn plan(&self, api_key: i16, api_version: i16) -> Result<Action, Refused> {
        let Ok(key) = ApiKey::try_from(api_key) else {
            return Ok(Action::Forward); // unknown and vendor keys pass untouched
        };
        if key == ApiKey::ApiVersions {
            return Ok(match self.allowed(key) {
                Some((_, max)) if api_version > max => Action::ApiVersionsFallback,
                _ => Action::Rewrite(Rewrite::ApiVersions),
            });
        }
        if let Some(limit) = self.limit_of(key) {
            if !limit.allows(api_version) {
                return Err(Refused { api_key, api_version, caps: *self });
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
            ApiKey::ShareFetch => Action::Rewrite(Rewrite::ShareFetch),
            ApiKey::ShareAcknowledge => Action::Rewrite(Rewrite::ShareAcknowledge),
            _ => Action::Forward,
        })
    }

    /// Rewrites one whole response frame (size prefix included) answering a request of `version`.
    /// Pure: it names brokers through `names` and opens nothing.
    pub fn rewrite<'f>(
        &self,
        kind: Rewrite,
        version: i16,
        frame: &'f Bytes,
        names: &dyn Advertise,
    ) -> Result<Rewritten<'f>, RewriteError> {
        let (api, result) = match kind {
            Rewrite::ApiVersions => (api_versions::NAME, api_versions::rewrite(version, frame, *self)),
            Rewrite::Metadata => (metadata::NAME, metadata::rewrite(version, frame, names)),
            Rewrite::FindCoordinator => (find_coordinator::NAME, find_coordinator::rewrite(version, frame, names)),
            Rewrite::DescribeCluster => (describe_cluster::NAME, describe_cluster::rewrite(version, frame, names)),
            Rewrite::DescribeConfigs => (describe_configs::NAME, describe_configs::rewrite(version, frame)),
            Rewrite::Produce => (produce::NAME, produce::rewrite(version, frame, names)),
            Rewrite::Fetch => (fetch::NAME, fetch::rewrite(version, frame, names)),
            Rewrite::ShareFetch => (share::FETCH, share::rewrite_fetch(version, frame, names)),
            Rewrite::ShareAcknowledge => (share::ACKNOWLEDGE, share::rewrite_acknowledge(frame, names)),
        };
        result.map_err(|fault| fault.at(api, version))
    }
}

/// A response the gateway could not rewrite; the client's connection is closed rather than let an
/// upstream address through.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// The broker's answer does not follow the schema.
    #[error("malformed {api} v{version} response: {source}")]
    Malformed { api: &'static str, version: i16, source: WireError },
    /// The answer names a broker the listener group cannot name.
    #[error("{api} v{version} response: {source}")]
    Name { api: &'static str, version: i16, source: NameError },
    #[error("the rewritten {api} v{version} response would exceed 2 GiB")]
    TooLarge { api: &'static str, version: i16 },
}

/// What stops a walk, before the dispatch says which API and version it was walking.
enum Fault {
    Wire(WireError),
    Name(NameError),
    TooLarge,
}

impl From<WireError> for Fault {
    fn from(e: WireError) -> Self {
        Fault::Wire(e)
    }
}

impl From<NameError> for Fault {
    fn from(e: NameError) -> Self {
        Fault::Name(e)
    }
}

impl Fault {
    fn at(self, api: &'static str, version: i16) -> RewriteError {
        match self {
            Fault::Wire(source) => RewriteError::Malformed { api, version, source },
            Fault::Name(source) => RewriteError::Name { api, version, source },
            Fault::TooLarge => RewriteError::TooLarge { api, version },
        }
    }
}

/// A rewritten response: the frame to send, in pieces written one after the other, so that large
/// unchanged parts (the records of a Fetch answer) pass without being copied, and every broker the
/// broker's answer named, as it named them: what the gateway learns before the client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten<'f> {
    pub pieces: Vec<Bytes>,
    pub named: Vec<Named<'f>>,
}

impl<'f> Rewritten<'f> {
    /// The same frame, naming no broker.
    fn unchanged(frame: &Bytes) -> Self {
        Self { pieces: vec![frame.clone()], named: Vec::new() }
    }

    /// The whole frame in one buffer (for tests and tools; the gateway writes the pieces).
    pub fn to_bytes(&self) -> Bytes {
        match self.pieces.as_slice() {
            [one] => one.clone(),
            pieces => pieces.concat().into(),
        }
    }
}

/// A rewritten frame being built: a re-emitted head, then the rest of the original frame as the
/// same memory.
struct Patch {
    head: BytesMut,
}

impl Patch {
    /// Starts with a placeholder for the size and the original bytes from after the size up to `pos`.
    fn copying(frame: &[u8], pos: usize) -> Self {
        let mut head = BytesMut::with_capacity(pos + 256);
        head.put_i32(0);
        head.put_slice(&frame[SIZE_LEN..pos]);
        Self { head }
    }

    fn out(&mut self) -> &mut BytesMut {
        &mut self.head
    }

    /// Ends with `frame[from..]` as it was, and sets the size.
    fn finish<'f>(mut self, frame: &Bytes, from: usize, named: Vec<Named<'f>>) -> Result<Rewritten<'f>, Fault> {
        let rest = frame.slice(from..);
        let size = i32::try_from(self.head.len() - SIZE_LEN + rest.len()).map_err(|_| Fault::TooLarge)?;
        self.head[..SIZE_LEN].copy_from_slice(&size.to_be_bytes());
        let mut pieces = vec![self.head.freeze()];
        if !rest.is_empty() {
            pieces.push(rest);
        }
        Ok(Rewritten { pieces, named })
    }
}

/// A response message the gateway rewrites, decoded and encoded whole only by tests and tools
/// (the gateway itself walks frames with [`crate::wire::Cursor`]).
pub trait Response: Decodable + Encodable + HeaderVersion {
    const NAME: &'static str;
}

/// A decoded response frame.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded<M> {
    pub header: ResponseHeader,
    pub message: M,
    /// Bytes after the last field. Real brokers send none; some (librdkafka's mock cluster writes
    /// its empty tag buffer twice in Metadata v9+) do, and clients ignore them, so they are carried
    /// through as they came rather than refused or dropped.
    pub trailing: Bytes,
}

/// Decodes a whole response frame (size prefix included), for tests.
#[cfg(any(test, feature = "testing"))]
pub fn decode<M: Response>(frame: Bytes, version: i16) -> anyhow::Result<Decoded<M>> {
    let mut body = frame.slice(SIZE_LEN.min(frame.len())..);
    let header = ResponseHeader::decode(&mut body, M::header_version(version))?;
    let message = M::decode(&mut body, version)?;
    Ok(Decoded { header, message, trailing: body })
}

/// Encodes a response frame with its size prefix, then `trailing` as it is (the gateway's own
/// KIP-511 answer, tests and tools).
pub fn encode<M: Response>(
    header: &ResponseHeader,
    message: &M,
    version: i16,
    trailing: &[u8],
) -> anyhow::Result<BytesMut> {
    let header_version = M::header_version(version);
    let size = header.compute_size(header_version)? + message.compute_size(version)? + trailing.len();
    let mut out = BytesMut::with_capacity(SIZE_LEN + size);
    out.put_i32(i32::try_from(size)?);
    header.encode(&mut out, header_version)?;
    message.encode(&mut out, version)?;
    out.put_slice(trailing);
    Ok(out)
}

/// Calls `visit` with every broker address a rewrite replaces in a decoded response, in order: node
/// id, host and port (to read or replace) and rack. For tests, property checks and the replay's
/// invariant, which clear what they visit to compare the rest; it must name exactly the fields
/// `rewrite` touches.
pub fn visit_addresses(
    response: &mut kafka_protocol::messages::ResponseKind,
    version: i16,
    mut visit: impl FnMut(i32, &mut StrBytes, &mut i32, Rack<'_>),
) {
    use kafka_protocol::messages::ResponseKind as R;
    fn reported(rack: &Option<StrBytes>) -> Rack<'_> {
        Rack::Reported(rack.as_deref())
    }
    match response {
        R::Metadata(m) => m.brokers.iter_mut().for_each(|b| {
            let rack = if version >= 1 { reported(&b.rack) } else { Rack::Unreported };
            visit(b.node_id.0, &mut b.host, &mut b.port, rack)
        }),
        R::DescribeCluster(m) => {
            m.brokers.iter_mut().for_each(|b| visit(b.broker_id.0, &mut b.host, &mut b.port, reported(&b.rack)))
        }
        R::FindCoordinator(m) if version < 4 && m.error_code == 0 && m.node_id.0 >= 0 => {
            visit(m.node_id.0, &mut m.host, &mut m.port, Rack::Unreported)
        }
        R::FindCoordinator(_) if version < 4 => {}
        R::FindCoordinator(m) => m
            .coordinators
            .iter_mut()
            .filter(|c| c.error_code == 0 && c.node_id.0 >= 0)
            .for_each(|c| visit(c.node_id.0, &mut c.host, &mut c.port, Rack::Unreported)),
        R::Produce(m) => {
            m.node_endpoints.iter_mut().for_each(|e| visit(e.node_id.0, &mut e.host, &mut e.port, reported(&e.rack)))
        }
        R::Fetch(m) => {
            m.node_endpoints.iter_mut().for_each(|e| visit(e.node_id.0, &mut e.host, &mut e.port, reported(&e.rack)))
        }
        R::ShareFetch(m) => {
            m.node_endpoints.iter_mut().for_each(|e| visit(e.node_id.0, &mut e.host, &mut e.port, reported(&e.rack)))
        }
        R::ShareAcknowledge(m) => {
            m.node_endpoints.iter_mut().for_each(|e| visit(e.node_id.0, &mut e.host, &mut e.port, reported(&e.rack)))
        }
        _ => {}
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
