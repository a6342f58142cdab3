//! Command line (pinned in DESIGN.md). Every flag also reads `STORK_<NAME>` from the environment.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};

/// stork: storage-aware scheduling for Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "stork", version, about)]
pub struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, env = "STORK_LOG_JSON", global = true, default_value_t = false)]
    pub log_json: bool,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the extender, webhooks and admin endpoints.
    Serve(Box<ServeArgs>),
    /// Run the embedded seed scenario on localhost and print the decisions.
    Demo(DemoArgs),
    /// Write a development CA and serving certificate.
    Certs(CertsArgs),
}

/// Storage drivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DriverKind {
    /// State from a topology file (`--mock-topology`).
    Mock,
    /// Any CSI driver, from Kubernetes objects.
    Csi,
}

/// `stork serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Storage driver.
    #[arg(long, env = "STORK_DRIVER", value_enum)]
    pub driver: DriverKind,
    /// Mock driver state; re-read when the file changes.
    #[arg(long, env = "STORK_MOCK_TOPOLOGY")]
    pub mock_topology: Option<PathBuf>,
    /// Offline mode: StorageClass/PVC/PV/Node objects from this multi-document YAML instead of
    /// a live cluster (no kube client, controllers off).
    #[arg(long, env = "STORK_OBJECTS")]
    pub objects: Option<PathBuf>,
    /// Kubeconfig; otherwise in-cluster config or $KUBECONFIG.
    #[arg(long, env = "STORK_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// HTTPS listener for /mutate /validate /filter /prioritize (needs --tls-cert/--tls-key).
    #[arg(long, env = "STORK_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Optional plain-HTTP listener for /filter /prioritize only.
    #[arg(long, env = "STORK_EXTENDER_LISTEN")]
    pub extender_listen: Option<SocketAddr>,
    /// Plain-HTTP listener for /healthz /readyz /metrics.
    #[arg(long, env = "STORK_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,
    /// Serving certificate (PEM, chain allowed); hot-reloaded when the file changes.
    #[arg(long, env = "STORK_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Serving key (PEM); hot-reloaded with the certificate.
    #[arg(long, env = "STORK_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Pod annotation that, set to true, keeps the webhook from touching a pod.
    #[arg(long, env = "STORK_WEBHOOK_SKIP_ANNOTATION", default_value = crate::webhook::DEFAULT_SKIP_ANNOTATION)]
    pub webhook_skip_annotation: String,
    /// Namespaces whose pods are never mutated (repeat the flag, or comma-separate).
    #[arg(long, env = "STORK_WEBHOOK_EXCLUDE_NAMESPACES", value_delimiter = ',', default_value = "kube-system")]
    pub webhook_exclude_namespace: Vec<String>,
}

/// `stork demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Print the decisions once and exit instead of serving until Ctrl-C.
    #[arg(long)]
    pub once: bool,
}

/// `stork certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Output directory for ca.crt, tls.crt, tls.key.
    #[arg(long, env = "STORK_CERTS_OUT", default_value = "certs")]
    pub out: PathBuf,
    /// DNS names for the serving certificate (e.g. stork-service.kube-system.svc).
    #[arg(long, env = "STORK_CERTS_DNS", required = true, num_args = 1..)]
    pub dns: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_without_its_key_is_rejected() {
        let err = Cli::try_parse_from(["stork", "serve", "--driver", "mock", "--tls-cert", "c.pem"]).unwrap_err();
        assert!(err.to_string().contains("--tls-key"), "{err}");
    }

    #[test]
    fn serve_defaults_match_the_pinned_interface() {
        let cli = Cli::try_parse_from(["stork", "serve", "--driver", "mock"]).unwrap();
        let Command::Serve(s) = cli.command else { panic!("not serve") };
        let s = *s;
        assert_eq!(s.listen.to_string(), "0.0.0.0:8443");
        assert_eq!(s.admin_listen.to_string(), "0.0.0.0:9090");
        assert!(s.extender_listen.is_none());
    }
}
