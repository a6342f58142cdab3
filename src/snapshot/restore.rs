//! In-place restore (stub: being written).

use std::sync::Arc;

use super::Context;

/// Finalizer on a `VolumeSnapshotRestore` (Stork's name).
pub const FINALIZER: &str = "stork.libopenstorage.org/finalizer-cleanup";

/// Runs the controller until the future is dropped.
pub(super) async fn run(_ctx: Arc<Context>) {
    std::future::pending::<()>().await
}
