//! Beside the data path: the process's life. SIGTERM and SIGINT drain and exit 0, a second one
//! exits at once; SIGHUP reloads the configuration from the same file and flags; SIGUSR1 and
//! SIGUSR2, which would kill by default, are logged and ignored. systemd is told of each step
//! (`Type=notify-reload` units) when it started the gateway.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use sd_notify::NotifyState;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::gateway::Gateway;

/// Where the configuration came from, to read it again on SIGHUP.
#[derive(Debug, Clone)]
pub struct Source {
    pub file: Option<PathBuf>,
    pub overrides: Vec<String>,
}

/// The signals the gateway acts on, registered before it opens a port: from then on none of them
/// kills it.
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
    usr1: Signal,
    usr2: Signal,
}

impl Signals {
    pub fn register() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }

    /// The next SIGTERM or SIGINT.
    async fn stop(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Serves until SIGTERM or SIGINT, reloading on SIGHUP, then drains.
pub async fn serve(gateway: Arc<Gateway>, mut signals: Signals, source: Source) -> ExitCode {
    notify(&[NotifyState::Ready, NotifyState::Status("serving")]);
    let stop = loop {
        tokio::select! {
            _ = signals.term.recv() => break "SIGTERM",
            _ = signals.int.recv() => break "SIGINT",
            _ = signals.hup.recv() => reload(&gateway, &source).await,
            _ = signals.usr1.recv() => info!("SIGUSR1 ignored (SIGHUP reloads the configuration, SIGTERM drains)"),
            _ = signals.usr2.recv() => info!("SIGUSR2 ignored (SIGHUP reloads the configuration, SIGTERM drains)"),
        }
    };
    notify(&[NotifyState::Stopping, NotifyState::Status("draining")]);
    let within = gateway.config().drain;
    info!("{stop}: draining, for at most {}s (gateway.drain_secs); a second signal stops at once", within.as_secs());
    tokio::select! {
        drained = gateway.drain(within) => {
            if drained.cut == 0 {
                info!("stopped after a complete drain");
            } else {
                warn!(cut = drained.cut, "stopped: {} connection(s) cut at the end of the drain", drained.cut);
            }
        }
        again = signals.stop() => {
            warn!(cut = gateway.open_sessions(), "{again} during the drain: stopping now, cutting {} connection(s)", gateway.open_sessions());
        }
    }
    ExitCode::SUCCESS
}

/// Reads the configuration again and applies it; a configuration that is refused (at any key, or
/// because its TLS files do not load, or a port cannot be opened) leaves the running one in force.
async fn reload(gateway: &Gateway, source: &Source) {
    notify(&[NotifyState::Reloading, monotonic_now()]);
    info!("SIGHUP: reading the configuration again");
    let outcome = match Config::load(source.file.as_deref(), &source.overrides) {
        Ok(config) => gateway.apply(config).await,
        Err(e) => Err(e.into()),
    };
    if let Some(metrics) = gateway.metrics() {
        metrics.reloaded(outcome.is_ok());
    }
    match outcome {
        Ok(changes) if changes.is_empty() => info!("configuration reloaded: nothing changed"),
        Ok(changes) => info!("configuration reloaded: {}", changes.join("; ")),
        Err(e) if e.refused() => error!("configuration reload refused, the running configuration stays: {e}"),
        Err(e) => error!("configuration reloaded, but a port is not served until a reload opens it: {e}"),
    }
    notify(&[NotifyState::Ready, NotifyState::Status("serving")]);
}

/// Tells systemd, when it started the gateway with a notify socket; a no-op otherwise.
fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        warn!("cannot notify systemd: {e}");
    }
}

/// CLOCK_MONOTONIC in microseconds, which `RELOADING=1` carries for systemd's reload tracking.
fn monotonic_now() -> NotifyState<'static> {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    NotifyState::MonotonicUsec(i128::from(now.tv_sec) * 1_000_000 + i128::from(now.tv_nsec) / 1_000)
}
