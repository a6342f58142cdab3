//! Command line (pinned in DESIGN.md). Every flag also reads `STORK_<NAME>` from the environment.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

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
    /// HTTPS listener for /mutate /validate /filter /prioritize (needs --tls-cert/--tls-key or --self-signed).
    #[arg(long, env = "STORK_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Optional plain-HTTP listener for /filter /prioritize only.
    #[arg(long, env = "STORK_EXTENDER_LISTEN")]
    pub extender_listen: Option<SocketAddr>,
    /// Plain-HTTP listener for /healthz /readyz /metrics.
    #[arg(long, env = "STORK_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,
    /// Serving certificate (PEM, chain allowed); hot-reloaded when the file changes.
    #[arg(long, env = "STORK_TLS_CERT", requires = "tls_key", conflicts_with = "self_signed")]
    pub tls_cert: Option<PathBuf>,
    /// Serving key (PEM); hot-reloaded with the certificate.
    #[arg(long, env = "STORK_TLS_KEY", requires = "tls_cert", conflicts_with = "self_signed")]
    pub tls_key: Option<PathBuf>,
    /// Namespace of stork's own Secret and Service.
    #[arg(long, env = "STORK_NAMESPACE", default_value = "kube-system")]
    pub namespace: String,
    /// Self-managed certificates instead of --tls-cert/--tls-key (see below).
    #[command(flatten)]
    pub self_signed: SelfSignedArgs,
    /// Pod annotation that, set to true, keeps the webhook from touching a pod.
    #[arg(long, env = "STORK_WEBHOOK_SKIP_ANNOTATION", default_value = crate::webhook::DEFAULT_SKIP_ANNOTATION)]
    pub webhook_skip_annotation: String,
    /// Namespaces whose pods are never mutated (repeat the flag, or comma-separate).
    #[arg(long, env = "STORK_WEBHOOK_EXCLUDE_NAMESPACES", value_delimiter = ',', default_value = "kube-system")]
    pub webhook_exclude_namespace: Vec<String>,
}

/// `--self-signed` and its settings.
#[derive(Debug, Clone, Args)]
pub struct SelfSignedArgs {
    /// Issue a CA and serving certificate, keep them in --tls-secret, renew them before expiry
    /// and keep the caBundle of --webhook-config current (needs a live cluster).
    #[arg(
        id = "self_signed",
        long = "self-signed",
        env = "STORK_SELF_SIGNED",
        default_value_t = false,
        conflicts_with = "objects"
    )]
    pub enabled: bool,
    /// The Service fronting stork; the certificate is for `<service-name>.<namespace>.svc`.
    #[arg(long, env = "STORK_SERVICE_NAME", default_value = "stork-service")]
    pub service_name: String,
    /// Secret (in --namespace) holding tls.crt, tls.key, ca.crt and ca.key.
    #[arg(long, env = "STORK_TLS_SECRET", default_value = "stork-webhook-tls")]
    pub tls_secret: String,
    /// Name of both the Mutating- and the ValidatingWebhookConfiguration whose caBundle stork sets.
    #[arg(long, env = "STORK_WEBHOOK_CONFIG", default_value = "stork-webhooks")]
    pub webhook_config: String,
    /// Renew the serving certificate this long before it expires (the CA twice as long before).
    /// Seconds, or a duration such as `720h` or `30d`.
    #[arg(long, env = "STORK_CERT_RENEW_BEFORE", default_value = "30d", value_parser = parse_duration)]
    pub cert_renew_before: Duration,
    /// How often each replica re-reads the Secret besides watching it (tests shorten it).
    #[arg(long, env = "STORK_CERT_CHECK_INTERVAL", default_value = "1m", value_parser = parse_duration, hide = true)]
    pub cert_check_interval: Duration,
}

impl Default for SelfSignedArgs {
    /// The flag defaults, with the mode off.
    fn default() -> Self {
        Self {
            enabled: false,
            service_name: "stork-service".into(),
            tls_secret: "stork-webhook-tls".into(),
            webhook_config: "stork-webhooks".into(),
            cert_renew_before: Duration::from_secs(30 * 24 * 3600),
            cert_check_interval: Duration::from_secs(60),
        }
    }
}

/// Parses `90` (seconds) or a sum of `<number><unit>` with units `s`, `m`, `h`, `d`: `1d12h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let invalid = || format!("invalid duration {text:?}: use seconds, or e.g. 90s, 15m, 720h, 30d, 1d12h");
    let (mut total, mut digits) = (0u64, String::new());
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 24 * 3600,
            _ => return Err(invalid()),
        };
        let n: u64 = digits.parse().map_err(|_| invalid())?;
        total = n.checked_mul(unit).and_then(|secs| total.checked_add(secs)).ok_or_else(invalid)?;
        digits.clear();
    }
    if !digits.is_empty() || text.is_empty() {
        return Err(invalid());
    }
    Ok(Duration::from_secs(total))
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
        assert_eq!(s.namespace, "kube-system");
        let defaults = SelfSignedArgs::default();
        assert!(!s.self_signed.enabled);
        assert_eq!(
            (s.self_signed.service_name, s.self_signed.tls_secret, s.self_signed.webhook_config),
            (defaults.service_name, defaults.tls_secret, defaults.webhook_config)
        );
        assert_eq!(s.self_signed.cert_renew_before, defaults.cert_renew_before);
        assert_eq!(s.self_signed.cert_check_interval, defaults.cert_check_interval);
    }

    #[test]
    fn self_signed_is_rejected_with_certificate_files_or_an_objects_file() {
        for extra in [["--tls-cert", "c.pem"], ["--tls-key", "k.pem"], ["--objects", "o.yaml"]] {
            let args = ["stork", "serve", "--driver", "mock", "--self-signed"].into_iter().chain(extra);
            let err = Cli::try_parse_from(args).unwrap_err();
            assert!(err.to_string().contains("--self-signed"), "{err}");
        }
    }

    #[test]
    fn durations_are_seconds_or_unit_sums() {
        let day = 24 * 3600;
        for (text, secs) in
            [("90", 90), ("90s", 90), ("15m", 900), ("720h", 30 * day), ("30d", 30 * day), ("1d12h", 36 * 3600)]
        {
            assert_eq!(parse_duration(text), Ok(Duration::from_secs(secs)), "{text}");
        }
        for bad in ["", "d", "3w", "30 d", "-5s", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }
}
