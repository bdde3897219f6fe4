//! Beside the data path: whether the gateway should be sent clients, as `/readyz` answers a load
//! balancer or Kubernetes. Not while it starts (no discovery yet), not while it drains, not when
//! the cluster has not answered for too long; the gateway adds whether every known broker has its
//! listener.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Why the gateway is not ready; `/readyz` answers 503 with this sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("starting: no bootstrap server has described the cluster yet")]
    Starting,
    #[error("draining: finishing the requests in flight before it stops")]
    Draining,
    #[error("stale: no bootstrap server has answered for {}s (admin.ready_stale_secs is {}s)",
        .since.as_secs(), .limit.as_secs())]
    Stale { since: Duration, limit: Duration },
    #[error("broker {node_id} has no listener in group {group}")]
    Unbound { group: String, node_id: i32 },
}

/// The gateway's own part of readiness: discovery and drain.
#[derive(Debug)]
pub struct Readiness {
    born: Instant,
    /// When a bootstrap server last described the cluster to the gateway.
    discovered: Mutex<Option<Instant>>,
    draining: AtomicBool,
    stale_after: Option<Duration>,
}

impl Readiness {
    /// `stale_after`: how long the cluster may stay silent (`admin.ready_stale_secs`); None = ever.
    pub fn new(stale_after: Option<Duration>) -> Self {
        Self { born: Instant::now(), discovered: Mutex::new(None), draining: AtomicBool::new(false), stale_after }
    }

    /// A bootstrap server just described the cluster.
    pub fn discovered(&self) {
        *self.discovered.lock().expect("never poisoned") = Some(Instant::now());
    }

    /// Turns readiness false for good: the drain of issue 21 calls this first, so that load
    /// balancers stop sending clients before the listeners close.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Since the cluster last answered discovery, or since the start while it never has.
    pub fn discovery_age(&self) -> Duration {
        self.discovered.lock().expect("never poisoned").unwrap_or(self.born).elapsed()
    }

    /// Ok unless starting, draining or stale.
    pub fn check(&self) -> Result<(), NotReady> {
        if self.is_draining() {
            return Err(NotReady::Draining);
        }
        let Some(at) = *self.discovered.lock().expect("never poisoned") else { return Err(NotReady::Starting) };
        match self.stale_after {
            Some(limit) if at.elapsed() > limit => Err(NotReady::Stale { since: at.elapsed(), limit }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starting_then_ready_then_stale_then_ready_then_draining() {
        let r = Readiness::new(Some(Duration::from_millis(50)));
        assert_eq!(r.check(), Err(NotReady::Starting));
        r.discovered();
        assert_eq!(r.check(), Ok(()));
        std::thread::sleep(Duration::from_millis(80));
        assert!(matches!(r.check(), Err(NotReady::Stale { .. })), "{:?}", r.check());
        assert!(r.discovery_age() >= Duration::from_millis(80));
        r.discovered();
        assert_eq!(r.check(), Ok(()));
        r.drain();
        assert_eq!(r.check(), Err(NotReady::Draining));
        r.discovered();
        assert_eq!(r.check(), Err(NotReady::Draining), "a drain is for good");
    }

    #[test]
    fn without_a_limit_silence_never_makes_it_unready() {
        let r = Readiness::new(None);
        r.discovered();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(r.check(), Ok(()));
    }
}
