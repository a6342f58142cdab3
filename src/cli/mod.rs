//! Command line (pinned in DESIGN.md). Every flag also reads `STORK_<NAME>` from the environment.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

mod check;
pub mod kubectl;
mod limits;
mod osd;

pub use check::DriverSetup;

pub use limits::{LimitArgs, parse_bytes};
pub use osd::OsdArgs;

/// The commit stork was built from: 12 hex digits from git or the `STORK_GIT_REVISION` build
/// variable, or `unknown` without either (see build.rs).
pub const GIT_REVISION: &str = env!("STORK_GIT_REVISION");

/// What `stork --version` prints after the name: `0.1.0 (rev 1a2b3c4d5e6f)`.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (rev ", env!("STORK_GIT_REVISION"), ")");

/// stork: storage-aware scheduling for Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "stork", version = VERSION, about)]
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
    /// Print the snapshot CustomResourceDefinitions (the same as manifests/crds.yaml).
    Crds,
}

/// Storage drivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DriverKind {
    /// State from a topology file (`--mock-topology`).
    Mock,
    /// Any CSI driver, from Kubernetes objects.
    Csi,
    /// Portworx, or any OpenStorage SDK server, over gRPC (`--osd-*` flags).
    #[value(alias = "portworx")]
    Openstorage,
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
    /// Where the mock driver keeps snapshots and restored volumes (written by the leader, read
    /// by every replica); default `<topology stem>.snapshots.yaml` next to the topology file.
    #[arg(long, env = "STORK_MOCK_STATE")]
    pub mock_state: Option<PathBuf>,
    /// CSI driver names stork serves with `--driver csi` (repeat the flag, or comma-separate).
    #[arg(long = "csi-driver", env = "STORK_CSI_DRIVER", value_delimiter = ',')]
    pub csi_drivers: Vec<String>,
    /// Node-plugin pods of each `--csi-driver`, as `<NAMESPACE>/<LABEL-SELECTOR>`, paired with the
    /// drivers in order (optional; without it a node is Online when its CSINode lists the driver
    /// and the Node is Ready).
    #[arg(long = "csi-node-plugin", env = "STORK_CSI_NODE_PLUGIN")]
    pub csi_node_plugins: Vec<String>,
    /// VolumeSnapshotClass (snapshot.storage.k8s.io/v1) for snapshots of CSI volumes; default:
    /// the driver's default class.
    #[arg(long, env = "STORK_CSI_SNAPSHOT_CLASS")]
    pub csi_snapshot_class: Option<String>,
    /// The `openstorage` driver's SDK connection (see below).
    #[command(flatten)]
    pub osd: OsdArgs,
    /// Node label holding the rack (zone and region come from topology.kubernetes.io labels;
    /// with `--driver openstorage`, also Stork's `px/rack`).
    #[arg(long, env = "STORK_RACK_LABEL", default_value = "stork.libopenstorage.org/rack")]
    pub rack_label: String,
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
    /// Optional plain-HTTP listener for /filter /prioritize only, for loopback use (a scheduler
    /// in the same pod, benchmarks): it has no TLS and no client authentication, and extender
    /// calls write Events on pods. Bind it to 127.0.0.1, never to a routable address.
    #[arg(long, env = "STORK_EXTENDER_LISTEN")]
    pub extender_listen: Option<SocketAddr>,
    /// CA bundle (PEM) whose client certificates may call /filter and /prioritize on the HTTPS
    /// listener; others get 401 (the webhook paths stay open to the API server). Re-read when
    /// the file changes; a missing or empty file trusts no client until it is filled. With
    /// --self-signed, `self-signed` trusts stork's own CA, which also issues the stork
    /// scheduler's client certificate (client.crt/client.key in --tls-secret).
    #[arg(long, env = "STORK_EXTENDER_CLIENT_CA")]
    pub extender_client_ca: Option<PathBuf>,
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
    /// How long a pod review waits for a claim stork has not cached yet (a StatefulSet creates
    /// the claim moments before the pod) before the pod is allowed unchanged; likewise how long
    /// `/validate` waits for a Rule or SchedulePolicy applied together with the object naming it
    /// before refusing it. Live mode only; keep it well under the webhook's `timeoutSeconds` (3
    /// in the manifests).
    #[arg(long, env = "STORK_WEBHOOK_CLAIM_WAIT", default_value = "1s", value_parser = parse_duration)]
    pub webhook_claim_wait: std::time::Duration,
    /// Request and connection bounds (see below).
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Health monitor and leader election (see below).
    #[command(flatten)]
    pub monitor: MonitorArgs,
}

/// Leader-only controllers (health monitor, snapshots) and their leader election (live mode only).
#[derive(Debug, Clone, Args)]
pub struct MonitorArgs {
    /// Delete pods whose node's storage driver is down so they restart next to a healthy replica
    /// (runs on the elected leader only). `--health-monitor=false` turns it off.
    #[arg(long, env = "STORK_HEALTH_MONITOR", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub health_monitor: bool,
    /// Run the snapshot controller, the `stork-snapshot` restore provisioner and in-place
    /// restores (on the elected leader only). `--snapshot-controllers=false` turns them off.
    #[arg(long, env = "STORK_SNAPSHOT_CONTROLLERS", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub snapshot_controllers: bool,
    /// Further attempts of a rule's foreground command that failed (pre/post-snapshot rules).
    #[arg(long, env = "STORK_RULE_EXEC_RETRIES", default_value_t = 2)]
    pub rule_exec_retries: u32,
    /// Wait between attempts of a rule command.
    #[arg(long, env = "STORK_RULE_EXEC_RETRY_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub rule_exec_retry_interval: Duration,
    /// How long a rule command may run in one pod, and how long a background command may take to
    /// reach its ${WAIT_PLACEHOLDER} (Stork: 15 minutes).
    #[arg(long, env = "STORK_RULE_EXEC_TIMEOUT", default_value = "15m", value_parser = parse_duration)]
    pub rule_exec_timeout: Duration,
    /// Time zone of daily, weekly and monthly snapshot schedule times (an IANA name such as
    /// Europe/Berlin; the zone database is built in).
    #[arg(long, env = "STORK_SCHEDULE_TIME_ZONE", default_value = "UTC", value_parser = parse_time_zone)]
    pub schedule_time_zone: jiff::tz::TimeZone,
    /// TESTING ONLY: the length of one minute of interval schedule policies (intervalMinutes), so
    /// tests need not wait real minutes. Leave at 60s in production.
    #[arg(long, env = "STORK_SCHEDULE_TEST_MINUTE", default_value = "60s", value_parser = parse_duration)]
    pub schedule_test_minute: Duration,
    /// How often the driver is polled (minimum 30s).
    #[arg(long, env = "STORK_MONITOR_INTERVAL", default_value = "120s", value_parser = parse_duration)]
    pub monitor_interval: Duration,
    /// Only record events on the pods that would be deleted.
    #[arg(long, env = "STORK_MONITOR_DRY_RUN", default_value_t = false)]
    pub monitor_dry_run: bool,
    /// Above this share of driver nodes down at once, assume a driver outage and do nothing.
    #[arg(long, env = "STORK_MONITOR_MAX_DOWN_FRACTION", default_value_t = 0.5)]
    pub monitor_max_down_fraction: f64,
    /// Cluster-wide ceiling on pod deletions in any minute.
    #[arg(long, env = "STORK_MONITOR_MAX_DELETIONS_PER_MINUTE", default_value_t = 20)]
    pub monitor_max_deletions_per_minute: u32,
    /// First wait of the re-check backoff (doubles each time).
    #[arg(long, env = "STORK_MONITOR_BACKOFF", default_value = "10s", value_parser = parse_duration, hide = true)]
    pub monitor_backoff: Duration,
    /// Checks a node must fail, first sighting included, before its pods are deleted.
    #[arg(long, env = "STORK_MONITOR_BACKOFF_CHECKS", default_value_t = 5, hide = true)]
    pub monitor_backoff_checks: u32,
    /// Pods deleted per batch.
    #[arg(long, env = "STORK_MONITOR_BATCH_SIZE", default_value_t = 5, hide = true)]
    pub monitor_batch_size: usize,
    /// Pause after each batch.
    #[arg(long, env = "STORK_MONITOR_BATCH_INTERVAL", default_value = "30s", value_parser = parse_duration, hide = true)]
    pub monitor_batch_interval: Duration,
    /// Lift the 30s minimum of --monitor-interval (tests).
    #[arg(long, env = "STORK_MONITOR_ALLOW_SHORT_INTERVAL", default_value_t = false, hide = true)]
    pub monitor_allow_short_interval: bool,
    /// Name of the leader-election Lease in --namespace.
    #[arg(long, env = "STORK_LEADER_LEASE", default_value = "stork", hide = true)]
    pub leader_lease: String,
    /// How long others wait after the leader's last renewal before taking over.
    #[arg(long, env = "STORK_LEADER_LEASE_DURATION", default_value = "15s", value_parser = parse_duration, hide = true)]
    pub leader_lease_duration: Duration,
    /// The leader steps down when it could not renew for this long.
    #[arg(long, env = "STORK_LEADER_RENEW_DEADLINE", default_value = "10s", value_parser = parse_duration, hide = true)]
    pub leader_renew_deadline: Duration,
    /// Interval between attempts to take or renew the lease.
    #[arg(long, env = "STORK_LEADER_RETRY_PERIOD", default_value = "2s", value_parser = parse_duration, hide = true)]
    pub leader_retry_period: Duration,
}

impl Default for MonitorArgs {
    /// The flag defaults.
    fn default() -> Self {
        Self {
            health_monitor: true,
            snapshot_controllers: true,
            rule_exec_retries: 2,
            rule_exec_retry_interval: Duration::from_secs(5),
            rule_exec_timeout: Duration::from_secs(900),
            schedule_time_zone: jiff::tz::TimeZone::UTC,
            schedule_test_minute: Duration::from_secs(60),
            monitor_interval: Duration::from_secs(120),
            monitor_dry_run: false,
            monitor_max_down_fraction: 0.5,
            monitor_max_deletions_per_minute: 20,
            monitor_backoff: Duration::from_secs(10),
            monitor_backoff_checks: 5,
            monitor_batch_size: 5,
            monitor_batch_interval: Duration::from_secs(30),
            monitor_allow_short_interval: false,
            leader_lease: "stork".into(),
            leader_lease_duration: Duration::from_secs(15),
            leader_renew_deadline: Duration::from_secs(10),
            leader_retry_period: Duration::from_secs(2),
        }
    }
}

impl MonitorArgs {
    /// Rejects settings that would make the monitor unsafe or the election unsound.
    pub fn validate(&self) -> Result<(), String> {
        if self.monitor_interval < Duration::from_secs(30) && !self.monitor_allow_short_interval {
            return Err("minimum interval for health monitor is 30 seconds (--monitor-interval)".into());
        }
        if self.monitor_interval.is_zero() {
            return Err("--monitor-interval must be positive".into());
        }
        if !(self.monitor_max_down_fraction > 0.0 && self.monitor_max_down_fraction <= 1.0) {
            return Err("--monitor-max-down-fraction must be in (0, 1]".into());
        }
        if self.monitor_batch_size == 0 || self.monitor_max_deletions_per_minute == 0 {
            return Err("--monitor-batch-size and --monitor-max-deletions-per-minute must be at least 1".into());
        }
        let (d, r, p) = (self.leader_lease_duration, self.leader_renew_deadline, self.leader_retry_period);
        if !(d > r && r > p && !p.is_zero()) {
            return Err("leader election needs lease duration > renew deadline > retry period > 0".into());
        }
        Ok(())
    }
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

/// Parses `90` (seconds, as Stork's flags take them) or a humantime duration: `90s`, `15m`,
/// `720h`, `30d`, `1d12h`, `500ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("invalid duration {text:?} ({e}): use seconds, or e.g. 90s, 15m, 720h, 30d, 1d12h"))
}

/// An IANA time zone name (`UTC`, `Europe/Berlin`).
pub fn parse_time_zone(text: &str) -> Result<jiff::tz::TimeZone, String> {
    jiff::tz::TimeZone::get(text.trim())
        .map_err(|e| format!("unknown time zone {text:?} ({e}): use an IANA name such as UTC or Europe/Berlin"))
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
mod tests;
