//! Conformance fixtures and their replay: a case is a response frame as it crossed the wire, a
//! sidecar saying which request it answered and where it came from, and the frame the gateway must
//! make of it. Replay runs the frame through the gateway's own path ([`rewrite::plan`], then
//! [`rewrite::rewrite`]) and tells, in decoded fields, what changed and whether that was expected.
//!
//! On disk (see protocol-fixtures/README.md): `NAME.toml` (the sidecar), `NAME.frame` (the response
//! as received, size prefix included) and, when the case expects a rewrite, `NAME.expected`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Decodable;
use serde::{Deserialize, Serialize};

use crate::broker::{Advertise, HostPort, NameError, Named, Rack};
use crate::config::ListenerGroup;
use crate::rewrite::{self, Action, api_versions, describe_configs};
use crate::wire::SIZE_LEN;

/// What a case says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecar {
    /// The request this frame answered.
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    /// Where the frame came from: a broker and its version, "third-party vector: repo/path (name)",
    /// "recorded by kafka-gateway …", or "generated".
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// What the gateway must do with the frame.
    pub expect: Expect,
    /// Racks the gateway knew when the frame passed (node id → rack): responses without racks
    /// (FindCoordinator, Metadata v0) are named with them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub racks: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// The gateway's answer is `NAME.expected`.
    Rewritten,
    /// The gateway passes the same bytes.
    Unchanged,
    /// The request's version is refused: the client's connection is closed.
    Refused,
    /// The frame cannot be rewritten: the client's connection is closed.
    Error,
}

/// A case loaded from disk.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub sidecar: Sidecar,
    pub frame: Bytes,
    pub expected: Option<Bytes>,
}

#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Sidecar { path: PathBuf, source: toml::de::Error },
    #[error("{0}: expect = \"rewritten\" needs a .expected file")]
    NoExpected(PathBuf),
}

impl Case {
    /// Loads the case whose sidecar is `sidecar`.
    pub fn load(sidecar: &Path) -> Result<Self, FixtureError> {
        let read = |path: PathBuf| std::fs::read(&path).map_err(|source| FixtureError::Io { path, source });
        let text = read(sidecar.to_path_buf())?;
        let parsed: Sidecar =
            toml::from_slice(&text).map_err(|source| FixtureError::Sidecar { path: sidecar.to_path_buf(), source })?;
        let frame = read(sidecar.with_extension("frame"))?.into();
        let expected = match parsed.expect {
            Expect::Rewritten => Some(
                std::fs::read(sidecar.with_extension("expected"))
                    .map_err(|_| FixtureError::NoExpected(sidecar.to_path_buf()))?
                    .into(),
            ),
            _ => None,
        };
        let name = sidecar.with_extension("").display().to_string();
        Ok(Self { name, sidecar: parsed, frame, expected })
    }

    /// Writes a case as `dir/name.{toml,frame,expected}`.
    pub fn save(
        dir: &Path,
        name: &str,
        sidecar: &Sidecar,
        frame: &[u8],
        expected: Option<&[u8]>,
    ) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{name}.toml"));
        let text = toml::to_string(sidecar).map_err(std::io::Error::other)?;
        std::fs::write(&path, text)?;
        std::fs::write(path.with_extension("frame"), frame)?;
        if let Some(expected) = expected {
            std::fs::write(path.with_extension("expected"), expected)?;
        }
        Ok(path)
    }
}

/// Every case sidecar under `paths` (files or directories, recursively), sorted. A `.toml` file
/// without a `.frame` beside it (such as gateway.toml) is not a case.
pub fn find(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> =
                std::fs::read_dir(path)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
            entries.sort();
            found.extend(find(&entries)?);
        } else if path.extension().is_some_and(|e| e == "toml") && path.with_extension("frame").is_file() {
            found.push(path.clone());
        } else if path.extension().is_some_and(|e| e == "frame") {
            found.push(path.with_extension("toml"));
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// What the gateway's path made of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The bytes sent to the client (the same bytes when nothing was rewritten).
    Sent(Bytes),
    Refused(String),
    Error(String),
}

/// Names brokers with a listener group's template, the way the running gateway does: racks
/// missing from a response come from `racks`.
pub struct Names {
    pub group: ListenerGroup,
    pub racks: BTreeMap<i32, String>,
}

impl Advertise for Names {
    fn advertise(&self, broker: &Named<'_>) -> Result<HostPort, NameError> {
        let rack = match broker.rack {
            Rack::Reported(rack) => rack,
            Rack::Unreported => self.racks.get(&broker.node_id).map(String::as_str),
        };
        self.group.advertised(broker.node_id, rack)
    }
}

/// Runs `frame`, answering a request of `api_key` v`api_version`, through the gateway's path.
pub fn run(api_key: i16, api_version: i16, frame: Bytes, names: &Names) -> Outcome {
    match rewrite::plan(api_key, api_version) {
        Err(refused) => Outcome::Refused(refused.to_string()),
        Ok(Action::Forward | Action::RawToken) => Outcome::Sent(frame),
        Ok(Action::Rewrite(kind)) => match rewrite::rewrite(kind, api_version, &frame, names) {
            Ok(out) => Outcome::Sent(out.to_bytes()),
            Err(e) => Outcome::Error(e.to_string()),
        },
        Ok(Action::ApiVersionsFallback) => {
            let correlation_id =
                frame.get(SIZE_LEN..SIZE_LEN + 4).map_or(0, |b| i32::from_be_bytes(b.try_into().unwrap()));
            Outcome::Sent(api_versions::fallback(correlation_id).freeze())
        }
    }
}

/// The result of replaying one case.
#[derive(Debug, Clone)]
pub struct Report {
    pub name: String,
    pub passed: bool,
    /// A readable account: what the case is, what changed, and why it failed if it did.
    pub lines: Vec<String>,
}

impl Report {
    pub fn render(&self) -> String {
        let mut out = format!("{} {}\n", if self.passed { "PASS" } else { "FAIL" }, self.name);
        for line in &self.lines {
            let _ = writeln!(out, "    {line}");
        }
        out
    }
}

/// Replays one case under `group`'s configuration.
pub fn replay(case: &Case, group: &ListenerGroup) -> Report {
    let s = &case.sidecar;
    let racks = s.racks.iter().filter_map(|(n, r)| Some((n.parse().ok()?, r.clone()))).collect();
    let names = Names { group: group.clone(), racks };
    let outcome = run(s.api_key, s.api_version, case.frame.clone(), &names);
    let mut lines = vec![format!(
        "{} v{} response, {} bytes, from {}",
        rewrite::api_name(s.api_key),
        s.api_version,
        case.frame.len(),
        s.source
    )];
    let mut passed = true;
    match (&outcome, s.expect) {
        (Outcome::Sent(out), Expect::Unchanged) if *out == case.frame => lines.push("unchanged, as expected".into()),
        (Outcome::Sent(out), Expect::Rewritten) if Some(out) == case.expected.as_ref() => {
            lines.extend(changes(s.api_key, s.api_version, &case.frame, out));
            lines.extend(invariant(s.api_key, s.api_version, &case.frame, out, &names));
        }
        (Outcome::Refused(why), Expect::Refused) => lines.push(format!("refused, as expected: {why}")),
        (Outcome::Error(why), Expect::Error) => lines.push(format!("not rewritable, as expected: {why}")),
        (outcome, expect) => {
            passed = false;
            lines.push(format!("expected {}, got {}", describe_expect(expect), describe_outcome(outcome, &case.frame)));
            match (outcome, &case.expected) {
                (Outcome::Sent(out), Some(expected)) => {
                    lines.push("differences, expected → got:".into());
                    lines
                        .extend(changes(s.api_key, s.api_version, expected, out).into_iter().map(|l| format!("  {l}")));
                }
                (Outcome::Sent(out), None) => lines.extend(changes(s.api_key, s.api_version, &case.frame, out)),
                _ => {}
            }
        }
    }
    if let Outcome::Sent(out) = &outcome {
        let problems = invariant(s.api_key, s.api_version, &case.frame, out, &names);
        if !problems.is_empty() && passed && s.expect == Expect::Rewritten {
            passed = false;
        }
        if s.expect != Expect::Rewritten {
            lines.extend(problems);
        }
    }
    Report { name: case.name.clone(), passed, lines }
}

fn describe_expect(expect: Expect) -> &'static str {
    match expect {
        Expect::Rewritten => "the frame in .expected",
        Expect::Unchanged => "the same bytes",
        Expect::Refused => "a refusal",
        Expect::Error => "an error",
    }
}

fn describe_outcome(outcome: &Outcome, input: &Bytes) -> String {
    match outcome {
        Outcome::Sent(out) if out == input => "the same bytes".into(),
        Outcome::Sent(out) => format!("a rewritten frame of {} bytes", out.len()),
        Outcome::Refused(why) => format!("a refusal: {why}"),
        Outcome::Error(why) => format!("an error: {why}"),
    }
}

/// Decodes a response frame of any known API for display.
pub fn decode_any(api_key: i16, version: i16, frame: &Bytes) -> Result<(ResponseHeader, ResponseKind), String> {
    let key = ApiKey::try_from(api_key).map_err(|()| format!("API key {api_key} is unknown to the gateway"))?;
    // KIP-511: an ApiVersions error 35 is in the v0 layout, whatever the request's version.
    let error_code = frame.get(SIZE_LEN + 4..SIZE_LEN + 6).map(|b| i16::from_be_bytes([b[0], b[1]]));
    let version =
        if key == ApiKey::ApiVersions && error_code == Some(api_versions::UNSUPPORTED_VERSION) { 0 } else { version };
    let mut body = frame.slice(SIZE_LEN.min(frame.len())..);
    let header =
        ResponseHeader::decode(&mut body, key.response_header_version(version)).map_err(|e| format!("{e:#}"))?;
    let message = ResponseKind::decode(key, &mut body, version).map_err(|e| format!("{e:#}"))?;
    Ok((header, message))
}

/// The changed fields between two frames, as `path: old → new`.
pub fn changes(api_key: i16, version: i16, before: &Bytes, after: &Bytes) -> Vec<String> {
    if before == after {
        return vec!["unchanged".into()];
    }
    let (Ok(a), Ok(b)) = (decode_any(api_key, version, before), decode_any(api_key, version, after)) else {
        return vec![format!("{} bytes → {} bytes (not decodable for display)", before.len(), after.len())];
    };
    let (a, b) = (format!("{:#?}", a.1), format!("{:#?}", b.1));
    let diff = debug_diff(&a, &b);
    if diff.is_empty() {
        vec![format!("same fields, {} bytes → {} bytes (encoding differs)", before.len(), after.len())]
    } else {
        diff
    }
}

/// Checks what the gateway promises of every rewrite, whatever the .expected file says: nothing
/// but broker hosts and ports changed, and each is what the template gives (ApiVersions: only the
/// limited ranges; DescribeConfigs: only the values that name hosts, hidden).
fn invariant(api_key: i16, version: i16, before: &Bytes, after: &Bytes, names: &Names) -> Vec<String> {
    if rewrite::plan(api_key, version) == Ok(Action::ApiVersionsFallback) {
        let correlation_id =
            before.get(SIZE_LEN..SIZE_LEN + 4).map_or(0, |b| i32::from_be_bytes(b.try_into().unwrap()));
        return match *after == api_versions::fallback(correlation_id) {
            true => vec![],
            false => vec!["invariant broken: not the gateway's KIP-511 answer".into()],
        };
    }
    let (Ok((ha, mut a)), Ok((hb, mut b))) =
        (decode_any(api_key, version, before), decode_any(api_key, version, after))
    else {
        return vec![];
    };
    let mut problems = Vec::new();
    if let (ResponseKind::ApiVersions(a), ResponseKind::ApiVersions(b)) = (&mut a, &b) {
        // ApiVersions keeps everything but the version ranges the gateway limits.
        api_versions::limit(&mut a.api_keys);
        if ha != hb || a != b {
            problems
                .push("invariant broken: ApiVersions differs from the broker's answer with the limits applied".into());
        }
        return problems;
    }
    if let (ResponseKind::DescribeConfigs(a), ResponseKind::DescribeConfigs(b)) = (&mut a, &b) {
        // DescribeConfigs keeps everything but the values that name hosts, answered as sensitive.
        describe_configs::redact(a);
        if ha != hb || a != b {
            problems.push("invariant broken: DescribeConfigs differs from the broker's answer redacted".into());
        }
        return problems;
    }
    // The names the template gives the brokers of the original, and the addresses of the rewritten
    // frame; both cleared, so that what remains must be equal.
    let mut expected = Vec::new();
    rewrite::visit_addresses(&mut a, version, |node_id, host, port, rack| {
        expected.push((node_id, names.advertise(&Named { node_id, host, port: *port, rack })));
        (*host, *port) = (Default::default(), 0);
    });
    let mut got = Vec::new();
    rewrite::visit_addresses(&mut b, version, |_, host, port, _| {
        got.push(format!("{host}:{port}"));
        (*host, *port) = (Default::default(), 0);
    });
    if ha != hb || a != b {
        problems.push("invariant broken: fields other than broker hosts and ports changed".into());
    }
    if expected.len() != got.len() {
        problems.push("invariant broken: the number of broker addresses changed".into());
    }
    for ((node_id, expected), got) in expected.iter().zip(&got) {
        match expected {
            Ok(a) if a.to_string() == *got => {}
            Ok(a) => problems.push(format!("invariant broken: broker {node_id} is {got}, the template gives {a}")),
            Err(e) => problems.push(format!("invariant broken: broker {node_id} was named although {e}")),
        }
    }
    problems
}

/// Compares two pretty `Debug` renderings line by line and names each changed line by its path
/// (`brokers[1].host: "10.0.0.2" → "b2.…"`).
pub fn debug_diff(a: &str, b: &str) -> Vec<String> {
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let (pa, pb) = (debug_paths(&la), debug_paths(&lb));
    let mut out = Vec::new();
    for i in 0..la.len().max(lb.len()) {
        match (la.get(i), lb.get(i)) {
            (Some(x), Some(y)) if x == y => {}
            (Some(x), Some(y)) if pa[i] == pb[i] => out.push(format!("{}: {} → {}", pa[i], value(x), value(y))),
            _ => {
                out.push(format!("the structure differs from line {} on:", i + 1));
                out.push(format!("  before: {}", la.get(i).map_or("(end)", |l| l.trim())));
                out.push(format!("  after:  {}", lb.get(i).map_or("(end)", |l| l.trim())));
                break;
            }
        }
    }
    out
}

fn value(line: &str) -> String {
    let v = line.trim().trim_end_matches(',');
    let v = v.split_once(": ").map_or(v, |(_, v)| v);
    match v.char_indices().nth(120) {
        Some((cut, _)) => format!("{}…", &v[..cut]),
        None => v.to_owned(),
    }
}

/// The path of each line of a pretty `Debug` rendering.
fn debug_paths(lines: &[&str]) -> Vec<String> {
    /// An open `{`, `[` or `(`: the path it opens, and for a list the index of its next element.
    struct Open {
        path: String,
        next: Option<usize>,
    }
    let mut stack: Vec<Open> = vec![];
    let mut paths = Vec::with_capacity(lines.len());
    for line in lines {
        let t = line.trim().trim_end_matches(',');
        if t.starts_with(['}', ']', ')']) {
            stack.pop();
            paths.push(stack.last().map(|o| o.path.clone()).unwrap_or_default());
            continue;
        }
        let (key, rest) = match t.split_once(": ") {
            Some((k, r)) if !k.contains([' ', '"']) => (Some(k), r),
            _ => (None, t),
        };
        let path = match (stack.last_mut(), key) {
            (None, Some(k)) => k.to_owned(),
            (None, None) => String::new(),
            (Some(top), Some(k)) if top.path.is_empty() => k.to_owned(),
            (Some(top), Some(k)) => format!("{}.{k}", top.path),
            // In a list every line that does not close something starts an element.
            (Some(Open { path, next: Some(next) }), None) => {
                *next += 1;
                format!("{path}[{}]", *next - 1)
            }
            // The inside of a newtype or option: `BrokerId(` then `1,` then `)`.
            (Some(top), None) => top.path.clone(),
        };
        paths.push(path.clone());
        if rest.ends_with('[') {
            stack.push(Open { path, next: Some(0) });
        } else if rest.ends_with('{') || rest.ends_with('(') {
            stack.push(Open { path, next: None });
        }
    }
    paths
}

#[cfg(test)]
mod tests;
