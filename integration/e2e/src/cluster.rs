//! The shared local cluster: etcd → kube-apiserver → kube-controller-manager → the default
//! kube-scheduler and the `stork` kube-scheduler (config from `manifests/`) → KWOK → stork.
//! One per test binary, started on first use by a supervisor thread that owns every process.
//! Booting it is in `boot`; the binaries and ports it uses come from `locate`.

use std::{
    path::PathBuf,
    sync::{Mutex, OnceLock, mpsc},
    time::Duration,
};

use anyhow::{Context, Result};
use serde_json::{Value, json};

pub(crate) use crate::locate::free_port;
use crate::{boot::boot, procs::Proc, readiness::wait_http_ok};
pub use crate::{locate::repo_root, readiness::http_get_full};

/// Where a started cluster lives.
#[derive(Debug, Clone)]
pub struct ClusterInfo {
    /// Run directory (certs, configs, logs, etcd data).
    pub dir: PathBuf,
    /// Admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// The mock topology file stork serves.
    pub topology: PathBuf,
    /// stork's admin port.
    pub stork_admin_port: u16,
    /// stork's HTTPS port.
    pub stork_port: u16,
    /// kube-apiserver's secure port on 127.0.0.1.
    pub api_port: u16,
}

/// How [`Cluster::start_with`] deviates from the e2e suite's cluster; the default is that cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// `clientConnection.qps` and `.burst` of both kube-schedulers (default: kube-scheduler's own,
    /// 50 and 100, which caps binding at about 50 pods/s).
    pub scheduler_client_qps: Option<(f32, u32)>,
    /// stork's `RUST_LOG` (default `info,stork=debug`).
    pub stork_log: Option<String>,
    /// Let anyone read both kube-schedulers' `/metrics` on their secure port (by default only
    /// the health paths are open: the schedulers have no delegated authentication here).
    pub scheduler_metrics_open: bool,
    /// Only the upstream components and KWOK: no CRDs, no stork, no `stork` scheduler, no
    /// webhooks (the deploy suite installs those from the rendered manifests itself).
    pub bare: bool,
    /// The apiserver's `STORK_WEBHOOK_SERVICE_MAP` (how it reaches Services without kube-proxy);
    /// default: `stork-service.kube-system:443` to the harness's stork.
    pub webhook_service_map: Option<String>,
}

enum Cmd {
    StopStork(mpsc::Sender<Result<()>>),
    KillStork(mpsc::Sender<Result<()>>),
    StartStork(Vec<String>, mpsc::Sender<Result<()>>),
    Shutdown(mpsc::Sender<()>),
}

/// Handle to the running cluster.
pub struct Cluster {
    /// Paths and ports.
    pub info: ClusterInfo,
    tx: Mutex<mpsc::Sender<Cmd>>,
    topology: Mutex<Value>,
}

static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();

impl Cluster {
    /// The cluster shared by this test binary, started on first call.
    pub fn shared() -> &'static Cluster {
        match SHARED.get_or_init(|| Self::start().map_err(|e| format!("{e:#}"))) {
            Ok(c) => c,
            Err(e) => panic!("the local cluster could not start: {e}"),
        }
    }

    /// Starts a new cluster owned by a fresh supervisor thread.
    pub fn start() -> Result<Cluster> {
        Self::start_with(ClusterOptions::default())
    }

    /// Starts a new cluster, configured as `opts` says, owned by a fresh supervisor thread.
    pub fn start_with(opts: ClusterOptions) -> Result<Cluster> {
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("e2e-supervisor".into())
            .spawn(move || supervise(rx, ready_tx, &opts))
            .context("spawn supervisor")?;
        let info = ready_rx.recv().context("supervisor died")??;
        let topology = json!({"nodes": [], "volumes": []});
        Ok(Cluster { info, tx: Mutex::new(tx), topology: Mutex::new(topology) })
    }

    fn call(&self, make: impl FnOnce(mpsc::Sender<Result<()>>) -> Cmd) -> Result<()> {
        let (tx, rx) = mpsc::channel();
        self.tx.lock().expect("lock").send(make(tx)).context("supervisor gone")?;
        rx.recv().context("supervisor gone")?
    }

    /// Stops the stork process (SIGTERM; it must exit 0).
    pub fn stop_stork(&self) -> Result<()> {
        self.call(Cmd::StopStork)
    }

    /// Kills the stork process (SIGKILL: a crashed replica, no chance to clean up).
    pub fn kill_stork(&self) -> Result<()> {
        self.call(Cmd::KillStork)
    }

    /// Starts stork again with the same flags and waits until it is ready.
    pub fn start_stork(&self) -> Result<()> {
        self.call(|tx| Cmd::StartStork(Vec::new(), tx))
    }

    /// Starts stork on the same ports and certificates but with `driver_args` instead of the
    /// mock driver's (`--driver mock --mock-topology … --health-monitor=false`).
    pub fn start_stork_with(&self, driver_args: &[&str]) -> Result<()> {
        let args = driver_args.iter().map(|a| a.to_string()).collect();
        self.call(|tx| Cmd::StartStork(args, tx))
    }

    /// Stops every process (for `stork-cluster up`, on SIGTERM).
    pub fn shutdown(&self) {
        let (tx, rx) = mpsc::channel();
        if self.tx.lock().expect("lock").send(Cmd::Shutdown(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    /// Adds driver nodes `(id, ip)` with one status, and volumes `(id, replicas)`, to the topology.
    pub fn add_storage(&self, nodes: &[(&str, &str)], status: &str, volumes: &[(&str, &[&str])]) -> Result<()> {
        self.update_topology(|t| {
            let list = t["nodes"].as_array_mut().expect("nodes list");
            list.extend(nodes.iter().map(|(id, ip)| crate::objects::driver_node(id, ip, status)));
            let vols = t["volumes"].as_array_mut().expect("volumes list");
            vols.extend(volumes.iter().map(|(id, replicas)| json!({"id": id, "replicas": replicas})));
        })
    }

    /// The mock topology as last written.
    pub fn topology(&self) -> Value {
        self.topology.lock().expect("lock").clone()
    }

    /// Edits the mock topology (`{"nodes": [...], "volumes": [...]}`) and writes it atomically.
    pub fn update_topology(&self, edit: impl FnOnce(&mut Value)) -> Result<()> {
        let mut topo = self.topology.lock().expect("lock");
        edit(&mut topo);
        let tmp = self.info.topology.with_extension("tmp");
        // JSON is YAML: the file stays in the pinned topology format.
        std::fs::write(&tmp, serde_json::to_vec_pretty(&*topo)?)?;
        std::fs::rename(&tmp, &self.info.topology)?;
        Ok(())
    }
}

fn supervise(rx: mpsc::Receiver<Cmd>, ready: mpsc::Sender<Result<ClusterInfo>>, opts: &ClusterOptions) {
    let mut comps = match boot(opts) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(comps.info.clone()));
    while let Ok(cmd) = rx.recv() {
        match cmd {
            Cmd::StopStork(reply) => {
                let r = match comps.procs.iter().position(|p| p.name == "stork") {
                    None => Err(anyhow::anyhow!("stork is not running")),
                    Some(i) => {
                        let mut p = comps.procs.remove(i);
                        match p.stop(Duration::from_secs(15)) {
                            Some(s) if s.success() => Ok(()),
                            s => {
                                Err(anyhow::anyhow!("stork did not exit cleanly on SIGTERM: {s:?}\n{}", p.log_tail(30)))
                            }
                        }
                    }
                };
                let _ = reply.send(r);
            }
            Cmd::KillStork(reply) => {
                let r = match comps.procs.iter().position(|p| p.name == "stork") {
                    None => Err(anyhow::anyhow!("stork is not running")),
                    Some(i) => {
                        comps.procs.remove(i).kill();
                        Ok(())
                    }
                };
                let _ = reply.send(r);
            }
            Cmd::StartStork(args, reply) => {
                let r = Proc::spawn("stork", (comps.stork_cmd)(&args), &comps.info.dir).and_then(|mut p| {
                    wait_http_ok(&mut p, comps.info.stork_admin_port, "/readyz", Duration::from_secs(60))?;
                    comps.procs.push(p);
                    Ok(())
                });
                let _ = reply.send(r);
            }
            Cmd::Shutdown(reply) => {
                for p in comps.procs.iter_mut().rev() {
                    p.stop(Duration::from_secs(10));
                }
                comps.procs.clear();
                let _ = reply.send(());
                return;
            }
        }
    }
}
