//! `kubectl stork`, the kubectl plugin: a client of the API server with the user's kubeconfig
//! and RBAC. It never computes placement itself: `explain` asks the running stork through the API
//! server's service proxy ([`crate::extender::explain`]).

mod create;
mod explain;
mod get;
mod output;
mod restore;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};

pub use output::Format;

/// `kubectl stork`: stork's snapshots, schedules and placements from the command line.
#[derive(Debug, Parser)]
#[command(name = "kubectl-stork", bin_name = "kubectl stork", version, about)]
pub struct Cli {
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, env = "KUBECONFIG")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Kubeconfig context (default: the current one).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Namespace (default: the context's, else `default`).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Why a pod runs where it does, or why it is Pending: every node, kept or dropped, its score
    /// and the reason, with the pod's volumes and where their replicas are (asked of stork).
    Explain(explain::ExplainArgs),
    /// List stork objects.
    Get(get::GetArgs),
    /// Create a snapshot, a schedule or a policy.
    Create(create::CreateArgs),
    /// Stop a schedule from triggering.
    Suspend(SuspendArgs),
    /// Let a suspended schedule trigger again.
    Resume(SuspendArgs),
    /// Restore a snapshot into a new claim, or in place into the claim it was taken of.
    Restore(restore::RestoreArgs),
    /// Print a shell completion script.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `suspend|resume schedule NAME`.
#[derive(Debug, Args)]
pub struct SuspendArgs {
    /// Always `schedule`.
    pub kind: ScheduleKind,
    /// The schedule.
    pub name: String,
}

/// The kind `suspend` and `resume` act on.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScheduleKind {
    /// A VolumeSnapshotSchedule.
    Schedule,
}

/// A failure explained for someone new to stork.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Kubeconfig unreadable or no cluster.
    #[error("cannot reach a cluster: {0}")]
    Config(String),
    /// stork's CRDs are not installed.
    #[error(
        "stork is not installed in this cluster: the API server does not serve {0}. \
         Install stork's CRDs first (kubectl apply -f manifests/crds.yaml from stork's repository)"
    )]
    NotInstalled(String),
    /// RBAC refused a request.
    #[error("forbidden: {0}. Ask a cluster admin for a Role granting it")]
    Forbidden(String),
    /// The named object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// What the user waited for failed.
    #[error("{0}")]
    Failed(String),
    /// Any other API failure.
    #[error("API request failed: {0}")]
    Api(String),
}

/// Turns an API error into one a newcomer understands; `what` names the request, e.g.
/// "list volumesnapshots in namespace shop".
pub fn api_error(e: kube::Error, what: &str, resource: &str) -> Error {
    match e {
        kube::Error::Api(s) if s.code == 403 => Error::Forbidden(format!("you may not {what} ({})", s.message)),
        kube::Error::Api(s) if s.code == 404 && s.message.contains("could not find the requested resource") => {
            Error::NotInstalled(resource.into())
        }
        kube::Error::Api(s) if s.code == 404 => Error::NotFound(s.message.clone()),
        other => Error::Api(format!("{what}: {other}")),
    }
}

/// "did you mean …" for `name` among `candidates`.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let mut best: Vec<(f64, &str)> =
        candidates.into_iter().map(|c| (strsim::jaro_winkler(name, c), c)).filter(|(s, _)| *s > 0.75).collect();
    best.sort_by(|a, b| b.0.total_cmp(&a.0));
    match best.first() {
        Some((_, c)) => format!("; did you mean {c}?"),
        None => String::new(),
    }
}

async fn client(cli: &Cli) -> Result<(Client, String), Error> {
    let kc = match &cli.kubeconfig {
        Some(path) => Kubeconfig::read_from(path).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?,
        None => Kubeconfig::read().map_err(|e| Error::Config(e.to_string()))?,
    };
    let opts = KubeConfigOptions { context: cli.context.clone(), ..KubeConfigOptions::default() };
    let cfg = Config::from_custom_kubeconfig(kc, &opts).await.map_err(|e| Error::Config(e.to_string()))?;
    let ns = cli.namespace.clone().unwrap_or_else(|| cfg.default_namespace.clone());
    let client = Client::try_from(cfg).map_err(|e| Error::Config(e.to_string()))?;
    Ok((client, ns))
}

/// Runs the plugin on `cli`, writing to stdout.
pub async fn run(cli: Cli) -> Result<(), Error> {
    if let Command::Completion { shell } = &cli.command {
        clap_complete::generate(*shell, &mut Cli::command(), "kubectl-stork", &mut std::io::stdout());
        return Ok(());
    }
    let (client, ns) = client(&cli).await?;
    let out = &mut std::io::stdout();
    match &cli.command {
        Command::Explain(a) => explain::run(&client, &ns, a, cli.output, out).await,
        Command::Get(a) => get::run(&client, &ns, a, cli.output, out).await,
        Command::Create(a) => create::run(&client, &ns, a, cli.output, out).await,
        Command::Suspend(a) => create::suspend(&client, &ns, &a.name, true, out).await,
        Command::Resume(a) => create::suspend(&client, &ns, &a.name, false, out).await,
        Command::Restore(a) => restore::run(&client, &ns, a, out).await,
        Command::Completion { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, message: &str) -> kube::Error {
        let status = kube::core::Status { code, message: message.into(), ..kube::core::Status::default() };
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn api_errors_read_as_a_newcomer_needs_them() {
        let e = api_error(
            api(404, "the server could not find the requested resource"),
            "list x",
            "volumesnapshots.volumesnapshot.external-storage.k8s.io",
        );
        let text = e.to_string();
        assert!(text.contains("stork is not installed") && text.contains("manifests/crds.yaml"), "{text}");
        let msg = r#"volumesnapshots is forbidden: User "dev" cannot list resource "volumesnapshots""#;
        let text = api_error(api(403, msg), "list volumesnapshots in namespace shop", "r").to_string();
        assert!(
            text.starts_with("forbidden: you may not list volumesnapshots in namespace shop")
                && text.contains("User \"dev\""),
            "{text}"
        );
    }

    #[test]
    fn a_near_miss_is_suggested_and_a_far_one_is_not() {
        assert_eq!(did_you_mean("nightlyy", ["nightly", "weekly"]), "; did you mean nightly?");
        assert_eq!(did_you_mean("zzz", ["nightly"]), "");
    }
}
