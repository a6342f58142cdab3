//! What every surface agrees on, in one place: the custom resource types, the rules for restore
//! claims, and the scheduler name pods are routed to. Surfaces (extender, webhook, monitor,
//! snapshot) import this module and the read model (`cluster`, `driver`), never each other; this
//! module imports no surface (`tests/architecture.rs` keeps it so).

pub mod backoff;
pub mod crd;
pub mod group;
pub mod restore_claim;
pub mod rule;
pub mod rule_refs;
pub mod schedule;

/// The scheduler name the webhook gives driver-backed pods, and that restores leave alone.
pub const STORK_SCHEDULER: &str = "stork";
