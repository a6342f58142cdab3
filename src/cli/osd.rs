//! Flags of the `openstorage` (Portworx) driver.

use std::{path::PathBuf, time::Duration};

use clap::Args;

use super::parse_duration;
use crate::driver::openstorage::{
    Credentials, OsdConfig,
    config::{DEFAULT_PORT_NAME, DEFAULT_SERVICE},
};

/// How `--driver openstorage` reaches the OpenStorage SDK.
#[derive(Debug, Clone, Args)]
pub struct OsdArgs {
    /// OpenStorage SDK gRPC endpoint (`host:port`, `http://…` or `https://…`); default: the
    /// `--osd-service` Service's SDK port, as Stork finds Portworx.
    #[arg(long, env = "STORK_OSD_ENDPOINT")]
    pub osd_endpoint: Option<String>,
    /// Service (`NAMESPACE/NAME`) to find the SDK through when no --osd-endpoint is given.
    #[arg(long, env = "STORK_OSD_SERVICE", default_value = DEFAULT_SERVICE)]
    pub osd_service: String,
    /// Name of the SDK port on --osd-service.
    #[arg(long, env = "STORK_OSD_SERVICE_PORT", default_value = DEFAULT_PORT_NAME)]
    pub osd_service_port: String,
    /// CA bundle (PEM) that signed the SDK's TLS certificate; turns TLS on.
    #[arg(long, env = "STORK_OSD_CA")]
    pub osd_ca: Option<PathBuf>,
    /// File holding the bearer token for a cluster with security enabled; re-read when it
    /// changes (tokens are short-lived).
    #[arg(long, env = "STORK_OSD_TOKEN_FILE", conflicts_with = "osd_shared_secret_file")]
    pub osd_token_file: Option<PathBuf>,
    /// Instead of a token file: the cluster's shared secret (Portworx: `apps-secret` of the
    /// `px-system-secrets` Secret, Stork's `PX_SHARED_SECRET`), with which stork signs its own
    /// tokens as Stork does; re-read when it changes.
    #[arg(long, env = "STORK_OSD_SHARED_SECRET_FILE")]
    pub osd_shared_secret_file: Option<PathBuf>,
    /// Issuer of the tokens stork signs (Stork's `PX_JWT_ISSUER`).
    #[arg(long, env = "STORK_OSD_JWT_ISSUER", default_value = crate::driver::openstorage::token::DEFAULT_ISSUER)]
    pub osd_jwt_issuer: String,
    /// How often nodes and volumes are read from the SDK (controllers and new volumes also
    /// trigger a read).
    #[arg(long, env = "STORK_OSD_POLL_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub osd_poll_interval: Duration,
    /// Deadline of each SDK call.
    #[arg(long, env = "STORK_OSD_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub osd_timeout: Duration,
}

impl OsdArgs {
    /// The driver's settings; `rack_label` is `--rack-label`.
    pub fn config(&self, rack_label: &str) -> Result<OsdConfig, String> {
        if self.osd_poll_interval < Duration::from_secs(1) {
            return Err("--osd-poll-interval must be at least 1s".into());
        }
        if self.osd_timeout < Duration::from_millis(100) {
            return Err("--osd-timeout must be at least 100ms".into());
        }
        let mut config = OsdConfig::new(
            self.osd_endpoint.as_deref(),
            &self.osd_service,
            &self.osd_service_port,
            self.osd_ca.clone(),
        )
        .map_err(|e| e.to_string())?;
        config.credentials = match (&self.osd_token_file, &self.osd_shared_secret_file) {
            (Some(path), _) => Some(Credentials::TokenFile(path.clone())),
            (None, Some(file)) => {
                Some(Credentials::SharedSecret { file: file.clone(), issuer: self.osd_jwt_issuer.clone() })
            }
            (None, None) => None,
        };
        config.poll_interval = self.osd_poll_interval;
        config.call_timeout = self.osd_timeout;
        config.rack_label = rack_label.to_string();
        Ok(config)
    }
}

impl Default for OsdArgs {
    /// The flag defaults (parsed from an empty command line, so they are stated once).
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            osd: OsdArgs,
        }
        <Only as clap::Parser>::parse_from(["stork"]).osd
    }
}
