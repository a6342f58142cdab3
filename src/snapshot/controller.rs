//! The snapshot controller (stub: being written).

use std::sync::Arc;

use super::Context;

/// Finalizer on a `VolumeSnapshot`: its driver snapshot and data object are deleted first.
pub const FINALIZER: &str = "stork.libopenstorage.org/snapshot-cleanup";

/// Runs the controller until the future is dropped.
pub(super) async fn run(_ctx: Arc<Context>) {
    std::future::pending::<()>().await
}
