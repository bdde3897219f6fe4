//! Log lines a flood could repeat (refused and failed connections, stray responses): a token
//! bucket per kind of line, refilled one line per interval up to a burst, each line let through
//! saying how many like it were left out since the last, so that a misbehaving peer (a client
//! reconnecting in a loop, a scan, a load balancer pointed at the wrong port) cannot fill the disk
//! and the operator still learns the scale.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One kind of line, throttled.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    burst: u32,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// When the bucket was last refilled (None: never used, so full).
    since: Option<Instant>,
    tokens: u32,
    suppressed: u64,
}

impl Throttle {
    /// At most one line per `every`.
    pub const fn new(every: Duration) -> Self {
        Self::with_burst(every, 1)
    }

    /// `burst` lines at once, then one per `every`.
    pub const fn with_burst(every: Duration, burst: u32) -> Self {
        Self { every, burst, state: Mutex::new(State { since: None, tokens: burst, suppressed: 0 }) }
    }

    /// `Some(n)` when a line may be written now, `n` being how many were left out before it;
    /// `None` when this one is left out (and counted).
    pub fn admit(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match s.since {
            None => s.since = Some(now),
            Some(since) => {
                let every = self.every.as_nanos().max(1);
                let earned = now.duration_since(since).as_nanos() / every;
                if earned > 0 {
                    let earned = u32::try_from(earned).unwrap_or(u32::MAX);
                    s.tokens = s.tokens.saturating_add(earned).min(self.burst);
                    // A full bucket earns nothing more while it waits.
                    s.since = Some(if s.tokens == self.burst { now } else { since + self.every * earned });
                }
            }
        }
        if s.tokens == 0 {
            s.suppressed += 1;
            return None;
        }
        s.tokens -= 1;
        Some(std::mem::take(&mut s.suppressed))
    }
}

/// The tail a line gets when lines before it were left out.
pub fn suppressed_note(n: u64) -> String {
    if n == 0 { String::new() } else { format!(" ({n} similar lines suppressed before this one)") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_counting_the_rest() {
        let throttle = Throttle::new(Duration::from_millis(50));
        assert_eq!(throttle.admit(), Some(0));
        assert_eq!(throttle.admit(), None);
        assert_eq!(throttle.admit(), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(throttle.admit(), Some(2));
    }

    #[test]
    fn a_burst_then_the_rate_and_a_count_of_what_was_suppressed() {
        let t = Throttle::with_burst(Duration::from_millis(1), 3);
        assert_eq!((0..3).map(|_| t.admit()).collect::<Vec<_>>(), [Some(0); 3]);
        // Refilled one a millisecond: soon the next line comes through with the count.
        let mut suppressed = 0;
        let admitted = loop {
            match t.admit() {
                Some(n) => break n,
                None => suppressed += 1,
            }
        };
        assert_eq!(admitted, suppressed);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(t.admit(), Some(0));
    }

    #[test]
    fn a_flood_is_cut_to_the_burst() {
        let t = Throttle::with_burst(Duration::from_secs(1), 20);
        let let_through = (0..10_000).filter(|_| t.admit().is_some()).count();
        assert!((20..=22).contains(&let_through), "{let_through}");
    }
}
