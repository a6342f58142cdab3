//! The `stork-snapshot` restore provisioner (stub: being written).

use std::sync::Arc;

use super::Context;

/// PV annotation naming the provisioner instance that made it (as Stork).
pub const IDENTITY_ANNOTATION: &str = "snapshotProvisionerIdentity";
/// stork's identity in [`IDENTITY_ANNOTATION`].
pub const PROVISIONER_IDENTITY: &str = "stork";

/// Runs the provisioner until the future is dropped.
pub(super) async fn run(_ctx: Arc<Context>) {
    std::future::pending::<()>().await
}
