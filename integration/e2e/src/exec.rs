//! `exec` into pods on KWOK nodes, run as local processes on this machine.
//!
//! KWOK serves the kubelet's debugging endpoints itself (`--server-address`, `--node-port`), and
//! runs an exec as a local process when an `Exec` (per pod) or `ClusterExec` (per namespace or
//! cluster) object says how: working directory and environment. The harness installs those
//! CRDs (`kwok-crds.yaml`, from the KWOK module, see build.sh) and starts KWOK with
//! `--enable-crds=Exec,ClusterExec`; a test then calls [`local_exec_for_namespace`] (or
//! [`local_exec_for_pod`]).
//!
//! kube-apiserver reaches a node's kubelet at the node's preferred address (its `Hostname`, then
//! `InternalIP`: names and 10.x addresses that lead nowhere here) and
//! `status.daemonEndpoints.kubeletEndpoint.Port`. So the apiserver's egress to the cluster
//! goes through [`EgressProxy`], an HTTP CONNECT proxy on a unix socket
//! (`--egress-selector-config-file`, as Konnectivity is wired): loopback destinations (stork's
//! webhooks, through `STORK_WEBHOOK_SERVICE_MAP`) are dialed as asked, any other destination is
//! a node, and KWOK serves every node. KWOK's server uses a self-signed certificate and checks no
//! client certificate; the apiserver has no `--kubelet-certificate-authority`, so it does not
//! verify it either, as with `--kubelet-insecure-skip-tls-verify` elsewhere.
//!
//! What KWOK 0.7 does with an exec (`pkg/kwok/server/debugging_exec.go`, `pkg/utils/exec`):
//! the command runs in the rule's `workDir` with KWOK's own environment (the harness's, when the
//! cluster started) plus the rule's `envs`, as a child of KWOK. Stdin, when asked for, is copied
//! into a pipe that is never closed: data arrives, EOF never does (closing stdin ends nothing).
//! Nothing kills the process when the stream closes: it only dies if it then writes to stdout or
//! stderr (EPIPE/SIGPIPE), and it outlives KWOK, so the test binary's exit too. A non-zero exit
//! comes back as an `InternalError` status whose message ends in `exit status N` (no `ExitCode`
//! cause, unlike a kubelet's `NonZeroExitCode`): [`exit_code`] reads both forms.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use k8s_openapi::{
    api::core::v1::{Namespace, Pod},
    apimachinery::pkg::apis::meta::v1::Status,
};
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, AttachParams, DynamicObject, Patch, PatchParams},
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UnixListener, UnixStream},
};

use crate::{objects::WAIT, wait_for};

/// An HTTP CONNECT proxy for kube-apiserver's egress to the cluster (see the module docs), on
/// a thread of its own; it stops accepting when dropped.
pub(crate) struct EgressProxy {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EgressProxy {
    /// Listens on the unix socket `socket`; tunnels to non-loopback hosts go to KWOK's server
    /// on `127.0.0.1:<kubelet_port>`.
    pub(crate) fn start(socket: &Path, kubelet_port: u16) -> Result<Self> {
        let _ = std::fs::remove_file(socket);
        let listener = std::os::unix::net::UnixListener::bind(socket)
            .with_context(|| format!("bind the egress proxy socket {}", socket.display()))?;
        listener.set_nonblocking(true)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("e2e-egress-proxy".into()).spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("egress proxy runtime");
            rt.block_on(async move {
                let listener = UnixListener::from_std(listener).expect("egress proxy listener");
                let accept = async {
                    loop {
                        match listener.accept().await {
                            Ok((conn, _)) => {
                                tokio::spawn(async move {
                                    if let Err(e) = tunnel(conn, kubelet_port).await {
                                        eprintln!("[e2e] egress proxy: {e:#}");
                                    }
                                });
                            }
                            Err(e) => eprintln!("[e2e] egress proxy accept: {e}"),
                        }
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
        })?;
        Ok(Self { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for EgressProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The apiserver's `--egress-selector-config-file`: the `cluster` egress (kubelets, webhooks
/// and aggregated APIs referenced by Service) through the proxy on `socket`.
pub(crate) fn egress_selector_config(socket: &Path) -> Result<String> {
    let socket = socket.to_str().context("egress proxy socket path is not UTF-8")?;
    Ok(serde_json::to_string_pretty(&json!({
        "apiVersion": "apiserver.k8s.io/v1beta1",
        "kind": "EgressSelectorConfiguration",
        "egressSelections": [{
            "name": "cluster",
            "connection": {"proxyProtocol": "HTTPConnect", "transport": {"uds": {"udsName": socket}}}
        }]
    }))?)
}

/// The Endpoints address the harness gives the stork Service: the API server's service proxy
/// dials it through this proxy, which sends it to the same port on loopback (Endpoints may not
/// hold loopback addresses). From TEST-NET-1, so it can mean nothing else.
pub const STORK_ENDPOINT_IP: &str = "192.0.2.1";

/// Where a CONNECT to `addr` (`host:port`) goes: loopback as asked, [`STORK_ENDPOINT_IP`] to
/// loopback, anything else to KWOK.
fn destination(addr: &str, kubelet_port: u16) -> String {
    let (host, port) = addr.rsplit_once(':').unwrap_or((addr, ""));
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host == STORK_ENDPOINT_IP {
        format!("127.0.0.1:{port}")
    } else if host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
        addr.to_string()
    } else {
        format!("127.0.0.1:{kubelet_port}")
    }
}

async fn tunnel(mut conn: UnixStream, kubelet_port: u16) -> Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    let end = loop {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            bail!("connection closed before a CONNECT request");
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() > 16 * 1024 {
            bail!("no end of the request head in 16 KiB");
        }
    };
    let line = String::from_utf8_lossy(&head[..end]).lines().next().unwrap_or_default().to_string();
    let addr = match line.split_whitespace().collect::<Vec<_>>()[..] {
        ["CONNECT", addr, _] => addr.to_string(),
        _ => {
            conn.write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n").await?;
            bail!("not a CONNECT request: {line:?}");
        }
    };
    let to = destination(&addr, kubelet_port);
    let mut upstream = match TcpStream::connect(&to).await {
        Ok(s) => s,
        Err(e) => {
            // The reason phrase ends up in the apiserver's error message.
            let reason = format!("dial {to} (for {addr}): {e}").replace(['\r', '\n'], " ");
            conn.write_all(format!("HTTP/1.1 502 {reason}\r\n\r\n").as_bytes()).await?;
            return Ok(());
        }
    };
    conn.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await?;
    upstream.write_all(&head[end..]).await?;
    // Either side closing ends the tunnel; errors are the peers' business.
    let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
    Ok(())
}

/// Creates KWOK's CRDs from `path` (build.sh's `kwok-crds.yaml`) and waits until they are
/// served, so KWOK can watch them from its start.
pub(crate) fn install_kwok_crds(kubeconfig: &Path, path: &Path) -> Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::PostParams;
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).with_context(|| format!("parse {}", path.display()))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let api = Api::<CustomResourceDefinition>::all(crate::client_for(kubeconfig).await?);
        let mut names = Vec::new();
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            let crd: CustomResourceDefinition = serde_json::from_value(doc)?;
            names.push(crd.name_any());
            match api.create(&PostParams::default(), &crd).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => bail!("creating CRD {}: {e}", crd.name_any()),
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for name in names {
            loop {
                let crd = api.get(&name).await?;
                let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
                if conditions.iter().any(|c| c.type_ == "Established" && c.status == "True") {
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

fn kwok_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "kwok.x-k8s.io".into(),
        version: "v1alpha1".into(),
        api_version: "kwok.x-k8s.io/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// The `execs` entry of an Exec or ClusterExec: every container, locally in `work_dir` with `env`.
fn local_target(work_dir: &Path, env: &[(&str, &str)]) -> Result<Value> {
    let dir = std::path::absolute(work_dir)?;
    let dir = dir.to_str().with_context(|| format!("work dir {} is not UTF-8", dir.display()))?;
    let envs: Vec<Value> = env.iter().map(|(k, v)| json!({"name": k, "value": v})).collect();
    Ok(json!([{"local": {"workDir": dir, "envs": envs}}]))
}

const FIELD_MANAGER: &str = "stork-e2e";

/// Makes exec into every pod of `namespace` (on KWOK nodes) run the command as a local process
/// in `work_dir` (made absolute; it must exist when the command runs), with the harness's
/// environment plus `env` (which wins). Calling it again replaces the namespace's settings.
///
/// This is a ClusterExec `stork-e2e-exec-<namespace>` selecting the namespace, owned by the
/// Namespace (it goes away with it). KWOK learns of it through a watch, so an exec right after
/// this returns may still be refused ("no exec found"): [`wait_local_exec`] waits until a pod
/// runs commands in `work_dir`. A pod's own [`local_exec_for_pod`] takes precedence.
pub async fn local_exec_for_namespace(
    client: &Client,
    namespace: &str,
    work_dir: &Path,
    env: &[(&str, &str)],
) -> Result<()> {
    let ns = Api::<Namespace>::all(client.clone()).get(namespace).await.context("the namespace")?;
    let owner = json!({"apiVersion": "v1", "kind": "Namespace", "name": namespace, "uid": ns.uid()});
    let name = format!("stork-e2e-exec-{namespace}");
    let obj = json!({
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "ClusterExec",
        "metadata": {"name": name, "ownerReferences": [owner]},
        "spec": {"selector": {"matchNamespaces": [namespace]}, "execs": local_target(work_dir, env)?}
    });
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &kwok_resource("ClusterExec", "clusterexecs"));
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&obj))
        .await
        .with_context(|| format!("apply ClusterExec {name}"))?;
    Ok(())
}

/// Like [`local_exec_for_namespace`] for the one pod `namespace/pod` (an Exec named after the
/// pod; it takes precedence over its namespace's settings and goes away with the namespace).
pub async fn local_exec_for_pod(
    client: &Client,
    namespace: &str,
    pod: &str,
    work_dir: &Path,
    env: &[(&str, &str)],
) -> Result<()> {
    let obj = json!({
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Exec",
        "metadata": {"name": pod, "namespace": namespace},
        "spec": {"execs": local_target(work_dir, env)?}
    });
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &kwok_resource("Exec", "execs"));
    api.patch(pod, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&obj))
        .await
        .with_context(|| format!("apply Exec {namespace}/{pod}"))?;
    Ok(())
}

/// The exit code an exec's status reports: 0 on success; the `ExitCode` cause of a
/// `NonZeroExitCode` failure (a real kubelet's); else the `exit status N` KWOK puts at the end of
/// its error message. `None` when the status says neither (the command could not start, or the
/// stream broke).
pub fn exit_code(status: &Status) -> Option<i32> {
    if status.status.as_deref() == Some("Success") {
        return Some(0);
    }
    let causes = status.details.as_ref().and_then(|d| d.causes.as_ref()).into_iter().flatten();
    if let Some(code) = causes
        .filter(|c| c.reason.as_deref() == Some("ExitCode"))
        .find_map(|c| c.message.as_deref().and_then(|m| m.trim().parse().ok()))
    {
        return Some(code);
    }
    let message = status.message.as_deref()?;
    let (_, tail) = message.rsplit_once("exit status ")?;
    let digits: String = tail.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// What an exec printed, and how it ended.
#[derive(Debug)]
pub struct ExecOutput {
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
    /// The status the server sent at the end (`None`: the stream ended without one).
    pub status: Option<Status>,
}

impl ExecOutput {
    /// The exit code, as [`exit_code`] reads the status.
    pub fn code(&self) -> Option<i32> {
        self.status.as_ref().and_then(exit_code)
    }
}

/// Runs `command` in `pod`'s first container, writes `stdin` (if any, then closes it — which
/// KWOK does not pass on as EOF) and collects stdout, stderr and the status.
pub async fn exec_output(pods: &Api<Pod>, pod: &str, command: &[&str], stdin: Option<&[u8]>) -> Result<ExecOutput> {
    let params = AttachParams::default().stdin(stdin.is_some()).stdout(true).stderr(true);
    let mut proc = pods.exec(pod, command.iter().copied(), &params).await.context("exec")?;
    if let (Some(mut w), Some(data)) = (proc.stdin(), stdin) {
        w.write_all(data).await?;
        w.shutdown().await?;
    }
    let (mut out, mut err) = (proc.stdout().context("stdout")?, proc.stderr().context("stderr")?);
    let status = proc.take_status().context("status")?;
    let (mut stdout, mut stderr) = (String::new(), String::new());
    let (o, e, status) = tokio::join!(out.read_to_string(&mut stdout), err.read_to_string(&mut stderr), status);
    o?;
    e?;
    proc.join().await.context("exec stream")?;
    Ok(ExecOutput { stdout, stderr, status })
}

/// Waits until exec into `pod` runs commands locally in `work_dir` (KWOK has seen the rule
/// [`local_exec_for_namespace`] or [`local_exec_for_pod`] made), and panics after [`WAIT`].
pub async fn wait_local_exec(pods: &Api<Pod>, pod: &str, work_dir: &Path) {
    let want: PathBuf = work_dir.canonicalize().expect("work dir exists");
    wait_for(&format!("exec into {pod} running in {}", want.display()), WAIT, || async {
        let out = exec_output(pods, pod, &["pwd", "-P"], None).await.map_err(|e| format!("{e:#}"))?;
        if out.code() == Some(0) && Path::new(out.stdout.trim_end()) == want { Ok(()) } else { Err(format!("{out:?}")) }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_tunnels_are_dialed_as_asked_and_nodes_go_to_kwok() {
        assert_eq!(destination("127.0.0.1:8443", 9), "127.0.0.1:8443");
        assert_eq!(destination("localhost:8443", 9), "localhost:8443");
        assert_eq!(destination("[::1]:8443", 9), "[::1]:8443");
        assert_eq!(destination("node-a:10250", 9), "127.0.0.1:9");
        assert_eq!(destination("10.4.0.1:10250", 9), "127.0.0.1:9");
    }

    #[test]
    fn exit_codes_come_from_kubelet_causes_or_kwoks_message() {
        let s = |v: Value| -> Status { serde_json::from_value(v).unwrap() };
        assert_eq!(exit_code(&s(json!({"status": "Success"}))), Some(0));
        let kubelet = json!({"status": "Failure", "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}});
        assert_eq!(exit_code(&s(kubelet)), Some(3));
        let kwok = json!({"status": "Failure", "reason": "InternalError", "message":
            "Internal error occurred: error executing command in container: cmd wait: sh -c exit 3: exit status 3"});
        assert_eq!(exit_code(&s(kwok)), Some(3));
        assert_eq!(exit_code(&s(json!({"status": "Failure", "message": "no exec found"}))), None);
    }
}
