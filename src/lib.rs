//! stork: a storage-aware scheduling companion for Kubernetes.
//!
//! Surfaces: the scheduler extender ([`extender`]), and the admin endpoints ([`server`]).
//! Decisions read cached state only: [`cluster::ClusterView`] and a [`driver::Driver`].

pub mod app;
pub mod body;
pub mod cli;
pub mod cluster;
pub mod demo;
pub mod driver;
pub mod events;
pub mod extender;
#[cfg(test)]
mod fixtures;
pub mod knobs;
pub mod leader;
pub mod metrics;
pub mod model;
pub mod monitor;
pub mod server;
pub mod snapshot;
pub mod synth;
pub mod telemetry;
pub mod text;
pub mod tls;
pub mod watch;
pub mod webhook;
