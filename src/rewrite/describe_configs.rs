//! DescribeConfigs (key 32), v0-v4: a broker's configuration names its listeners and its cluster's
//! other hosts as text (`advertised.listeners = INTERNAL://10.0.0.11:9092`), which admin tools show.
//! The gateway does not edit configuration text; it answers those entries as Kafka answers a
//! password: sensitive, with no value, in the entry and in its synonyms. Every other byte passes as
//! it was, and an answer without such entries is the same frame.

use bytes::{BufMut, Bytes};
use kafka_protocol::messages::DescribeConfigsResponse;
use kafka_protocol::protocol::HeaderVersion;

use super::{Fault, Patch, Response, Rewritten};
use crate::wire::Cursor;

pub(super) const NAME: &str = "DescribeConfigs";

impl Response for DescribeConfigsResponse {
    const NAME: &'static str = NAME;
}

/// Whether a configuration's value names hosts of the cluster: the brokers' own and advertised
/// listeners, the KRaft quorum, ZooKeeper, and the bootstrap servers of clients a broker runs
/// (metrics reporters, remote log metadata).
pub fn names_hosts(config: &str) -> bool {
    matches!(
        config,
        "advertised.listeners"
            | "listeners"
            | "advertised.host.name"
            | "host.name"
            | "controller.quorum.voters"
            | "controller.quorum.bootstrap.servers"
            | "zookeeper.connect"
    ) || config.ends_with("bootstrap.servers")
}

/// What [`rewrite`](crate::rewrite::rewrite) does to a DescribeConfigs frame, on a decoded answer (for
/// tests and the replay's invariant).
pub fn redact(response: &mut DescribeConfigsResponse) {
    for config in response.results.iter_mut().flat_map(|r| r.configs.iter_mut()) {
        if names_hosts(&config.name) {
            config.value = None;
            config.is_sensitive = true;
        }
        for synonym in config.synonyms.iter_mut().filter(|s| names_hosts(&s.name)) {
            synonym.value = None;
        }
    }
}

pub(super) fn rewrite(version: i16, frame: &Bytes) -> Result<Rewritten<'static>, Fault> {
    let flexible = version >= 4;
    let null: &[u8] = if flexible { &[0] } else { &[0xff, 0xff] };
    let mut c = Cursor::after_response_header(frame, DescribeConfigsResponse::header_version(version))?;
    c.skip(4, "throttle_time_ms")?;
    let mut edits = Edits { frame, patch: None, done: 0 };
    for _ in 0..c.array_len(flexible, "results")? {
        c.skip(2, "results.error_code")?;
        c.nullable_string(flexible, "results.error_message")?;
        c.skip(1, "results.resource_type")?;
        c.string(flexible, "results.resource_name")?;
        for _ in 0..c.array_len(flexible, "configs")? {
            let hosts = names_hosts(c.string(flexible, "configs.name")?);
            let value_at = c.pos();
            let value = c.nullable_string(flexible, "configs.value")?;
            let value_end = c.pos();
            // read_only, then is_default (v0) or config_source (v1+), then is_sensitive.
            c.skip(2, "configs.read_only")?;
            let sensitive_at = c.pos();
            c.skip(1, "configs.is_sensitive")?;
            if hosts {
                if value.is_some() {
                    edits.replace(value_at, value_end, null);
                }
                edits.replace(sensitive_at, c.pos(), &[1]);
            }
            if version >= 1 {
                for _ in 0..c.array_len(flexible, "synonyms")? {
                    let hosts = names_hosts(c.string(flexible, "synonyms.name")?);
                    let value_at = c.pos();
                    let value = c.nullable_string(flexible, "synonyms.value")?;
                    if hosts && value.is_some() {
                        edits.replace(value_at, c.pos(), null);
                    }
                    c.skip(1, "synonyms.source")?;
                    if flexible {
                        c.skip_tags("synonyms tagged fields")?;
                    }
                }
            }
            if version >= 3 {
                c.skip(1, "configs.config_type")?;
                c.nullable_string(flexible, "configs.documentation")?;
            }
            if flexible {
                c.skip_tags("configs tagged fields")?;
            }
        }
        if flexible {
            c.skip_tags("results tagged fields")?;
        }
    }
    match edits.patch {
        None => Ok(Rewritten::unchanged(frame)),
        Some(patch) => patch.finish(frame, edits.done, Vec::new()),
    }
}

/// Replacements of byte ranges in a frame, in order; nothing is copied until the first one.
struct Edits<'a> {
    frame: &'a Bytes,
    patch: Option<Patch>,
    /// The end of the last range replaced: the original bytes from here on are still to come.
    done: usize,
}

impl Edits<'_> {
    fn replace(&mut self, from: usize, to: usize, with: &[u8]) {
        let out = match &mut self.patch {
            Some(patch) => {
                patch.out().put_slice(&self.frame[self.done..from]);
                patch.out()
            }
            None => self.patch.insert(Patch::copying(self.frame, from)).out(),
        };
        out.put_slice(with);
        self.done = to;
    }
}
