//! ApiVersions (key 18): the gateway edits the broker's list so that no client negotiates a version
//! whose response could carry an address the gateway does not rewrite. [`LIMITS`] is that policy,
//! and [`Caps`] the operator's narrowing of it; unknown and vendor keys pass untouched.
//!
//! KIP-511: a broker that does not know the request's version answers with error 35
//! (UNSUPPORTED_VERSION) in the v0 layout; that answer is edited in the v0 layout too.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, ResponseHeader};

use super::{Fault, Patch, Response, RewriteError, Rewritten, encode};
use crate::wire::{self, Cursor, SIZE_LEN, put_array_len, put_uvarint};

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

const REWRITTEN: &str = "rewritten up to the newest version the gateway was written and tested for";
const CONTROLLERS: &str = "a controller quorum API: responses carry the controllers' endpoints";

/// The newest Fetch version the gateway rewrites, and so the default of `gateway.fetch_max_version`.
pub const FETCH_MAX: i16 = 18;

/// What clients may negotiate through the gateway. Everything not listed passes untouched.
///
/// The numbers are written out, not taken from kafka-protocol's `VERSIONS`: each walk in this
/// module's siblings was written for the layouts up to them, so a newer kafka-protocol must not
/// widen the table by itself (tests/drift.rs fails when it or a test broker knows more).
pub const LIMITS: &[Limit] = &[
    upto(ApiKey::Metadata, 13, REWRITTEN),
    upto(ApiKey::FindCoordinator, 6, REWRITTEN),
    upto(ApiKey::DescribeCluster, 2, REWRITTEN),
    upto(
        ApiKey::DescribeConfigs,
        4,
        "values naming hosts answered as sensitive up to the newest version the gateway was written for",
    ),
    upto(ApiKey::ApiVersions, 4, "edited up to the newest version the gateway was written for"),
    upto(ApiKey::Produce, 13, "v10+ node_endpoints rewritten up to the newest version the gateway was written for"),
    upto(
        ApiKey::Fetch,
        FETCH_MAX,
        "v16+ node_endpoints rewritten up to the newest version the gateway was written for",
    ),
    Limit {
        key: ApiKey::ShareFetch,
        versions: Some((1, 1)),
        why: "node_endpoints rewritten at v1, the version the gateway was written for",
    },
    Limit {
        key: ApiKey::ShareAcknowledge,
        versions: Some((1, 1)),
        why: "node_endpoints rewritten at v1, the version the gateway was written for",
    },
    upto(ApiKey::DescribeQuorum, 1, "v2+ responses carry the controllers' listeners"),
    // KRaft's own APIs, which brokers do not serve on client listeners; were one to answer through
    // the gateway, its node endpoints (or current leader, in UpdateRaftVoter) would leak.
    Limit { key: ApiKey::Vote, versions: None, why: CONTROLLERS },
    Limit { key: ApiKey::BeginQuorumEpoch, versions: None, why: CONTROLLERS },
    Limit { key: ApiKey::EndQuorumEpoch, versions: None, why: CONTROLLERS },
    Limit { key: ApiKey::FetchSnapshot, versions: None, why: CONTROLLERS },
    Limit { key: ApiKey::UpdateRaftVoter, versions: None, why: CONTROLLERS },
];

/// The table as one listener group applies it: [`LIMITS`] with the operator's caps on top
/// (`gateway.fetch_max_version`). Built from the configuration, held by the sessions' group, and
/// used both to plan requests and to edit ApiVersions answers, so the two never disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Caps {
    /// The newest Fetch version a client may use; at most [`FETCH_MAX`].
    pub fetch_max: i16,
}

impl Default for Caps {
    fn default() -> Self {
        Self { fetch_max: FETCH_MAX }
    }
}

impl Caps {
    /// The limit of `key`, if it is limited at all, with the caps applied.
    pub fn limit_of(&self, key: ApiKey) -> Option<Limit> {
        let mut limit = *LIMITS.iter().find(|l| l.key == key)?;
        if key == ApiKey::Fetch && self.fetch_max < FETCH_MAX {
            limit.versions = limit.versions.map(|(min, max)| (min, max.min(self.fetch_max))).filter(|(a, b)| a <= b);
            limit.why = "capped by gateway.fetch_max_version";
        }
        Some(limit)
    }

    fn limit_of_raw(&self, api_key: i16) -> Option<Limit> {
        self.limit_of(ApiKey::try_from(api_key).ok()?)
    }

    /// The versions of `key` allowed through the gateway, if it is limited at all.
    pub fn allowed(&self, key: ApiKey) -> Option<(i16, i16)> {
        self.limit_of(key).and_then(|l| l.versions)
    }

    /// A sentence for logs: which versions of `api_key` are allowed and why.
    pub fn describe(&self, api_key: i16) -> String {
        match self.limit_of_raw(api_key) {
            Some(Limit { versions: Some((min, max)), why, .. }) if max == i16::MAX => {
                format!("allowed: v{min}+; {why}")
            }
            Some(Limit { versions: Some((min, max)), why, .. }) => format!("allowed: v{min}-v{max}; {why}"),
            Some(Limit { versions: None, why, .. }) => format!("removed from ApiVersions; {why}"),
            None => "not limited".to_owned(),
        }
    }

    /// The versions of `api_key` a client may use, given what the broker offers; `None` removes the API.
    pub fn limited(&self, api_key: i16, min: i16, max: i16) -> Option<(i16, i16)> {
        let Some(limit) = self.limit_of_raw(api_key) else {
            return Some((min, max));
        };
        let (lo, hi) = limit.versions?;
        let (min, max) = (min.max(lo), max.min(hi));
        (min <= max).then_some((min, max))
    }

    /// Applies the limits to a decoded list (for tests and tools; the gateway edits the frame itself).
    pub fn limit(&self, api_keys: &mut Vec<ApiVersion>) {
        api_keys.retain_mut(|entry| match self.limited(entry.api_key, entry.min_version, entry.max_version) {
            Some((min, max)) => {
                (entry.min_version, entry.max_version) = (min, max);
                true
            }
            None => false,
        });
    }
}

/// The versions of `key` allowed through a gateway with the default caps.
pub fn allowed(key: ApiKey) -> Option<(i16, i16)> {
    Caps::default().allowed(key)
}

/// [`Caps::describe`] with the default caps.
pub fn describe_limit(api_key: i16) -> String {
    Caps::default().describe(api_key)
}

/// [`Caps::limited`] with the default caps.
pub fn limited(api_key: i16, min: i16, max: i16) -> Option<(i16, i16)> {
    Caps::default().limited(api_key, min, max)
}

/// [`Caps::limit`] with the default caps.
pub fn limit(api_keys: &mut Vec<ApiVersion>) {
    Caps::default().limit(api_keys)
}

impl Response for ApiVersionsResponse {
    const NAME: &'static str = "ApiVersions";
}

pub(super) const NAME: &str = "ApiVersions";

/// One `api_keys[]` entry as it stands in the frame: key, min, max, and its tagged fields.
type Entry = (i16, i16, i16, std::ops::Range<usize>);

/// Whether an answer is a KIP-511 error 35, which is in the v0 layout whatever the version.
fn is_kip_511(frame: &[u8]) -> bool {
    // The error code is the first body field in every version (the response header is always v0).
    frame.get(SIZE_LEN + 4..SIZE_LEN + 6) == Some(&UNSUPPORTED_VERSION.to_be_bytes()[..])
}

/// Walks `api_keys[]`: where it starts, its entries, and the cursor after it.
fn walk(frame: &[u8], flexible: bool) -> wire::Result<(usize, Vec<Entry>, Cursor<'_>)> {
    let mut c = Cursor::after_response_header(frame, 0)?;
    c.skip(2, "error_code")?;
    let start = c.pos();
    let mut entries = Vec::new();
    for _ in 0..c.array_len(flexible, "api_keys")? {
        let (key, min, max) =
            (c.i16("api_keys.api_key")?, c.i16("api_keys.min_version")?, c.i16("api_keys.max_version")?);
        let tags_at = c.pos();
        if flexible {
            c.skip_tags("api_keys tagged fields")?;
        }
        entries.push((key, min, max, tags_at..c.pos()));
    }
    Ok((start, entries, c))
}

/// An API key with the lowest and highest version a broker supports.
pub type Range = (i16, i16, i16);

/// The error code and (key, min, max) entries of an answer, for the gateway's own client.
pub fn read(frame: &[u8], version: i16) -> Result<(i16, Vec<Range>), RewriteError> {
    let kip_511 = is_kip_511(frame);
    let (_, entries, _) = walk(frame, !kip_511 && version >= 3).map_err(|source| RewriteError::Malformed {
        api: NAME,
        version,
        source,
    })?;
    let error_code =
        if kip_511 { UNSUPPORTED_VERSION } else { i16::from_be_bytes([frame[SIZE_LEN + 4], frame[SIZE_LEN + 5]]) };
    Ok((error_code, entries.into_iter().map(|(k, min, max, _)| (k, min, max)).collect()))
}

/// Edits the `api_keys[]` of an answer in place; what follows the array passes as it was.
pub(super) fn rewrite(version: i16, frame: &Bytes, caps: Caps) -> Result<Rewritten<'static>, Fault> {
    let kip_511 = is_kip_511(frame);
    let flexible = !kip_511 && version >= 3;
    let (start, entries, c) = match walk(frame, flexible) {
        Ok(walked) => walked,
        // KIP-511 says v0 layout. Some brokers (librdkafka's mock cluster) send another; clients
        // only read the error code and retry lower, so such an answer passes as it came: it names
        // no broker, and the retry's answer is edited as usual.
        Err(_) if kip_511 => return Ok(Rewritten::unchanged(frame)),
        Err(e) => return Err(e.into()),
    };
    if kip_511 && !c.is_at_end() {
        return Ok(Rewritten::unchanged(frame)); // the same, for a foreign layout that happened to parse
    }
    let kept: Vec<_> = entries
        .iter()
        .filter_map(|(key, min, max, tags)| caps.limited(*key, *min, *max).map(|(lo, hi)| (*key, lo, hi, tags.clone())))
        .collect();
    let entries_changed =
        kept.len() != entries.len() || kept.iter().zip(&entries).any(|(k, e)| (k.1, k.2) != (e.1, e.2));
    let tail = if flexible { canonical_tags(frame, c.pos())? } else { None };
    if !entries_changed && tail.is_none() {
        return Ok(Rewritten::unchanged(frame));
    }
    let mut patch = Patch::copying(frame, start);
    put_array_len(patch.out(), kept.len(), flexible);
    for (key, min, max, tags) in kept {
        let out = patch.out();
        out.put_i16(key);
        out.put_i16(min);
        out.put_i16(max);
        out.put_slice(&frame[tags]);
    }
    let rest_at = match tail {
        Some((head, rest_at)) => {
            patch.out().put_slice(&head);
            rest_at
        }
        None => c.pos(),
    };
    patch.finish(frame, rest_at, Vec::new())
}

/// The default values of ApiVersions' tagged fields, as sent: SupportedFeatures (0) and
/// FinalizedFeatures (2) empty, FinalizedFeaturesEpoch (1) -1, ZkMigrationReady (3) false.
const DEFAULT_TAGS: [(u32, &[u8]); 4] = [(0, &[1]), (1, &[0xff; 8]), (2, &[1]), (3, &[0])];

/// Kafka's encoders leave out tagged fields that hold their default value; some brokers (tansu
/// 0.6) send them, which librdkafka before 2.3 cannot parse (it fails where it would succeed
/// against Kafka). An answer the gateway edits anyway goes out in Kafka's form: `Some` with the
/// throttle time and the remaining tags, and where the original continues, when a default-valued
/// tag was dropped; `None` when there was none.
fn canonical_tags(frame: &[u8], at: usize) -> wire::Result<Option<(BytesMut, usize)>> {
    let mut c = Cursor::at(frame, at);
    c.skip(4, "throttle_time_ms")?;
    let mut kept = Vec::new();
    let mut dropped = false;
    for _ in 0..c.uvarint("tagged fields")? {
        let tag = c.uvarint("tagged fields")?;
        let len = c.uvarint("tagged fields")? as usize;
        let data_at = c.pos();
        c.skip(len, "tagged fields")?;
        let data = &frame[data_at..c.pos()];
        if DEFAULT_TAGS.iter().any(|(t, d)| *t == tag && *d == data) {
            dropped = true;
        } else {
            kept.push((tag, data));
        }
    }
    if !dropped {
        return Ok(None);
    }
    let mut out = BytesMut::new();
    out.put_slice(&frame[at..at + 4]);
    put_uvarint(&mut out, kept.len() as u32);
    for (tag, data) in kept {
        put_uvarint(&mut out, tag);
        put_uvarint(&mut out, data.len() as u32);
        out.put_slice(data);
    }
    Ok(Some((out, c.pos())))
}

/// The KIP-511 answer to an ApiVersions request newer than the gateway can edit: error 35 in the v0
/// layout, naming the newest ApiVersions version the gateway knows, so the client retries with it.
pub fn fallback(correlation_id: i32) -> BytesMut {
    let (_, max) = allowed(ApiKey::ApiVersions).expect("ApiVersions is in the table");
    let message = ApiVersionsResponse::default().with_error_code(UNSUPPORTED_VERSION).with_api_keys(vec![
        ApiVersion::default().with_api_key(ApiKey::ApiVersions as i16).with_min_version(0).with_max_version(max),
    ]);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    encode(&header, &message, 0, &[]).expect("a v0 ApiVersions response always encodes")
}
