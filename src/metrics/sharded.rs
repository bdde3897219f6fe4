//! A counter split into per-worker shards: each thread adds to its own cache line, without a lock
//! and without contending with the other workers; a scrape adds the shards up.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Shards per counter. A thread takes the next shard when it first counts, so the gateway's
/// workers (one per core) each get their own up to this many; more threads share, still correctly.
const SHARDS: usize = 32;

/// One shard on a cache line of its own, so two workers' adds never touch the same line.
#[repr(align(64))]
#[derive(Default)]
struct Slot(AtomicU64);

thread_local! {
    /// This thread's shard (usize::MAX until it first counts).
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn shard() -> usize {
    SHARD.with(|s| {
        let mut i = s.get();
        if i == usize::MAX {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            i = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
            s.set(i);
        }
        i
    })
}

/// A monotonically increasing count (a Prometheus counter), or, added to with wrapping negative
/// amounts, a level (a gauge): the sum of the shards wraps back to the true value.
pub struct Sharded {
    slots: Box<[Slot]>,
}

impl Default for Sharded {
    fn default() -> Self {
        Self { slots: (0..SHARDS).map(|_| Slot::default()).collect() }
    }
}

impl Sharded {
    pub fn add(&self, n: u64) {
        self.slots[shard()].0.fetch_add(n, Ordering::Relaxed);
    }

    /// For a gauge: `n` may be negative.
    pub fn add_signed(&self, n: i64) {
        self.add(n as u64);
    }

    pub fn sum(&self) -> u64 {
        self.slots.iter().fold(0u64, |sum, s| sum.wrapping_add(s.0.load(Ordering::Relaxed)))
    }

    pub fn sum_signed(&self) -> i64 {
        self.sum() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn shards_add_up_across_threads() {
        let counter = Arc::new(Sharded::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let c = Arc::clone(&counter);
                std::thread::spawn(move || (0..1000).for_each(|_| c.add(3)))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(counter.sum(), 8 * 1000 * 3);
    }

    #[test]
    fn a_gauge_comes_back_to_zero_when_its_adds_and_subtracts_cross_threads() {
        let gauge = Arc::new(Sharded::default());
        gauge.add_signed(500);
        let g = Arc::clone(&gauge);
        std::thread::spawn(move || g.add_signed(-200)).join().unwrap();
        assert_eq!(gauge.sum_signed(), 300);
        let g = Arc::clone(&gauge);
        std::thread::spawn(move || g.add_signed(-300)).join().unwrap();
        assert_eq!(gauge.sum_signed(), 0);
    }
}
