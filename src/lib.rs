//! kafka-gateway: a Kafka wire-protocol gateway that shows an unchanged cluster to remote clients
//! under private-link broker names, forwarding every frame it need not rewrite byte for byte.
//!
//! A frame's journey: [`listener`] accepts, [`session`] pumps both directions (the bulk of large
//! frames through [`splice`], in the kernel), [`frame`] peeks at headers, [`inflight`] pairs
//! responses with requests, [`rewrite`] replaces broker addresses using [`topology`], and
//! [`upstream`] dials the brokers, all on [`runtime`]'s threads, which poll a moment before they
//! sleep. [`config`] and [`template`] come before all that.
#![forbid(unsafe_code)]

pub mod check;
pub mod config;
pub mod fixture;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod inflight;
pub mod listener;
pub mod record;
pub mod rewrite;
pub mod runtime;
pub mod session;
pub mod splice;
pub mod template;
pub mod topology;
pub mod upstream;

pub use config::Config;
pub use gateway::Gateway;
