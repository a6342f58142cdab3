//! stork: a storage-aware scheduling companion for Kubernetes.
//!
//! Surfaces: the scheduler extender ([`extender`]), the admission webhooks ([`webhook`]), the
//! health monitor ([`monitor`]) and the snapshot controllers ([`snapshot`]), served by
//! [`server`] and wired together by [`app`]. They share [`model`] (types and rules),
//! [`cluster`] (cached Kubernetes objects) and [`driver`] (the storage system), and never import
//! each other (`tests/architecture.rs`). Decisions read cached state only.

pub mod app;
pub mod body;
pub mod cli;
pub mod cluster;
pub mod driver;
pub mod events;
pub mod extender;
#[cfg(test)]
mod fixtures;
pub mod knobs;
pub mod kubectl;
pub mod leader;
pub mod metrics;
pub mod model;
pub mod monitor;
pub mod rule;
pub mod server;
pub mod snapshot;
pub mod telemetry;
pub mod text;
pub mod tls;
pub mod watch;
pub mod webhook;
