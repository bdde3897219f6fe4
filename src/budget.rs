//! Beside step 3 of a frame's journey: the one memory budget of every response the gateway must
//! hold whole to rewrite (a Fetch v16+ answer with its records, the Metadata of a large cluster),
//! `gateway.max_held_bytes` across all sessions and groups.
//!
//! A session reserves a response's size before it reads the response off the broker's socket.
//! When the budget is spent it waits, and while it waits it reads nothing more from its broker, so
//! the broker's answers stay in the kernel and TCP slows the broker down (back-pressure): nothing is
//! dropped and nothing fails. Waiting is first come, first served (tokio's semaphore is fair), and
//! bounded (`gateway.held_wait_secs`), as is the time a client may take to read a held response, so
//! a client that stops reading cannot keep its share, or everyone else waiting, for ever: its
//! connection closes instead.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget, shared by every session of the process.
#[derive(Debug)]
pub struct Budget {
    bytes: Arc<Semaphore>,
    total: usize,
    wait: Duration,
}

/// Bytes of the budget a response holds; given back when dropped, however the holding ends.
#[derive(Debug)]
pub struct Reserved(#[allow(dead_code)] OwnedSemaphorePermit);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "waited {waited:?} for {bytes} bytes of the held-response budget (gateway.max_held_bytes = {total}); \
     other clients hold it and read slowly"
)]
pub struct Exhausted {
    pub bytes: usize,
    pub total: usize,
    pub waited: Duration,
}

impl Budget {
    /// `total` bytes; a reservation waits at most `wait`.
    pub fn new(total: usize, wait: Duration) -> Arc<Self> {
        let total = total.min(Semaphore::MAX_PERMITS);
        Arc::new(Self { bytes: Arc::new(Semaphore::new(total)), total, wait })
    }

    /// Unbounded for all practical purposes: tests and tools that do not exercise the budget.
    pub fn unlimited() -> Arc<Self> {
        Self::new(usize::MAX, Duration::from_secs(3600))
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// How long a reservation may wait, and a held response may take to reach its client.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// Bytes nobody holds now.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }

    /// Reserves room for a response of `bytes`, waiting while others hold the budget. A response
    /// larger than the whole budget waits until it has the whole budget to itself.
    pub async fn reserve(&self, bytes: usize) -> Result<Reserved, Exhausted> {
        let want = bytes.min(self.total).min(u32::MAX as usize) as u32;
        let bytes_sem = Arc::clone(&self.bytes);
        if let Ok(permit) = Arc::clone(&bytes_sem).try_acquire_many_owned(want) {
            return Ok(Reserved(permit));
        }
        match tokio::time::timeout(self.wait, bytes_sem.acquire_many_owned(want)).await {
            Ok(Ok(permit)) => Ok(Reserved(permit)),
            // The semaphore is never closed; a timeout is the only way out.
            _ => Err(Exhausted { bytes, total: self.total, waited: self.wait }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_spent_budget_makes_the_next_wait_until_room_frees() {
        let budget = Budget::new(1000, Duration::from_secs(30));
        let a = budget.reserve(600).await.unwrap();
        assert_eq!(budget.available(), 400);
        let waiting = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move { budget.reserve(500).await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "reserved beyond the budget");
        drop(a);
        waiting.await.unwrap().unwrap();
        assert_eq!(budget.available(), 1000);
    }

    #[tokio::test]
    async fn the_wait_is_bounded() {
        let budget = Budget::new(1000, Duration::from_millis(50));
        let _all = budget.reserve(1000).await.unwrap();
        let e = budget.reserve(1).await.unwrap_err();
        assert_eq!(e, Exhausted { bytes: 1, total: 1000, waited: Duration::from_millis(50) });
    }

    #[tokio::test]
    async fn a_response_above_the_budget_takes_all_of_it() {
        let budget = Budget::new(1000, Duration::from_secs(5));
        let all = budget.reserve(5000).await.unwrap();
        assert_eq!(budget.available(), 0);
        drop(all);
        assert_eq!(budget.available(), 1000);
    }
}
