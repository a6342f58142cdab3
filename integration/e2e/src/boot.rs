//! Booting the local control plane, one process after another, each waited for: etcd,
//! kube-apiserver (its egress to the nodes through [`EgressProxy`]), KWOK's CRDs,
//! kube-controller-manager, both kube-schedulers, KWOK (serving exec, see `exec`), then (unless
//! bare) the CRDs, stork and its webhooks.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use anyhow::Result;
use serde_json::json;

use crate::{
    certs,
    cluster::{ClusterInfo, ClusterOptions},
    exec::{EgressProxy, egress_selector_config, install_kwok_crds},
    install::{apply_crds, register_webhooks},
    locate::{find_bins, free_port},
    procs::Proc,
    readiness::{wait_apiserver, wait_http_ok},
    stork_cmd::{StorkCommand, stork_command, stork_scheduler_config, stork_scheduler_flags},
};

/// What a boot started: paths and ports, the processes (in start order), and how to run stork.
pub(crate) struct Components {
    pub(crate) info: ClusterInfo,
    pub(crate) procs: Vec<Proc>,
    pub(crate) stork_cmd: StorkCommand,
    /// The apiserver's way to the nodes' kubelets (KWOK); lives as long as the cluster.
    pub(crate) _egress: EgressProxy,
}

fn step(msg: &str, start: Instant) {
    eprintln!("[e2e {:>5.1}s] {msg}", start.elapsed().as_secs_f64());
}

pub(crate) fn boot(opts: &ClusterOptions) -> Result<Components> {
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
    // KWOK's kubelet server (exec, logs …) for every KWOK node.
    let kwok_port = free_port();
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
    let egress_socket = dir.join("egress.sock");
    let egress = EgressProxy::start(&egress_socket, kwok_port)?;
    std::fs::write(dir.join("egress-selector.json"), egress_selector_config(&egress_socket)?)?;
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
        // Kubelet connections (exec, logs, port-forward) reach KWOK through the egress proxy.
        format!("--egress-selector-config-file={}", p("egress-selector.json")),
    ]);
    procs.push(Proc::spawn("apiserver", cmd, &dir)?);
    wait_apiserver(procs.last_mut().expect("apiserver"), &kubeconfig, Duration::from_secs(120))?;

    step("installing KWOK's Exec and ClusterExec CRDs", t0);
    install_kwok_crds(&kubeconfig, &bins.kwok_crds)?;

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
        // The kubelet server: exec into KWOK pods runs local processes as Exec/ClusterExec
        // objects say (exec.rs). The node port goes into each node's daemonEndpoints.
        format!("--server-address=127.0.0.1:{kwok_port}"),
        format!("--node-port={kwok_port}"),
        "--enable-crds=Exec,ClusterExec".into(),
    ]);
    procs.push(Proc::spawn("kwok", cmd, &dir)?);

    let stork_cmd = stork_command(opts, &bins, &kubeconfig, &topology, &dir, stork_port, stork_admin_port);
    let info = ClusterInfo { dir, kubeconfig, topology, stork_admin_port, stork_port, api_port };
    if opts.bare {
        wait_kwok(&mut procs, kwok_port)?;
        step("cluster ready (bare: no stork)", t0);
        return Ok(Components { info, procs, stork_cmd, _egress: egress });
    }
    let (dir, kubeconfig) = (&info.dir, &info.kubeconfig);

    step("installing the CRDs from manifests/crds.yaml", t0);
    apply_crds(kubeconfig)?;
    step("starting stork", t0);
    procs.push(Proc::spawn("stork", stork_cmd(&[]), dir)?);
    wait_http_ok(procs.last_mut().expect("stork"), stork_admin_port, "/readyz", Duration::from_secs(60))?;
    wait_kwok(&mut procs, kwok_port)?;
    for p in procs.iter_mut() {
        p.check_alive()?;
    }
    step("registering stork's webhooks from manifests/webhooks.yaml", t0);
    register_webhooks(kubeconfig, dir)?;
    crate::install::register_service(kubeconfig, stork_admin_port)?;
    step("cluster ready", t0);
    Ok(Components { info, procs, stork_cmd, _egress: egress })
}

/// Waits until KWOK's server answers (it starts once KWOK watches its nodes, pods and exec rules).
fn wait_kwok(procs: &mut [Proc], port: u16) -> Result<()> {
    let kwok = procs.iter_mut().find(|p| p.name == "kwok").expect("kwok started");
    wait_http_ok(kwok, port, "/healthz", Duration::from_secs(60))
}
