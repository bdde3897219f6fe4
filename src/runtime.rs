//! Between frames: the threads that move them, and what a thread does before it sleeps.
//!
//! A worker thread with nothing to do sleeps in epoll until a socket is readable. On a virtual
//! machine that sleep halts the virtual CPU, and waking it for the next frame costs the host a
//! round trip: on the bench machine (a Firecracker VM) about 12 µs per wake-up, twice per request
//! through a proxy, where the whole request takes 55 µs directly. So before it sleeps, a worker
//! polls the gateway's sockets for `gateway.busy_poll_us` (as Linux's haltpoll governor does for a
//! KVM guest's idle CPU, which this kernel lacks), yielding its CPU to any other runnable thread on
//! each turn so that a busy host loses nothing to the wait. benches/README.md has the numbers.

use std::cell::RefCell;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};

use crate::config::Config;

/// The runtime `kafka-gateway run` serves on: `gateway.worker_threads` workers (0 = one per
/// core), which poll for `gateway.busy_poll_us` before they sleep.
pub fn build(config: &Config) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.worker_threads > 0 {
        builder.worker_threads(config.worker_threads);
    }
    if let Some(window) = config.busy_poll {
        let poll = Arc::new(BusyPoll::new(window)?);
        let for_threads = Arc::clone(&poll);
        builder
            .on_thread_start(move || WATCHER.with(|w| *w.borrow_mut() = Some(Arc::clone(&for_threads))))
            .on_thread_park(move || poll.wait());
    }
    builder.enable_all().build()
}

/// Lets a worker's busy poll end when `socket` becomes readable. Called for both sockets of every
/// session on the runtime's threads; elsewhere (another runtime, busy polling off) it does nothing.
/// A closed socket leaves the poll set by itself.
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
}

/// A second epoll set holding every session socket (edge-triggered, beside tokio's own), which a
/// worker about to sleep polls without blocking. When it reports a socket, the worker goes on to
/// tokio's epoll, which returns at once with the same readiness.
pub struct BusyPoll {
    /// One worker polls at a time: a second would take the CPU a client or broker needs, and on
    /// the multi-threaded runtime only the worker that sleeps in tokio's epoll gains from it.
    poll: Mutex<(Poll, Events)>,
    registry: Registry,
    window: Duration,
}

impl BusyPoll {
    pub fn new(window: Duration) -> std::io::Result<Self> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        Ok(Self { poll: Mutex::new((poll, Events::with_capacity(16))), registry, window })
    }

    pub fn watch(&self, socket: &impl AsRawFd) {
        // A socket that cannot join (out of kernel memory) only ends no busy poll early.
        if let Err(e) = self.registry.register(&mut SourceFd(&socket.as_raw_fd()), Token(0), Interest::READABLE) {
            tracing::debug!("busy poll does not watch a socket: {e}");
        }
    }

    /// Returns when a watched socket has become readable since the last poll, when a task was
    /// sent to the runtime from outside it (a spawn, a signal's handler), when the window has
    /// passed, or at once while another thread polls. Timers are not watched: one may fire up to
    /// a window late, which is why the window is at most a millisecond.
    pub fn wait(&self) {
        let Ok(mut guard) = self.poll.try_lock() else { return };
        let (poll, events) = &mut *guard;
        let metrics = tokio::runtime::Handle::try_current().ok().map(|h| h.metrics());
        let deadline = Instant::now() + self.window;
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
}

#[cfg(test)]
mod tests;
