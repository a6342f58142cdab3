//! A rendered Deployment's pod, run as a local process the way the kubelet would run its
//! container: the container's `command`/`args`/`env` from the rendered object, its volumes
//! filled from the ConfigMaps and Secrets in the cluster, the pod's user and group, and the
//! credentials of its ServiceAccount (a TokenRequest token, nothing else).
//!
//! What cannot be the same on one machine is translated, and only that (see [`Rewrites`]):
//! mount paths become directories under the run dir, each pod's container ports become loopback
//! ports of its own, Service DNS names become the [`super::ServiceProxy`] standing in for the
//! Service, and in-cluster credentials become a kubeconfig holding the same token.

use std::{
    collections::BTreeMap,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::{
    authentication::v1::TokenRequest,
    core::v1::{ConfigMap, Secret, ServiceAccount},
};
use kube::{Api, Client, api::PostParams};
use serde_json::{Value, json};

use crate::{cluster::free_port, procs::Proc, wait_for};

/// Where the local binaries standing in for the images are.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `ghcr.io/stork-rs/stork` (entrypoint `/stork`).
    pub stork: PathBuf,
    /// `registry.k8s.io/kube-scheduler` and friends: the multi-call `k8s-local`.
    pub k8s: PathBuf,
}

/// Ordered text substitutions from in-cluster names to local ones.
#[derive(Debug, Clone, Default)]
pub struct Rewrites(Vec<(String, String)>);

impl Rewrites {
    /// Adds `from` → `to` (longer `from`s are applied first).
    pub fn add(&mut self, from: impl Into<String>, to: impl Into<String>) {
        self.0.push((from.into(), to.into()));
        self.0.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
    }

    /// `text` with every substitution applied.
    pub fn apply(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (from, to) in &self.0 {
            out = out.replace(from.as_str(), to);
        }
        out
    }

    /// The substitutions, for the log.
    pub fn describe(&self) -> String {
        self.0.iter().map(|(a, b)| format!("{a} -> {b}")).collect::<Vec<_>>().join(", ")
    }
}

/// What every local pod of one installation shares.
pub struct Site<'a> {
    /// Admin client (reads ConfigMaps/Secrets for volumes, requests tokens).
    pub client: &'a Client,
    /// The binaries behind the images.
    pub bins: &'a Binaries,
    /// `https://127.0.0.1:<port>` of the apiserver and the CA file that signed it.
    pub api_server: String,
    /// CA of the apiserver's serving certificate.
    pub api_ca: PathBuf,
    /// Service DNS names → their proxies (`name.ns.svc:port` → `127.0.0.1:<proxy>`).
    pub services: Rewrites,
    /// Where pods get their directories.
    pub run_dir: PathBuf,
}

/// One running pod.
pub struct LocalPod {
    /// Pod name (what `metadata.name` resolves to).
    pub name: String,
    /// The process.
    pub proc: Proc,
    /// Container port (by number and by name) → local port.
    ports: BTreeMap<String, u16>,
    container: Value,
    /// The pod's directory (volumes, kubeconfig, log).
    pub dir: PathBuf,
}

impl LocalPod {
    /// Starts the single container of `deployment`'s pod template as pod `name`.
    pub async fn start(site: &Site<'_>, deployment: &Value, name: &str) -> Result<Self> {
        let namespace = deployment["metadata"]["namespace"].as_str().context("deployment without namespace")?;
        let spec = &deployment["spec"]["template"]["spec"];
        let containers = spec["containers"].as_array().context("pod template without containers")?;
        let [container] = containers.as_slice() else { bail!("{name}: expected one container") };
        let sa = spec["serviceAccountName"].as_str().unwrap_or("default");
        let dir = site.run_dir.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let (uid, gid) = run_as(spec, container);

        let mut ports = BTreeMap::new();
        let mut rw = site.services.clone();
        for p in container["ports"].as_array().into_iter().flatten() {
            let cp = p["containerPort"].as_u64().context("containerPort")?;
            let local = free_port();
            ports.insert(cp.to_string(), local);
            if let Some(n) = p["name"].as_str() {
                ports.insert(n.to_string(), local);
            }
            // Each pod has its own network namespace; here every pod gets its own loopback port.
            rw.add(format!("0.0.0.0:{cp}"), format!("127.0.0.1:{local}"));
        }
        let volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
        let mut files = Vec::new();
        for m in container["volumeMounts"].as_array().into_iter().flatten() {
            let (vname, path) =
                (m["name"].as_str().context("mount name")?, m["mountPath"].as_str().context("mountPath")?);
            let local = dir.join("volumes").join(vname);
            rw.add(format!("{path}/"), format!("{}/", local.display()));
            rw.add(format!("={path}"), format!("={}", local.display()));
            let volume = volumes.iter().find(|v| v["name"] == vname).with_context(|| format!("no volume {vname}"))?;
            files.extend(fill_volume(site.client, namespace, volume, &local, uid).await?);
        }
        // ConfigMap contents name mount paths and Services too (the scheduler's config does).
        for f in &files {
            let text = std::fs::read_to_string(f)?;
            std::fs::write(f, rw.apply(&text))?;
        }

        let kubeconfig = dir.join("serviceaccount.kubeconfig");
        write_token_kubeconfig(site, namespace, sa, &kubeconfig).await?;
        let pod = PodMeta { name, namespace, sa };
        let mut cmd = command_for(site.bins, container, &rw, &kubeconfig, &ports)?;
        for e in container["env"].as_array().into_iter().flatten() {
            let key = e["name"].as_str().context("env name")?;
            cmd.env(key, env_value(site.client, &pod, e, &rw).await?);
        }
        cmd.current_dir(&dir);
        if let (Some(uid), Some(gid)) = (uid, gid) {
            cmd.uid(uid).gid(gid); // std drops supplementary groups when root sets a uid
        }
        eprintln!("[deploy] {name}: {:?} {:?}; rewrites: {}", cmd.get_program(), cmd.get_args(), rw.describe());
        let proc = Proc::spawn(name, cmd, &dir)?;
        Ok(Self { name: name.into(), proc, ports, container: container.clone(), dir })
    }

    /// The local port of a container port (number or name).
    pub fn port(&self, port: &str) -> Result<u16> {
        self.ports.get(port).copied().with_context(|| format!("{}: no container port {port}", self.name))
    }

    /// One try of the container's `readinessProbe`/`startupProbe`/`livenessProbe` (HTTP GET),
    /// on this pod's local port: `Ok` on 2xx/3xx as the kubelet counts success.
    pub async fn probe(&mut self, which: &str) -> Result<(), String> {
        self.proc.check_alive().map_err(|e| format!("{e:#}"))?;
        let get = &self.container[which]["httpGet"];
        let path = get["path"].as_str().ok_or(format!("{}: no {which}.httpGet.path", self.name))?;
        let port = match &get["port"] {
            Value::Number(n) => n.to_string(),
            other => other.as_str().unwrap_or_default().to_string(),
        };
        let port = self.port(&port).map_err(|e| e.to_string())?;
        let https = get["scheme"].as_str() == Some("HTTPS");
        let status = super::probe::http_get(port, path, https).await.map_err(|e| format!("{e:#}"))?;
        if (200..400).contains(&status) { Ok(()) } else { Err(format!("{} {which} {path}: HTTP {status}", self.name)) }
    }

    /// Waits until the startup probe and then the readiness probe pass; panics with the last
    /// answer and the log tail otherwise (at once when the process exits).
    pub async fn wait_ready(&mut self, timeout: Duration) {
        for which in ["startupProbe", "readinessProbe"] {
            if self.container[which].is_null() {
                continue;
            }
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                if let Err(e) = self.proc.check_alive() {
                    panic!("{} exited before its {which} passed: {e:#}", self.name);
                }
                match self.probe(which).await {
                    Ok(()) => break,
                    Err(last) if tokio::time::Instant::now() >= deadline => panic!(
                        "timed out after {timeout:?} waiting for {} {which}; last saw: {last}\n{}",
                        self.name,
                        self.proc.log_tail(30)
                    ),
                    Err(_) => tokio::time::sleep(Duration::from_millis(250)).await, // poll until the deadline
                }
            }
        }
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.log", self.name))).unwrap_or_default()
    }
}

struct PodMeta<'a> {
    name: &'a str,
    namespace: &'a str,
    sa: &'a str,
}

/// The pod's `runAsUser`/`runAsGroup` (container over pod), honoured when the harness runs as
/// root: files outside the pod's writable volumes are then not writable, as with a read-only
/// root filesystem.
fn run_as(spec: &Value, container: &Value) -> (Option<u32>, Option<u32>) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("[deploy] not root: pods run as this user, not their runAsUser");
        return (None, None);
    }
    let pick = |key: &str| {
        container["securityContext"][key].as_u64().or(spec["securityContext"][key].as_u64()).map(|v| v as u32)
    };
    let uid = pick("runAsUser");
    (uid, pick("runAsGroup").or(uid))
}

/// Writes a volume's files into `dir`; returns the text files that came from ConfigMaps.
async fn fill_volume(client: &Client, ns: &str, volume: &Value, dir: &Path, uid: Option<u32>) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let name = volume["name"].as_str().unwrap_or_default();
    let mut text_files = Vec::new();
    let items = |v: &Value| -> Vec<(String, String)> {
        v["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| {
                        (i["key"].as_str().unwrap_or_default().into(), i["path"].as_str().unwrap_or_default().into())
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    if let Some(cm) = volume.get("configMap") {
        let cm_name = cm["name"].as_str().context("configMap.name")?;
        let obj = Api::<ConfigMap>::namespaced(client.clone(), ns)
            .get(cm_name)
            .await
            .with_context(|| format!("ConfigMap {cm_name}"))?;
        let data = obj.data.unwrap_or_default();
        let wanted = items(cm);
        let pairs: Vec<(String, String)> =
            if wanted.is_empty() { data.keys().map(|k| (k.clone(), k.clone())).collect() } else { wanted };
        for (key, path) in pairs {
            let file = dir.join(&path);
            std::fs::write(&file, data.get(&key).with_context(|| format!("ConfigMap {cm_name} has no key {key}"))?)?;
            text_files.push(file);
        }
    } else if let Some(sec) = volume.get("secret") {
        let sec_name = sec["secretName"].as_str().context("secret.secretName")?.to_string();
        let api = Api::<Secret>::namespaced(client.clone(), ns);
        let wanted = items(sec);
        // The kubelet holds the pod in ContainerCreating until the Secret exists.
        let obj = wait_for(&format!("Secret {sec_name} for volume {name}"), Duration::from_secs(90), || async {
            api.get(&sec_name).await
        })
        .await;
        write_secret(&obj, &wanted, dir)?;
    } else if volume.get("emptyDir").is_some() {
        if let Some(uid) = uid {
            std::os::unix::fs::chown(dir, Some(uid), None)?;
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))?;
    } else {
        bail!("volume {name}: only configMap, secret and emptyDir volumes are emulated");
    }
    Ok(text_files)
}

/// Writes a Secret's keys (`wanted` as (key, path); empty: every key) into `dir`.
fn write_secret(obj: &Secret, wanted: &[(String, String)], dir: &Path) -> Result<()> {
    let name = obj.metadata.name.as_deref().unwrap_or_default();
    let data = obj.data.clone().unwrap_or_default();
    let pairs: Vec<(String, String)> =
        if wanted.is_empty() { data.keys().map(|k| (k.clone(), k.clone())).collect() } else { wanted.to_vec() };
    for (key, path) in pairs {
        let bytes = data.get(&key).with_context(|| format!("Secret {name} has no key {key}"))?;
        std::fs::write(dir.join(path), &bytes.0)?;
    }
    Ok(())
}

/// A kubeconfig holding a token of `ns/sa` from the TokenRequest API (what the kubelet mounts).
async fn write_token_kubeconfig(site: &Site<'_>, ns: &str, sa: &str, out: &Path) -> Result<()> {
    let api = Api::<ServiceAccount>::namespaced(site.client.clone(), ns);
    let req: TokenRequest = serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 7200}}))?;
    let token = api
        .create_token_request(sa, &PostParams::default(), &req)
        .await
        .with_context(|| format!("TokenRequest for ServiceAccount {ns}/{sa}"))?
        .status
        .context("TokenRequest without status")?
        .token;
    let kc = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "local", "cluster": {"server": site.api_server, "certificate-authority": site.api_ca}}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": sa, "namespace": ns}}],
    });
    std::fs::write(out, serde_json::to_vec_pretty(&kc)?)?;
    Ok(())
}

/// The process for the container's image, with its arguments translated, and the pod's
/// credentials handed over the way that binary takes a kubeconfig.
fn command_for(
    bins: &Binaries,
    container: &Value,
    rw: &Rewrites,
    kubeconfig: &Path,
    ports: &BTreeMap<String, u16>,
) -> Result<Command> {
    let image = container["image"].as_str().context("container without image")?;
    let strings = |key: &str| -> Vec<String> {
        container[key].as_array().into_iter().flatten().filter_map(|v| v.as_str()).map(|s| rw.apply(s)).collect()
    };
    let (command, args) = (strings("command"), strings("args"));
    if image.starts_with("ghcr.io/stork-rs/stork") {
        if !command.is_empty() {
            bail!("the stork container overrides the image's entrypoint: {command:?}");
        }
        let mut cmd = Command::new(&bins.stork);
        cmd.args(args).env("STORK_KUBECONFIG", kubeconfig);
        Ok(cmd)
    } else if image.starts_with("registry.k8s.io/kube-scheduler") {
        let mut argv = command.into_iter().chain(args);
        let first = argv.next().context("kube-scheduler container without command")?;
        let rest: Vec<String> = argv.collect();
        // In-cluster credentials → the same token through the configuration file.
        let config =
            rest.iter().find_map(|a| a.strip_prefix("--config=")).context("kube-scheduler without --config=")?;
        let text = std::fs::read_to_string(config).with_context(|| format!("read {config}"))?;
        let mut cfg: Value = serde_saphyr::from_str(&text).with_context(|| format!("parse {config}"))?;
        cfg["clientConnection"]["kubeconfig"] = json!(kubeconfig);
        std::fs::write(config, serde_json::to_vec_pretty(&cfg)?)?;
        let port = *ports.get("10259").context("kube-scheduler without containerPort 10259")?;
        let mut cmd = Command::new(&bins.k8s);
        // kube-scheduler binds 0.0.0.0:10259 by default: the pod's own network namespace.
        cmd.arg(first).args(rest).arg("--bind-address=127.0.0.1").arg(format!("--secure-port={port}"));
        Ok(cmd)
    } else {
        bail!("no local binary stands in for image {image}")
    }
}

/// An `env` entry's value as the kubelet resolves it.
async fn env_value(client: &Client, pod: &PodMeta<'_>, e: &Value, rw: &Rewrites) -> Result<String> {
    if let Some(v) = e["value"].as_str() {
        return Ok(rw.apply(v));
    }
    let from = &e["valueFrom"];
    if let Some(path) = from["fieldRef"]["fieldPath"].as_str() {
        return Ok(match path {
            "metadata.name" => pod.name.into(),
            "metadata.namespace" => pod.namespace.into(),
            "spec.serviceAccountName" => pod.sa.into(),
            "status.podIP" | "status.hostIP" => "127.0.0.1".into(),
            other => bail!("env {}: fieldRef {other} is not emulated", e["name"]),
        });
    }
    if let Some(r) = from.get("configMapKeyRef") {
        let (name, key) = (r["name"].as_str().unwrap_or_default(), r["key"].as_str().unwrap_or_default());
        let cm = Api::<ConfigMap>::namespaced(client.clone(), pod.namespace).get(name).await?;
        return cm.data.and_then(|d| d.get(key).cloned()).with_context(|| format!("ConfigMap {name} key {key}"));
    }
    if let Some(r) = from.get("secretKeyRef") {
        let (name, key) = (r["name"].as_str().unwrap_or_default(), r["key"].as_str().unwrap_or_default());
        let s = Api::<Secret>::namespaced(client.clone(), pod.namespace).get(name).await?;
        let bytes = s.data.and_then(|d| d.get(key).cloned()).with_context(|| format!("Secret {name} key {key}"))?;
        return Ok(String::from_utf8(bytes.0)?);
    }
    bail!("env {}: unsupported valueFrom {from}", e["name"])
}
