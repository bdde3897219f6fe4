//! Recording, beside step 4: with `gateway.record_dir` set, the gateway writes the responses it
//! rewrites (and any it fails to rewrite) as fixture cases, so that an operator can capture their
//! own cluster's answers and replay them against any later version of the gateway
//! (`kafka-gateway replay --config SAME_FILE DIR`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tracing::warn;

use crate::fixture::{Case, Expect, Sidecar};
use crate::inflight::Pending;
use crate::rewrite::{self, RewriteError, Rewritten};

pub struct Recorder {
    dir: PathBuf,
    /// Cases kept per (API, version, outcome); the first ones are the interesting ones.
    per_version: usize,
    counts: Mutex<HashMap<(i16, i16, &'static str), usize>>,
    sequence: AtomicUsize,
}

impl Recorder {
    pub fn new(dir: PathBuf, per_version: usize) -> Self {
        Self { dir, per_version, counts: Mutex::new(HashMap::new()), sequence: AtomicUsize::new(0) }
    }

    /// Writes a case for `response` unless enough like it were written. Small synchronous writes, a
    /// few per API and version in a process's life.
    pub fn record(
        &self,
        pending: &Pending,
        response: &Bytes,
        result: &Result<Rewritten<'_>, RewriteError>,
        racks: BTreeMap<i32, String>,
    ) {
        let (expect, expected, note) = match result {
            Ok(out) if out.to_bytes() == *response => (Expect::Unchanged, None, None),
            Ok(out) => (Expect::Rewritten, Some(out.to_bytes()), None),
            Err(e) => (Expect::Error, None, Some(format!("the gateway could not rewrite this: {e}"))),
        };
        let outcome = match expect {
            Expect::Rewritten => "rewritten",
            Expect::Unchanged => "unchanged",
            _ => "error",
        };
        {
            let mut counts = self.counts.lock().expect("never poisoned");
            let count = counts.entry((pending.api_key, pending.api_version, outcome)).or_default();
            if *count >= self.per_version {
                return;
            }
            *count += 1;
        }
        let api = rewrite::api_name(pending.api_key).to_lowercase().replace(' ', "-");
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        let name = format!("{api}-v{}-{outcome}-{}-{n:04}", pending.api_version, std::process::id());
        let sidecar = Sidecar {
            api_key: pending.api_key,
            api_version: pending.api_version,
            correlation_id: pending.correlation_id,
            source: format!("recorded by kafka-gateway {}", env!("CARGO_PKG_VERSION")),
            license: None,
            expect,
            racks: racks.into_iter().map(|(n, r)| (n.to_string(), r)).collect(),
            note,
        };
        if let Err(e) = Case::save(&self.dir, &name, &sidecar, response, expected.as_deref()) {
            warn!("cannot record {name} in {}: {e}", self.dir.display());
        }
    }
}
