//! The shared local cluster: etcd → kube-apiserver → kube-controller-manager → the default
//! kube-scheduler and the `stork` kube-scheduler (config from `manifests/`) → KWOK → stork.
//! One per test binary, started on first use by a supervisor thread that owns every process.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    sync::{Mutex, OnceLock, mpsc},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::{certs, procs::Proc};

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

/// Repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repo root")
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

struct Bins {
    k8s: PathBuf,
    kwok: PathBuf,
    /// KWOK's default stages, narrowed so a partitioned node is left alone (build.sh).
    kwok_stages: PathBuf,
    stork: PathBuf,
}

fn find_bins() -> Result<Bins> {
    let root = repo_root();
    let dir = std::env::var_os("STORK_K8S_BIN_DIR").map(PathBuf::from).unwrap_or(root.join("integration/.cache/bin"));
    let stork = std::env::var_os("STORK_BIN").map(PathBuf::from).unwrap_or(root.join("target/debug/stork"));
    let bins =
        Bins { k8s: dir.join("k8s-local"), kwok: dir.join("kwok"), kwok_stages: dir.join("kwok-stages.yaml"), stork };
    for (what, p, fix) in [
        ("kube components", &bins.k8s, "run integration/cluster/build.sh (or `just e2e`)"),
        ("kwok", &bins.kwok, "run integration/cluster/build.sh (or `just e2e`)"),
        ("kwok stages", &bins.kwok_stages, "run integration/cluster/build.sh (or `just e2e`)"),
        ("stork", &bins.stork, "run `cargo build --bin stork` (or `just e2e`), or set STORK_BIN"),
    ] {
        if !p.exists() {
            bail!("{what} not found at {}: {fix}", p.display());
        }
    }
    Ok(bins)
}

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

/// Builds the stork command line; the argument replaces the mock driver's flags when not empty.
type StorkCommand = Box<dyn Fn(&[String]) -> Command + Send>;

struct Components {
    info: ClusterInfo,
    procs: Vec<Proc>,
    stork_cmd: StorkCommand,
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

fn step(msg: &str, start: Instant) {
    eprintln!("[e2e {:>5.1}s] {msg}", start.elapsed().as_secs_f64());
}

fn boot(opts: &ClusterOptions) -> Result<Components> {
    let t0 = Instant::now();
    let bins = find_bins()?;
    // One directory per cluster: a test binary may start several (the deploy suite's bare ones
    // next to the shared one), and each boot clears its directory first.
    static BOOTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = BOOTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("stork-e2e-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    certs::write_all(&dir)?;
    let p = |f: &str| dir.join(f).display().to_string();
    let (etcd_port, etcd_peer, api_port) = (free_port(), free_port(), free_port());
    let (stork_port, stork_admin_port) = (free_port(), free_port());
    certs::write_kubeconfig(&dir, api_port)?;
    let kubeconfig = dir.join("admin.kubeconfig");
    let topology = dir.join("topology.yaml");
    std::fs::write(&topology, "nodes: []\nvolumes: []\n")?;
    let mut procs = Vec::new();

    step("starting etcd", t0);
    let mut cmd = Command::new(&bins.k8s);
    cmd.arg("etcd").args([
        "--name=etcd0".into(),
        format!("--data-dir={}", p("etcd")),
        format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
        format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
        format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
        format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
        format!("--initial-cluster=etcd0=http://127.0.0.1:{etcd_peer}"),
        "--unsafe-no-fsync=true".into(),
        "--log-level=warn".into(),
    ]);
    procs.push(Proc::spawn("etcd", cmd, &dir)?);
    wait_http_ok(procs.last_mut().expect("etcd"), etcd_port, "/health", Duration::from_secs(60))?;

    step("starting kube-apiserver", t0);
    let mut cmd = Command::new(&bins.k8s);
    // The apiserver reaches stork's webhooks through the real service-based manifests.
    let service_map = opts
        .webhook_service_map
        .clone()
        .unwrap_or_else(|| format!("stork-service.kube-system:443=127.0.0.1:{stork_port}"));
    cmd.env("STORK_WEBHOOK_SERVICE_MAP", service_map);
    cmd.arg("apiserver").args([
        format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={api_port}"),
        "--advertise-address=127.0.0.1".into(),
        format!("--tls-cert-file={}", p("apiserver.crt")),
        format!("--tls-private-key-file={}", p("apiserver.key")),
        format!("--cert-dir={}", p("apiserver-certs")),
        format!("--client-ca-file={}", p("ca.crt")),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={}", p("sa.pub")),
        format!("--service-account-signing-key-file={}", p("sa.key")),
        "--service-cluster-ip-range=10.0.0.0/24".into(),
        "--authorization-mode=Node,RBAC".into(),
        "--allow-privileged=true".into(),
        "--endpoint-reconciler-type=none".into(),
        "--enable-priority-and-fairness=false".into(),
    ]);
    procs.push(Proc::spawn("apiserver", cmd, &dir)?);
    wait_apiserver(procs.last_mut().expect("apiserver"), &kubeconfig, Duration::from_secs(120))?;

    step("starting kube-controller-manager, kube-schedulers (default, stork), kwok", t0);
    let mut cmd = Command::new(&bins.k8s);
    cmd.arg("controller-manager").args([
        format!("--kubeconfig={}", kubeconfig.display()),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={}", free_port()),
        format!("--cert-dir={}", p("kcm-certs")),
        "--leader-elect=false".into(),
        "--controllers=*".into(),
        format!("--service-account-private-key-file={}", p("sa.key")),
        format!("--root-ca-file={}", p("ca.crt")),
        "--use-service-account-credentials=false".into(),
        // Bind pre-bound claims within seconds even when the PV reached the cache after the claim.
        "--pvclaimbinder-sync-period=2s".into(),
    ]);
    procs.push(Proc::spawn("controller-manager", cmd, &dir)?);

    let mut default_cfg = json!({
        "apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": kubeconfig}, "leaderElection": {"leaderElect": false}
    });
    let mut stork_cfg = stork_scheduler_config(&kubeconfig, &dir, stork_port)?;
    if let Some((qps, burst)) = opts.scheduler_client_qps {
        for cfg in [&mut default_cfg, &mut stork_cfg] {
            cfg["clientConnection"]["qps"] = json!(qps);
            cfg["clientConnection"]["burst"] = json!(burst);
        }
    }
    std::fs::write(dir.join("scheduler.json"), serde_json::to_vec_pretty(&default_cfg)?)?;
    std::fs::write(dir.join("stork-scheduler.json"), serde_json::to_vec_pretty(&stork_cfg)?)?;
    let schedulers: &[(&str, &str)] = if opts.bare {
        &[("scheduler", "scheduler.json")]
    } else {
        &[("scheduler", "scheduler.json"), ("stork-scheduler", "stork-scheduler.json")]
    };
    for &(name, cfg) in schedulers {
        let mut cmd = Command::new(&bins.k8s);
        cmd.arg("scheduler").args([
            format!("--config={}", p(cfg)),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={}", free_port()),
            format!("--cert-dir={}", p(&format!("{name}-certs"))),
        ]);
        if name == "stork-scheduler" {
            cmd.args(stork_scheduler_flags()?);
        }
        if opts.scheduler_metrics_open {
            cmd.arg("--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics");
        }
        procs.push(Proc::spawn(name, cmd, &dir)?);
    }

    let mut cmd = Command::new(&bins.kwok);
    cmd.args([
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--config={}", bins.kwok_stages.display()),
        "--manage-all-nodes=false".into(),
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake".into(),
        "--node-ip=127.0.0.1".into(),
        "--cidr=10.244.0.0/16".into(),
        "--node-lease-duration-seconds=40".into(),
    ]);
    procs.push(Proc::spawn("kwok", cmd, &dir)?);

    let stork_cmd = stork_command(opts, &bins, &kubeconfig, &topology, &dir, stork_port, stork_admin_port);
    let info = ClusterInfo { dir, kubeconfig, topology, stork_admin_port, stork_port, api_port };
    if opts.bare {
        step("cluster ready (bare: no stork)", t0);
        return Ok(Components { info, procs, stork_cmd });
    }
    let (dir, kubeconfig) = (&info.dir, &info.kubeconfig);

    step("installing the CRDs from manifests/crds.yaml", t0);
    apply_crds(kubeconfig)?;
    step("starting stork", t0);
    procs.push(Proc::spawn("stork", stork_cmd(&[]), dir)?);
    wait_http_ok(procs.last_mut().expect("stork"), stork_admin_port, "/readyz", Duration::from_secs(60))?;
    for p in procs.iter_mut() {
        p.check_alive()?;
    }
    step("registering stork's webhooks from manifests/webhooks.yaml", t0);
    register_webhooks(kubeconfig, dir)?;
    step("cluster ready", t0);
    Ok(Components { info, procs, stork_cmd })
}

/// How the harness runs stork: the mock driver on the harness's topology file and certificates.
fn stork_command(
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
fn stork_scheduler_config(kubeconfig: &Path, dir: &Path, stork_port: u16) -> Result<Value> {
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
fn stork_scheduler_flags() -> Result<Vec<String>> {
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

/// Applies `manifests/webhooks.yaml` as a user would, with the harness CA as `caBundle` (the
/// apiserver reaches `stork-service.kube-system:443` through the service map), then waits until
/// the apiserver calls them: a dry-run restore PVC without its annotation gets denied.
fn register_webhooks(kubeconfig: &Path, dir: &Path) -> Result<()> {
    use base64::Engine;
    use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
    use kube::api::{Api, PostParams};
    let text = std::fs::read_to_string(repo_root().join("manifests/webhooks.yaml"))?;
    let ca = base64::engine::general_purpose::STANDARD.encode(std::fs::read(dir.join("ca.crt"))?);
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).context("parse manifests/webhooks.yaml")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let client = crate::client_for(kubeconfig).await?;
        let pp = PostParams::default();
        for mut doc in docs {
            for hook in doc["webhooks"].as_array_mut().into_iter().flatten() {
                hook["clientConfig"]["caBundle"] = json!(ca);
            }
            match doc["kind"].as_str() {
                Some("MutatingWebhookConfiguration") => {
                    let obj: MutatingWebhookConfiguration = serde_json::from_value(doc)?;
                    Api::<MutatingWebhookConfiguration>::all(client.clone()).create(&pp, &obj).await?;
                }
                Some("ValidatingWebhookConfiguration") => {
                    let obj: ValidatingWebhookConfiguration = serde_json::from_value(doc)?;
                    Api::<ValidatingWebhookConfiguration>::all(client.clone()).create(&pp, &obj).await?;
                }
                other => bail!("unexpected kind {other:?} in manifests/webhooks.yaml"),
            }
        }
        let sc: k8s_openapi::api::storage::v1::StorageClass = serde_json::from_value(
            json!({"metadata": {"name": "stork-snapshot-sc"}, "provisioner": "stork-snapshot"}),
        )?;
        let _ = Api::<k8s_openapi::api::storage::v1::StorageClass>::all(client.clone()).create(&pp, &sc).await;
        let probe: k8s_openapi::api::core::v1::PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "webhook-probe"},
            "spec": {"storageClassName": "stork-snapshot-sc", "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}
        }))?;
        let pvcs = Api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>::namespaced(client, "default");
        let dry = PostParams { dry_run: true, ..PostParams::default() };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match pvcs.create(&dry, &probe).await {
                Err(kube::Error::Api(e)) if e.message.contains("snapshot.alpha.kubernetes.io/snapshot") => {
                    return Ok(());
                }
                other if Instant::now() > deadline => bail!("webhooks not called by the apiserver; last: {other:?}"),
                _ => tokio::time::sleep(Duration::from_millis(250)).await, // poll until the deadline
            }
        }
    })
}

/// Creates the CRDs of `manifests/crds.yaml` and waits until the apiserver serves them.
fn apply_crds(kubeconfig: &Path) -> Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, PostParams};
    let text = std::fs::read_to_string(repo_root().join("manifests/crds.yaml"))?;
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).context("parse manifests/crds.yaml")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let client = crate::client_for(kubeconfig).await?;
        let api = Api::<CustomResourceDefinition>::all(client);
        let mut names = Vec::new();
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            let crd: CustomResourceDefinition = serde_json::from_value(doc)?;
            names.push(crd.metadata.name.clone().unwrap_or_default());
            match api.create(&PostParams::default(), &crd).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => bail!("creating CRD {:?}: {e}", crd.metadata.name),
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for name in names {
            loop {
                let crd = api.get(&name).await?;
                let established = crd
                    .status
                    .and_then(|s| s.conditions)
                    .into_iter()
                    .flatten()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                if established {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("CRD {name} not Established after 30s");
                }
                tokio::time::sleep(Duration::from_millis(100)).await; // poll until the deadline
            }
        }
        Ok(())
    })
}

/// Polls `GET http://127.0.0.1:<port><path>` until 200, failing early if the process dies.
fn wait_http_ok(proc: &mut Proc, port: u16, path: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("nothing yet");
    while Instant::now() < deadline {
        proc.check_alive()?;
        match http_get(port, path) {
            Ok(status) if status.contains(" 200 ") => return Ok(()),
            Ok(status) => last = status,
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100)); // poll until the deadline
    }
    bail!("{} not ready on :{port}{path} after {timeout:?}; last saw: {last}\n{}", proc.name, proc.log_tail(30))
}

fn http_get(port: u16, path: &str) -> Result<String> {
    Ok(http_get_full(port, path)?.lines().next().unwrap_or_default().to_string())
}

/// `GET http://127.0.0.1:<port><path>` over HTTP/1.0: the whole response, status line first.
pub fn http_get_full(port: u16, path: &str) -> Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    Ok(buf)
}

fn wait_apiserver(proc: &mut Proc, kubeconfig: &Path, timeout: Duration) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let deadline = Instant::now() + timeout;
    let mut last = String::from("nothing yet");
    while Instant::now() < deadline {
        proc.check_alive()?;
        let probe = rt.block_on(async {
            let client = crate::client_for(kubeconfig).await?;
            let req = http_request("/readyz")?;
            client.request_text(req).await.map_err(anyhow::Error::from)
        });
        match probe {
            Ok(body) if body.trim() == "ok" => return Ok(()),
            Ok(body) => last = body,
            Err(e) => last = format!("{e:#}"),
        }
        std::thread::sleep(Duration::from_millis(250)); // poll until the deadline
    }
    bail!("kube-apiserver not ready after {timeout:?}; last saw: {last}\n{}", proc.log_tail(30))
}

fn http_request(path: &str) -> Result<http::Request<Vec<u8>>> {
    Ok(http::Request::get(path).body(Vec::new())?)
}
