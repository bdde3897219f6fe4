//! Request latency in the product: each worker thread collects its samples in a batch of its own,
//! without a lock, and merges them into one HdrHistogram per (listener group, API) once per batch,
//! when it runs out of work (the runtime's park hook), or when the thread ends. A scrape reads the
//! quantiles of the last one to two minutes, and the count and sum since the start.
//!
//! A batch rather than a histogram per worker: merging a whole histogram costs a walk over its
//! thousands of buckets, which a worker that parks after every request (a quiet gateway) would
//! pay per request; merging a batch costs one lock and one increment per sample in it.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Samples a worker keeps before it merges them.
const BATCH: usize = 256;
/// Quantiles cover the current window and the one before it.
pub const WINDOW: Duration = Duration::from_secs(60);
/// The quantiles a scrape reports.
pub const QUANTILES: [f64; 3] = [0.5, 0.99, 0.999];
/// Microseconds, from 1 µs to an hour, with two significant digits (1% error at any quantile):
/// about 25 KiB per series.
const LOWEST_US: u64 = 1;
const HIGHEST_US: u64 = 3_600_000_000;
const SIGNIFICANT_DIGITS: u8 = 2;

/// Where the samples of one (listener group, API) go. Cheap to clone; a session's group resolves
/// it once per API.
#[derive(Clone)]
pub struct Latency {
    id: u32,
    series: Arc<Series>,
}

/// The merged samples of one (listener group, API).
pub struct Series {
    window: Mutex<Window>,
}

struct Window {
    current: Histogram<u64>,
    previous: Histogram<u64>,
    /// When `current` started.
    started: Instant,
    count: u64,
    sum_us: u64,
}

/// What a scrape reads of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub count: u64,
    pub sum_seconds: f64,
    /// Seconds at each of [`QUANTILES`]; NaN when no request was answered in the window.
    pub quantiles: [f64; 3],
}

impl Latency {
    pub fn new() -> Self {
        static NEXT_ID: AtomicU32 = AtomicU32::new(0);
        let histogram =
            || Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS).expect("valid histogram bounds");
        let window =
            Window { current: histogram(), previous: histogram(), started: Instant::now(), count: 0, sum_us: 0 };
        Self { id: NEXT_ID.fetch_add(1, Ordering::Relaxed), series: Arc::new(Series { window: Mutex::new(window) }) }
    }

    /// Records one request's time on this thread: no lock and, once this thread has recorded
    /// into this series, no allocation.
    pub fn record(&self, elapsed: Duration) {
        let micros = u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX);
        // At thread exit the batch may be gone; a sample then is lost, nothing else.
        let _ = LOCAL.try_with(|local| {
            if let Ok(mut batch) = local.try_borrow_mut() {
                batch.push(self, micros);
            }
        });
    }

    pub fn snapshot(&self) -> Snapshot {
        self.series.snapshot()
    }

    pub fn series(&self) -> &Arc<Series> {
        &self.series
    }
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Series {
    pub fn snapshot(&self) -> Snapshot {
        let mut window = self.window.lock().expect("never poisoned");
        window.rotate(Instant::now());
        let mut merged = window.current.clone();
        merged.add(&window.previous).expect("histograms of one shape");
        let quantiles =
            QUANTILES.map(|q| if merged.is_empty() { f64::NAN } else { merged.value_at_quantile(q) as f64 / 1e6 });
        Snapshot { count: window.count, sum_seconds: window.sum_us as f64 / 1e6, quantiles }
    }
}

impl Window {
    fn record(&mut self, micros: u32, now: Instant) {
        self.rotate(now);
        self.current.saturating_record(u64::from(micros).max(LOWEST_US));
        self.count += 1;
        self.sum_us += u64::from(micros);
    }

    /// Starts a new window when the current one is over; drops both when both are.
    fn rotate(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed >= 2 * WINDOW {
            self.current.reset();
            self.previous.reset();
            self.started = now;
        } else if elapsed >= WINDOW {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.reset();
            self.started = now;
        }
    }
}

thread_local! {
    static LOCAL: RefCell<Batch> = const { RefCell::new(Batch::new()) };
}

/// Merges this thread's samples into their series now: when it is about to sleep (the runtime's
/// park hook), when a connection ends, and before a scrape on the scraping thread.
pub fn flush_thread() {
    let _ = LOCAL.try_with(|local| {
        if let Ok(mut batch) = local.try_borrow_mut() {
            batch.flush();
        }
    });
}

/// One thread's samples not merged yet, and the series it has recorded into, by id, so that a
/// sample is two numbers and the batch a fixed array.
struct Batch {
    series: Vec<Option<Arc<Series>>>,
    samples: [(u32, u32); BATCH],
    len: usize,
}

impl Batch {
    const fn new() -> Self {
        Self { series: Vec::new(), samples: [(0, 0); BATCH], len: 0 }
    }

    fn push(&mut self, latency: &Latency, micros: u32) {
        let id = latency.id as usize;
        if self.series.len() <= id {
            self.series.resize(id + 1, None);
        }
        if self.series[id].is_none() {
            self.series[id] = Some(Arc::clone(&latency.series));
        }
        self.samples[self.len] = (latency.id, micros);
        self.len += 1;
        if self.len == BATCH {
            self.flush();
        }
    }

    /// One lock per run of samples of one series (a worker's requests are mostly of a few APIs).
    fn flush(&mut self) {
        if self.len == 0 {
            return;
        }
        let now = Instant::now();
        let samples = &self.samples[..std::mem::take(&mut self.len)];
        let mut i = 0;
        while i < samples.len() {
            let id = samples[i].0;
            let series = self.series[id as usize].as_ref().expect("recorded series are kept");
            let mut window = series.window.lock().expect("never poisoned");
            while i < samples.len() && samples[i].0 == id {
                window.record(samples[i].1, now);
                i += 1;
            }
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_count_and_sum_come_from_every_sample_once_flushed() {
        let a = Latency::new();
        let b = Latency::new();
        for ms in 1..=1000u64 {
            a.record(Duration::from_millis(ms));
        }
        b.record(Duration::from_micros(250));
        flush_thread();
        let s = a.snapshot();
        assert_eq!(s.count, 1000);
        assert!((s.sum_seconds - 500.5).abs() < 1e-9, "{s:?}");
        // Two significant digits: within 1% of the exact quantile.
        for (q, exact) in QUANTILES.iter().zip([0.5, 0.99, 0.999]) {
            let got = s.quantiles[QUANTILES.iter().position(|x| x == q).unwrap()];
            assert!((got - exact).abs() / exact < 0.01, "q{q}: {got} vs {exact}");
        }
        let s = b.snapshot();
        assert_eq!(s.count, 1);
        assert!((s.quantiles[0] - 0.000250).abs() < 0.000003, "{s:?}");
    }

    #[test]
    fn samples_from_other_threads_arrive_when_those_threads_flush_or_end() {
        let latency = Latency::new();
        let l = latency.clone();
        std::thread::spawn(move || {
            for _ in 0..(BATCH + 10) {
                l.record(Duration::from_millis(2));
            }
            // A full batch was merged at once; the rest when the thread ends.
        })
        .join()
        .unwrap();
        assert_eq!(latency.snapshot().count, BATCH as u64 + 10);
    }

    #[test]
    fn an_empty_window_reports_no_quantiles() {
        let s = Latency::new().snapshot();
        assert_eq!(s.count, 0);
        assert!(s.quantiles.iter().all(|q| q.is_nan()));
    }

    #[test]
    fn windows_rotate_and_expire() {
        let latency = Latency::new();
        let mut window = latency.series.window.lock().unwrap();
        let t0 = window.started;
        window.record(1000, t0);
        window.rotate(t0 + WINDOW);
        assert_eq!((window.current.len(), window.previous.len()), (0, 1), "the sample is in the previous window");
        window.rotate(t0 + WINDOW * 3);
        assert_eq!((window.current.len(), window.previous.len()), (0, 0), "both windows are over");
        assert_eq!(window.count, 1, "the count is since the start");
    }
}
