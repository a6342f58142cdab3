//! Hot reload of a file-based serving pair (`--tls-cert/--tls-key`).

use std::{path::PathBuf, sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{ReloadingCertResolver, describe};
use crate::watch::FileWatch;

/// How often the watcher re-checks the files even without a notify event (NFS, missed events).
const RELOAD_POLL: Duration = Duration::from_secs(10);

/// Reload `resolver` whenever `cert` or `key` change, until `cancel` fires.
///
/// `cert`/`key` should be the paths the resolver was built from. A failed reload is logged at
/// warn and the previous pair keeps serving; if the watcher cannot start, the startup pair serves
/// until restart.
pub async fn watch_and_reload(
    resolver: Arc<ReloadingCertResolver>,
    cert: PathBuf,
    key: PathBuf,
    cancel: CancellationToken,
) {
    let mut watch = match FileWatch::new(&[cert, key], RELOAD_POLL) {
        Ok(watch) => watch,
        Err(err) => {
            error!(error = &err as &dyn std::error::Error, "certificate hot-reload disabled");
            return;
        }
    };
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            alive = watch.changed() => if !alive {
                error!("file watcher stopped; certificate hot-reload disabled");
                return;
            },
        }
        match resolver.reload() {
            Ok(true) => match describe(&resolver.current.load()) {
                Some((serial, not_after)) => info!(%serial, %not_after, "reloaded TLS certificate"),
                None => info!("reloaded TLS certificate"),
            },
            Ok(false) => debug!("TLS files touched but the certificate is unchanged"),
            Err(err) => warn!(error = &err as &dyn std::error::Error, "keeping the previous TLS certificate"),
        }
    }
}
