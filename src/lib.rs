//! kafka-gateway: a Kafka wire-protocol gateway that shows an unchanged cluster to remote clients
//! under private-link broker names, forwarding every frame it need not rewrite byte for byte.
//!
//! A frame's journey: [`listener`] accepts and builds a [`session`], which lets [`access`] admit
//! the connection (its [`proxy`] header, allowlists, limits), waits for a first request, dials the
//! broker side ([`upstream`]) and pumps both directions (the bulk of large frames through [`splice`], in the
//! kernel); [`frame`] peeks at headers with the [`wire`] cursor, [`inflight`] pairs responses with
//! requests, and [`rewrite`] replaces broker addresses with the names [`broker::Advertise`] gives,
//! after which the session hands the brokers it saw to the gateway to learn ([`topology::Learn`]);
//! a response held whole for that takes its share of the process's [`budget`].
//! Beside the data path: [`gateway`] (listener groups, discovery), [`runtime`] (the worker
//! threads), [`admin`] (the HTTP endpoint) with [`metrics`] and [`readiness`], [`config`] and
//! [`template`] (before all that), [`check`] with its [`report`], [`plan`], [`fixture`] and [`record`] (operator tools),
//! [`throttle`] (the bound on lines a flood could repeat).
#![forbid(unsafe_code)]

pub mod access;
pub mod admin;
pub mod broker;
pub mod budget;
pub mod check;
pub mod config;
pub mod fixture;
pub mod frame;
#[cfg(feature = "testing")]
pub mod fuzzing;
pub mod gateway;
pub mod inflight;
pub mod lifecycle;
pub mod listener;
pub mod metrics;
pub mod plan;
pub mod proxy;
pub mod readiness;
pub mod record;
pub mod report;
pub mod rewrite;
pub mod runtime;
pub mod sasl;
pub mod session;
pub mod splice;
pub mod stream;
pub mod template;
pub mod throttle;
pub mod tls;
pub mod topology;
pub mod upstream;
pub mod wire;

pub use config::Config;
pub use gateway::Gateway;
