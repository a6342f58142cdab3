//! The command lines the harness runs: stork's own (the mock driver on the harness's topology
//! file and certificates), and the `stork` kube-scheduler's flags and configuration, read from
//! `manifests/`.

use std::{path::Path, process::Command};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::{
    cluster::ClusterOptions,
    locate::{Bins, repo_root},
};

/// Builds the stork command line; the argument replaces the mock driver's flags when not empty.
pub(crate) type StorkCommand = Box<dyn Fn(&[String]) -> Command + Send>;

/// How the harness runs stork: the mock driver on the harness's topology file and certificates.
pub(crate) fn stork_command(
    opts: &ClusterOptions,
    bins: &Bins,
    kubeconfig: &Path,
    topology: &Path,
    dir: &Path,
    stork_port: u16,
    stork_admin_port: u16,
) -> StorkCommand {
    let stork_bin = bins.stork.clone();
    let (kc, topo, d) = (kubeconfig.to_path_buf(), topology.to_path_buf(), dir.to_path_buf());
    let stork_log = opts.stork_log.clone().unwrap_or_else(|| "info,stork=debug".into());
    Box::new(move |driver_args: &[String]| {
        let mut cmd = Command::new(&stork_bin);
        cmd.env("RUST_LOG", &stork_log).arg("serve").arg("--kubeconfig").arg(&kc);
        cmd.args(["--listen", &format!("127.0.0.1:{stork_port}")]);
        cmd.args(["--admin-listen", &format!("127.0.0.1:{stork_admin_port}")]);
        cmd.arg("--tls-cert").arg(d.join("stork.crt")).arg("--tls-key").arg(d.join("stork.key"));
        // As the manifests run it: only the `stork` scheduler's client certificate may call the extender.
        cmd.arg("--extender-client-ca").arg(d.join("ca.crt"));
        // Testing only: an interval policy's minute lasts 5 s, so schedules trigger within a test.
        cmd.arg("--schedule-test-minute=5s");
        if driver_args.is_empty() {
            cmd.args(["--driver", "mock"]).arg("--mock-topology").arg(&topo);
            // The monitor deletes pods; tests that exercise it start their own replicas (`replica`).
            cmd.arg("--health-monitor=false");
        } else {
            cmd.args(driver_args);
        }
        cmd
    })
}

/// The `stork` scheduler's configuration exactly as `manifests/scheduler-config.yaml` has it,
/// except for what differs outside a cluster: the kubeconfig, no leader election, and the
/// extender's address and the files of its TLS config (the server name stays the Service's DNS name).
pub(crate) fn stork_scheduler_config(kubeconfig: &Path, dir: &Path, stork_port: u16) -> Result<Value> {
    let text = std::fs::read_to_string(repo_root().join("manifests/scheduler-config.yaml"))?;
    let mut cfg: Value = serde_saphyr::from_str(&text).context("parse manifests/scheduler-config.yaml")?;
    cfg["clientConnection"] = json!({"kubeconfig": kubeconfig});
    cfg["leaderElection"] = json!({"leaderElect": false});
    let ext = cfg["extenders"].get_mut(0).context("manifests/scheduler-config.yaml has no extender")?;
    ext["urlPrefix"] = json!(format!("https://127.0.0.1:{stork_port}"));
    let tls = &mut ext["tlsConfig"];
    tls["caFile"] = json!(dir.join("ca.crt"));
    tls["certFile"] = json!(dir.join("stork-scheduler.crt"));
    tls["keyFile"] = json!(dir.join("stork-scheduler.key"));
    Ok(cfg)
}

/// The flags `manifests/stork-scheduler.yaml` runs the `stork` kube-scheduler with, besides
/// `--config` (the harness writes its own config from the same file).
pub(crate) fn stork_scheduler_flags() -> Result<Vec<String>> {
    let text = std::fs::read_to_string(repo_root().join("manifests/stork-scheduler.yaml"))?;
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).context("parse manifests/stork-scheduler.yaml")?;
    let deployment =
        docs.iter().find(|d| d["kind"] == "Deployment").context("no Deployment in stork-scheduler.yaml")?;
    let containers = deployment["spec"]["template"]["spec"]["containers"].as_array();
    let command = containers
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "kube-scheduler")
        .and_then(|c| c["command"].as_array())
        .context("no kube-scheduler container command in stork-scheduler.yaml")?;
    Ok(command
        .iter()
        .skip(1)
        .filter_map(Value::as_str)
        .filter(|a| !a.starts_with("--config"))
        .map(String::from)
        .collect())
}
