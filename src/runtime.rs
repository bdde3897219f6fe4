//! Between frames: the threads that move them, and what a thread does before it sleeps.
//!
//! A worker thread with nothing to do sleeps in epoll until a socket is readable. On a virtual
//! machine that sleep halts the virtual CPU, and waking it for the next frame costs the host a
//! round trip, twice per request through a proxy. With `gateway.busy_poll_us` set, a worker polls
//! the sessions' sockets for a moment before it sleeps (as Linux's haltpoll governor does for a KVM
//! guest's idle CPU), yielding its CPU to any other runnable thread on each turn. It trades CPU for
//! latency; benches/README.md has what it costs and buys at several request rates.

use std::cell::{Cell, RefCell};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};

use crate::config::Config;

/// The runtime `kafka-gateway run` serves on: `gateway.worker_threads` workers (0 = one per
/// core), which poll for up to `gateway.busy_poll_us` before they sleep.
pub fn build(config: &Config) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.worker_threads > 0 {
        builder.worker_threads(config.worker_threads);
    }
    if let Some(max) = config.busy_poll {
        let poll = Arc::new(BusyPoll::new(max)?);
        let (for_start, for_unpark) = (Arc::clone(&poll), Arc::clone(&poll));
        builder
            .on_thread_start(move || WATCHER.with(|w| *w.borrow_mut() = Some(Arc::clone(&for_start))))
            .on_thread_park(move || {
                crate::metrics::latency::flush_thread();
                poll.wait()
            })
            .on_thread_unpark(move || for_unpark.woken());
    } else {
        // A worker out of work merges the request latencies it batched, so that a scrape sees them.
        builder.on_thread_park(crate::metrics::latency::flush_thread);
    }
    builder.enable_all().build()
}

/// Lets a worker's busy poll end when `socket` becomes readable. A session calls it for both of its
/// sockets; elsewhere (another runtime, busy polling off) it does nothing. A closed socket leaves the
/// poll set by itself.
pub fn watch(socket: &impl AsRawFd) {
    WATCHER.with(|w| {
        if let Some(poll) = &*w.borrow() {
            poll.watch(socket);
        }
    });
}

thread_local! {
    /// The busy poll of the runtime this thread works for.
    static WATCHER: RefCell<Option<Arc<BusyPoll>>> = const { RefCell::new(None) };
    /// When this thread, the one that polled, went idle: how long it stayed idle tunes the window.
    static IDLE_SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// A second epoll set holding every session socket (edge-triggered, beside tokio's own), which a
/// worker about to sleep polls without blocking. When it reports a socket, the worker goes on to
/// tokio's epoll, which returns at once with the same readiness.
pub struct BusyPoll {
    /// One worker polls at a time: a second would take the CPU a client or broker needs, and on
    /// the multi-threaded runtime only the worker that sleeps in tokio's epoll gains from it.
    poll: Mutex<(Poll, Events)>,
    registry: Registry,
    /// The current window in nanoseconds, between 0 and `max` (see `adapt`).
    window_ns: AtomicU64,
    max: Duration,
}

impl BusyPoll {
    /// Starts with the longest window; idle periods longer than it shrink it.
    pub fn new(max: Duration) -> std::io::Result<Self> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        Ok(Self {
            poll: Mutex::new((poll, Events::with_capacity(16))),
            registry,
            window_ns: AtomicU64::new(max.as_nanos() as u64),
            max,
        })
    }

    pub fn watch(&self, socket: &impl AsRawFd) {
        // A socket that cannot join (out of kernel memory) only ends no busy poll early.
        if let Err(e) = self.registry.register(&mut SourceFd(&socket.as_raw_fd()), Token(0), Interest::READABLE) {
            tracing::debug!("busy poll does not watch a socket: {e}");
        }
    }

    /// The window the next poll uses.
    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.window_ns.load(Ordering::Relaxed))
    }

    /// Returns when a watched socket has become readable since the last poll, when a task was
    /// sent to the runtime from outside it (a spawn, a signal's handler), when the window has
    /// passed, or at once while another thread polls. Timers are not watched: one may fire up to
    /// a window late, which is why the window is at most a millisecond.
    pub fn wait(&self) {
        let Ok(mut guard) = self.poll.try_lock() else { return };
        let started = Instant::now();
        IDLE_SINCE.set(Some(started));
        let (poll, events) = &mut *guard;
        let metrics = tokio::runtime::Handle::try_current().ok().map(|h| h.metrics());
        let deadline = started + self.window();
        loop {
            if poll.poll(events, Some(Duration::ZERO)).is_err() || !events.is_empty() {
                return;
            }
            if metrics.as_ref().is_some_and(|m| m.global_queue_depth() > 0) {
                return;
            }
            if Instant::now() >= deadline {
                return;
            }
            // Any runnable thread on this CPU (a client, a broker) runs first; with none, this
            // returns at once and the poll goes on.
            std::thread::yield_now();
        }
    }

    /// Called when a worker has work again: if it was the one that polled, its idle time tunes
    /// the window.
    pub fn woken(&self) {
        if let Some(since) = IDLE_SINCE.take() {
            let window = adapt(self.window(), since.elapsed(), self.max);
            self.window_ns.store(window.as_nanos() as u64, Ordering::Relaxed);
        }
    }
}

/// Where a window that has shrunk to nothing grows back from: about the time a broker on the same
/// host takes to answer a small request (benches/README.md has the measured round trips).
const GROW_FROM: Duration = Duration::from_micros(25);

/// The next window after an idle period of `idle`, as haltpoll tunes its own: an idle period the
/// window covered leaves it as it is; one a longer window (up to `max`) would have covered doubles
/// it; one longer than `max`, which no poll could have covered, halves it, so that sparse traffic
/// costs no CPU in polls that end in sleep anyway.
pub fn adapt(window: Duration, idle: Duration, max: Duration) -> Duration {
    if idle > max {
        let halved = window / 2;
        if halved < Duration::from_micros(1) { Duration::ZERO } else { halved }
    } else if idle > window {
        (window * 2).max(GROW_FROM).min(max)
    } else {
        window
    }
}

#[cfg(test)]
mod tests;
