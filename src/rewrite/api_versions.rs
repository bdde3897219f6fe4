//! ApiVersions (key 18): the gateway edits the broker's list so that no client negotiates a version
//! whose response could carry an address the gateway does not rewrite. [`LIMITS`] is that policy;
//! unknown and vendor keys pass untouched.
//!
//! KIP-511: a broker that does not know the request's version answers with error 35
//! (UNSUPPORTED_VERSION) in the v0 layout; that answer is edited in the v0 layout too.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, DescribeClusterResponse, FetchResponse, FindCoordinatorResponse, MetadataResponse,
    ProduceResponse, ResponseHeader,
};
use kafka_protocol::protocol::Message;

use super::{decode, encode, RewriteError, Response};
use crate::frame::SIZE_LEN;

/// UNSUPPORTED_VERSION.
pub const UNSUPPORTED_VERSION: i16 = 35;

/// The versions of one API a client may use through the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub key: ApiKey,
    /// `None`: the API is removed from ApiVersions; every version of it is refused.
    pub versions: Option<(i16, i16)>,
    pub why: &'static str,
}

impl Limit {
    pub fn allows(&self, version: i16) -> bool {
        self.versions.is_some_and(|(min, max)| (min..=max).contains(&version))
    }
}

const fn upto(key: ApiKey, max: i16, why: &'static str) -> Limit {
    Limit { key, versions: Some((0, max)), why }
}

/// What clients may negotiate through the gateway. Everything not listed passes untouched.
pub const LIMITS: &[Limit] = &[
    upto(ApiKey::Metadata, MetadataResponse::VERSIONS.max, "rewritten up to the newest version the gateway decodes"),
    upto(ApiKey::FindCoordinator, FindCoordinatorResponse::VERSIONS.max, "rewritten up to the newest version the gateway decodes"),
    upto(ApiKey::DescribeCluster, DescribeClusterResponse::VERSIONS.max, "rewritten up to the newest version the gateway decodes"),
    upto(ApiKey::ApiVersions, ApiVersionsResponse::VERSIONS.max, "edited up to the newest version the gateway decodes"),
    upto(ApiKey::Produce, ProduceResponse::VERSIONS.max, "v10+ node_endpoints rewritten up to the newest version the gateway decodes"),
    upto(ApiKey::Fetch, FetchResponse::VERSIONS.max, "v16+ node_endpoints rewritten up to the newest version the gateway decodes"),
    upto(ApiKey::DescribeQuorum, 1, "v2+ responses carry the controllers' listeners"),
    Limit { key: ApiKey::ShareFetch, versions: None, why: "responses carry node_endpoints" },
    Limit { key: ApiKey::ShareAcknowledge, versions: None, why: "responses carry node_endpoints" },
    // SaslHandshake v0 is followed by raw SASL tokens without Kafka headers, which a frame-level
    // gateway cannot follow; v1 (Kafka 1.0+) wraps them in SaslAuthenticate requests.
    Limit { key: ApiKey::SaslHandshake, versions: Some((1, i16::MAX)), why: "v0 sends raw SASL tokens" },
];

/// The versions of `key` allowed through the gateway, if it is limited at all.
pub fn allowed(key: ApiKey) -> Option<(i16, i16)> {
    LIMITS.iter().find(|l| l.key == key).and_then(|l| l.versions)
}

/// A sentence for logs: which versions of `api_key` are allowed and why.
pub fn describe_limit(api_key: i16) -> String {
    match LIMITS.iter().find(|l| l.key as i16 == api_key) {
        Some(Limit { versions: Some((min, max)), why, .. }) if *max == i16::MAX => format!("allowed: v{min}+; {why}"),
        Some(Limit { versions: Some((min, max)), why, .. }) => format!("allowed: v{min}-v{max}; {why}"),
        Some(Limit { versions: None, why, .. }) => format!("removed from ApiVersions; {why}"),
        None => "not limited".to_owned(),
    }
}

impl Response for ApiVersionsResponse {
    const NAME: &'static str = "ApiVersions";
}

/// Applies [`LIMITS`] to the broker's list: versions are narrowed, and an API left with none is removed.
pub fn limit(api_keys: &mut Vec<ApiVersion>) {
    api_keys.retain_mut(|entry| {
        let Some(limit) = LIMITS.iter().find(|l| l.key as i16 == entry.api_key) else {
            return true;
        };
        let Some((min, max)) = limit.versions else {
            return false;
        };
        entry.min_version = entry.min_version.max(min);
        entry.max_version = entry.max_version.min(max);
        entry.min_version <= entry.max_version
    });
}

pub(super) fn rewrite(version: i16, frame: Bytes) -> Result<Bytes, RewriteError> {
    // The error code is the first body field in every version (the response header is always v0).
    let error_code = frame.get(SIZE_LEN + 4..SIZE_LEN + 6).map(|b| i16::from_be_bytes([b[0], b[1]]));
    if error_code == Some(UNSUPPORTED_VERSION) {
        // KIP-511 says v0 layout. Some brokers (librdkafka's mock cluster) send another; clients
        // only read the error code and retry lower, so such an answer passes as it came: it names
        // no broker, and the retry's answer is edited as usual.
        return Ok(match decode::<ApiVersionsResponse>(frame.clone(), 0) {
            Ok(mut d) if d.trailing.is_empty() => {
                limit(&mut d.message.api_keys);
                encode(&d.header, &d.message, 0, &[])?.freeze()
            }
            _ => frame,
        });
    }
    let mut d = decode::<ApiVersionsResponse>(frame, version)?;
    limit(&mut d.message.api_keys);
    Ok(encode(&d.header, &d.message, version, &d.trailing)?.freeze())
}

/// The KIP-511 answer to an ApiVersions request newer than the gateway can edit: error 35 in the v0
/// layout, naming the newest ApiVersions version the gateway knows, so the client retries with it.
pub fn fallback(correlation_id: i32) -> BytesMut {
    let max = ApiVersionsResponse::VERSIONS.max;
    let message = ApiVersionsResponse::default()
        .with_error_code(UNSUPPORTED_VERSION)
        .with_api_keys(vec![ApiVersion::default()
            .with_api_key(ApiKey::ApiVersions as i16)
            .with_min_version(0)
            .with_max_version(max)]);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    encode(&header, &message, 0, &[]).expect("a v0 ApiVersions response always encodes")
}
