//! stork installed as a user installs it: the kustomize trees rendered and applied with
//! `kubectl apply -k` to a bare local control plane, then each Deployment's pods run as local
//! processes with their ServiceAccounts' tokens (see [`pod`] for what is translated, and why).
//! KWOK nodes do not run containers, so this is what proves the manifests: every missing
//! permission, flag or file path shows up as it would in a cluster.

mod pod;
mod probe;
mod proxy;
mod render;

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use kube::Client;
use serde_json::Value;

pub use pod::{Binaries, LocalPod, Rewrites};
pub use proxy::ServiceProxy;
pub use render::{Rendered, apply, delete, kubectl};

use crate::{Cluster, client_for, cluster::ClusterOptions, repo_root};

/// A bare cluster, the Services of a rendered tree standing in as proxies, and the local pods.
pub struct Install {
    /// The control plane (no stork of the harness's own).
    pub cluster: Cluster,
    /// Admin client.
    pub client: Client,
    /// Pods started so far, in start order (stopped ones included).
    pub pods: Vec<Started>,
    services: Vec<Service>,
    /// Service DNS names → their proxies.
    dns: Rewrites,
    bins: Binaries,
}

/// A pod the suite started, and whether it still runs.
pub struct Started {
    /// The pod.
    pub pod: LocalPod,
    /// Its template's labels (what Services select on).
    labels: BTreeMap<String, String>,
    /// Stopped by the test.
    pub stopped: bool,
}

struct Service {
    selector: BTreeMap<String, String>,
    /// (targetPort, proxy)
    ports: Vec<(String, ServiceProxy)>,
}

impl Install {
    /// Starts a bare control plane whose apiserver reaches every Service `services_from` renders
    /// (e.g. `manifests`) through a loopback proxy.
    pub fn start(services_from: &str) -> Result<Self> {
        let rendered = Rendered::of(services_from)?;
        let mut services = Vec::new();
        let mut map = Vec::new();
        let mut dns = Rewrites::default();
        for svc in rendered.all("Service") {
            let name = svc["metadata"]["name"].as_str().context("service name")?;
            let namespace = svc["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
            let selector = labels(&svc["spec"]["selector"]);
            let mut ports = Vec::new();
            for p in svc["spec"]["ports"].as_array().into_iter().flatten() {
                let port = p["port"].as_u64().context("service port")?;
                let target = match &p["targetPort"] {
                    Value::Null => port.to_string(),
                    Value::Number(n) => n.to_string(),
                    other => other.as_str().unwrap_or_default().to_string(),
                };
                let proxy = ServiceProxy::start(0)?;
                map.push(format!("{name}.{namespace}:{port}=127.0.0.1:{}", proxy.port));
                for host in [format!("{name}.{namespace}.svc.cluster.local"), format!("{name}.{namespace}.svc")] {
                    dns.add(format!("{host}:{port}"), format!("127.0.0.1:{}", proxy.port));
                }
                ports.push((target, proxy));
            }
            services.push(Service { selector, ports });
        }
        let opts = ClusterOptions { bare: true, webhook_service_map: Some(map.join(",")), ..Default::default() };
        let cluster = Cluster::start_with(opts)?;
        let client = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(client_for(&cluster.info.kubeconfig))
        })?;
        Ok(Self { cluster, client, pods: Vec::new(), services, dns, bins: binaries() })
    }

    /// `kubectl apply -k <dir>`.
    pub fn apply(&self, dir: &str) -> Result<String> {
        apply(&self.cluster.info.kubeconfig, dir)
    }

    /// `kubectl delete -k <dir>`.
    pub fn delete(&self, dir: &str) -> Result<String> {
        delete(&self.cluster.info.kubeconfig, dir)
    }

    /// Stops every running pod (as deleting their Deployments would) and waits for them to exit.
    pub fn stop_all(&mut self) {
        let running: Vec<usize> = (0..self.pods.len()).filter(|&i| !self.pods[i].stopped).collect();
        for &i in &running {
            self.terminate(i);
        }
        for i in running {
            self.wait_exit(i);
        }
    }

    /// Starts `spec.replicas` local pods of the rendered Deployment `name` (from `rendered`),
    /// named `<name>-<i>` after those already started, and adds them to the Services that select
    /// them. Returns their indices in [`Install::pods`].
    pub async fn start_deployment(&mut self, rendered: &Rendered, name: &str) -> Result<Vec<usize>> {
        let deployment = rendered.get("Deployment", name)?;
        let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1);
        let info = &self.cluster.info;
        let site = pod::Site {
            client: &self.client,
            bins: &self.bins,
            api_server: format!("https://127.0.0.1:{}", info.api_port),
            api_ca: info.dir.join("ca.crt"),
            services: self.dns.clone(),
            run_dir: info.dir.join("pods"),
        };
        let mut started = Vec::new();
        for _ in 0..replicas {
            let n = self.pods.iter().filter(|p| p.pod.name.starts_with(&format!("{name}-"))).count();
            let pod = LocalPod::start(&site, deployment, &format!("{name}-{n}")).await?;
            let labels = labels(&deployment["spec"]["template"]["metadata"]["labels"]);
            self.pods.push(Started { pod, labels, stopped: false });
            started.push(self.pods.len() - 1);
        }
        self.route();
        Ok(started)
    }

    /// Starts stopping pod `i` as the kubelet does: out of its Services, then SIGTERM.
    pub fn terminate(&mut self, i: usize) {
        self.pods[i].stopped = true;
        self.route();
        self.pods[i].pod.proc.terminate();
    }

    /// Waits for pod `i` to exit (SIGKILL after the pod's 30 s grace period); its exit status.
    pub fn wait_exit(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        self.pods[i].pod.proc.stop(Duration::from_secs(30))
    }

    /// Every line of every pod's log that reports a Forbidden answer from the API server.
    pub fn forbidden(&self) -> Vec<String> {
        self.pods
            .iter()
            .flat_map(|p| {
                let log = p.pod.log();
                let name = p.pod.name.clone();
                log.lines()
                    .filter(|l| l.to_ascii_lowercase().contains("forbidden"))
                    .map(|l| format!("{name}: {l}"))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The first few [`Install::forbidden`] lines and how many there are, for failure messages.
    pub fn forbidden_summary(&self) -> String {
        let all = self.forbidden();
        let first: Vec<&str> = all.iter().take(3).map(String::as_str).collect();
        format!("{} Forbidden log lines; first: {first:#?}", all.len())
    }

    /// The last lines of every pod's log, for failure messages.
    pub fn log_tails(&self, lines: usize) -> String {
        self.pods.iter().map(|p| format!("--- {}\n{}\n", p.pod.name, p.pod.proc.log_tail(lines))).collect()
    }

    /// Points every Service proxy at the running pods its selector matches.
    fn route(&self) {
        for svc in &self.services {
            for (target, proxy) in &svc.ports {
                let backends = self
                    .pods
                    .iter()
                    .filter(|p| !p.stopped && svc.selector.iter().all(|(k, v)| p.labels.get(k) == Some(v)))
                    .filter_map(|p| p.pod.port(target).ok())
                    .collect();
                proxy.set_backends(backends);
            }
        }
    }
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_object().into_iter().flatten().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect()
}

/// The binaries the harness's own cluster uses (`STORK_BIN`, `STORK_K8S_BIN_DIR`).
fn binaries() -> Binaries {
    let root = repo_root();
    let dir = std::env::var_os("STORK_K8S_BIN_DIR").map(PathBuf::from).unwrap_or(root.join("integration/.cache/bin"));
    let stork = std::env::var_os("STORK_BIN").map(PathBuf::from).unwrap_or(root.join("target/debug/stork"));
    Binaries { stork, k8s: dir.join("k8s-local") }
}
