//! The real OpenStorage SDK server for the `openstorage` driver's tests: `osd-harness`
//! (integration/osd, built by its build.sh) on free loopback ports, its node list set through
//! its control endpoint, volumes made through the SDK's own gRPC API with stork's client.
//!
//! It runs as `nobody` when the tests run as root (the upstream packages create directories
//! under /var/lib/osd when they load), in a state directory of its own, and dies with the test
//! that started it (`--exit-with-parent`) or when dropped.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use stork::driver::openstorage::{
    SdkClient,
    proto::{ReplicaSet, SdkVolumeCreateRequest, SdkVolumeSnapshotEnumerateWithFiltersRequest, VolumeSpec},
};

use crate::{cluster::free_port, locate::repo_root, procs::Proc};

/// One driver node as the harness's `PUT /nodes` takes it.
#[derive(Debug, Clone)]
pub struct OsdNode {
    /// Storage id.
    pub id: String,
    /// Kubernetes node name (`scheduler_node_name`).
    pub node: String,
    /// Management and data IP.
    pub ip: String,
    /// `openstorage.api.Status` name.
    pub status: String,
}

impl OsdNode {
    /// An online node.
    pub fn new(id: &str, node: &str, ip: &str) -> Self {
        Self { id: id.into(), node: node.into(), ip: ip.into(), status: "STATUS_OK".into() }
    }
}

/// How to start the server.
#[derive(Debug, Clone, Default)]
pub struct OsdOptions {
    /// Turns SDK auth on with this HS256 shared secret (issuer `stork-e2e`); calls without a
    /// token are refused.
    pub jwt_secret: Option<String>,
    /// Serve the SDK over TLS, with a certificate for 127.0.0.1 signed by [`OsdServer::ca`].
    pub tls: bool,
}

/// A running `osd-harness`.
pub struct OsdServer {
    /// `http://127.0.0.1:<sdk port>`, for `--osd-endpoint`.
    pub endpoint: String,
    sdk_port: u16,
    control_port: u16,
    dir: PathBuf,
    opts: OsdOptions,
    proc: Option<Proc>,
}

/// The harness binary, or how to build it.
fn binary() -> Result<PathBuf> {
    let dir = std::env::var_os("STORK_K8S_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("integration/.cache/bin"));
    let bin = dir.join("osd-harness");
    if !bin.exists() {
        bail!(
            "osd-harness not found at {}: run integration/osd/build.sh (or `just e2e`); it needs Go and the Go module proxy",
            bin.display()
        );
    }
    Ok(bin)
}

impl OsdServer {
    /// Starts the server on free ports and waits until it answers.
    pub fn start(opts: OsdOptions) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("stork-osd-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir)?;
        if opts.tls {
            // The harness's CA and its serving pair for 127.0.0.1 (`ca.crt`, `stork.{crt,key}`).
            crate::certs::write_all(&dir)?;
        }
        let scheme = if opts.tls { "https" } else { "http" };
        let mut server =
            Self { endpoint: String::new(), sdk_port: free_port(), control_port: free_port(), dir, opts, proc: None };
        server.endpoint = format!("{scheme}://127.0.0.1:{}", server.sdk_port);
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<()> {
        let bin = binary()?;
        // SAFETY: geteuid(2) has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let mut cmd = if root {
            let nobody = c"nobody";
            // SAFETY: a NUL-terminated name; the result is only read.
            let pw = unsafe { libc::getpwnam(nobody.as_ptr()) };
            if pw.is_null() {
                bail!("user nobody not found: the SDK harness runs as nobody when the tests run as root");
            }
            // SAFETY: getpwnam returned a valid entry.
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            // SAFETY: a NUL-terminated path we own.
            let path = std::ffi::CString::new(self.dir.as_os_str().as_encoded_bytes())?;
            if unsafe { libc::chown(path.as_ptr(), uid, gid) } != 0 {
                bail!("chown {}: {}", self.dir.display(), std::io::Error::last_os_error());
            }
            let mut c = Command::new("setpriv");
            c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"]).arg(&bin);
            c
        } else {
            Command::new(&bin)
        };
        // GOPATH set: an upstream package otherwise runs `go env` when it loads.
        cmd.current_dir(&self.dir).env("GOPATH", "/nonexistent").env("HOME", &self.dir);
        cmd.args(["--sdk-port", &self.sdk_port.to_string()]);
        cmd.args(["--control-addr", &format!("127.0.0.1:{}", self.control_port)]);
        cmd.arg("--state-dir").arg(&self.dir).arg("--exit-with-parent");
        if let Some(secret) = &self.opts.jwt_secret {
            cmd.args(["--jwt-shared-secret", secret, "--disable-guest-access"]);
        }
        if self.opts.tls {
            cmd.arg("--tls-cert").arg(self.dir.join("stork.crt")).arg("--tls-key").arg(self.dir.join("stork.key"));
        }
        let log_dir = std::env::temp_dir();
        let mut proc = Proc::spawn(&format!("osd-harness-{}", self.sdk_port), cmd, &log_dir)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while crate::http_get_full(self.control_port, "/healthz").map_or(true, |r| !r.contains(" 200 ")) {
            proc.check_alive()?;
            if Instant::now() >= deadline {
                bail!("osd-harness not ready within 60s:\n{}", proc.log_tail(30));
            }
            std::thread::sleep(Duration::from_millis(100)); // poll until the deadline
        }
        self.proc = Some(proc);
        Ok(())
    }

    /// SIGKILL: the SDK goes away mid-run.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Starts it again on the same ports; its memory is gone (nodes and volumes are set again).
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()
    }

    /// The harness's log tail.
    pub fn log_tail(&self, lines: usize) -> String {
        self.proc.as_ref().map(|p| p.log_tail(lines)).unwrap_or_default()
    }

    fn control(&self, method: &str, path: &str, body: &Value) -> Result<(u16, String)> {
        let body = body.to_string();
        let mut s = TcpStream::connect(("127.0.0.1", self.control_port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).context("no HTTP status")?;
        Ok((status, out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
    }

    /// Replaces the SDK's node list.
    pub fn set_nodes(&self, nodes: &[OsdNode]) -> Result<()> {
        let list: Vec<Value> = nodes
            .iter()
            .map(|n| {
                json!({"id": n.id, "schedulerNodeName": n.node, "hostname": n.node, "mgmtIp": n.ip,
                       "dataIp": n.ip, "status": n.status})
            })
            .collect();
        match self.control("PUT", "/nodes", &json!(list))? {
            (204, _) => Ok(()),
            (code, body) => bail!("PUT /nodes: {code} {body}"),
        }
    }

    /// Sets one node's status (an `openstorage.api.Status` name).
    pub fn set_status(&self, id: &str, status: &str) -> Result<()> {
        match self.control("PUT", &format!("/nodes/{id}/status"), &json!({"status": status}))? {
            (204, _) => Ok(()),
            (code, body) => bail!("PUT /nodes/{id}/status: {code} {body}"),
        }
    }

    /// A token signed with the shared secret, valid for `ttl` (`1h`; negative: already expired).
    pub fn token(&self, ttl: &str) -> Result<String> {
        let (code, body) = self.control("GET", &format!("/token?ttl={ttl}&role=system.admin"), &Value::Null)?;
        if code != 200 {
            bail!("GET /token: {code} {body}");
        }
        Ok(body.trim().to_string())
    }

    /// An SDK client as stork builds it (a token file when auth is on).
    pub async fn client(&self) -> Result<SdkClient> {
        let token_file = match &self.opts.jwt_secret {
            Some(_) => {
                let path = self.dir.join("admin-token");
                std::fs::write(&path, self.token("1h")?)?;
                Some(path)
            }
            None => None,
        };
        let ca = self.opts.tls.then(|| self.ca());
        let token = token_file.map(stork::driver::openstorage::Credentials::TokenFile);
        Ok(SdkClient::new(&self.endpoint, ca.as_deref(), token, Duration::from_secs(10))?)
    }

    /// Creates volume `name` with replicas on `replicas` (storage ids) through the SDK; returns
    /// its id.
    pub async fn create_volume(&self, name: &str, replicas: &[&str]) -> Result<String> {
        let replicas: Vec<String> = replicas.iter().map(|r| r.to_string()).collect();
        create_with(&self.client().await?, name, &replicas).await
    }

    /// Creates many volumes, `(name, replica storage ids)` each, through one SDK client with
    /// `in_flight` calls at a time; returns their ids in the same order. (The fake backend
    /// reads every stored volume on each create, so a create costs time linear in the volumes
    /// already there.)
    pub async fn create_volumes(&self, volumes: Vec<(String, Vec<String>)>, in_flight: usize) -> Result<Vec<String>> {
        let sdk = Arc::new(self.client().await?);
        let (volumes, next) = (Arc::new(volumes), Arc::new(AtomicUsize::new(0)));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..in_flight.clamp(1, volumes.len().max(1)) {
            let (sdk, volumes, next) = (sdk.clone(), volumes.clone(), next.clone());
            workers.spawn(async move {
                let mut made = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((name, replicas)) = volumes.get(i) else { return Ok::<_, anyhow::Error>(made) };
                    made.push((i, create_with(&sdk, name, replicas).await?));
                }
            });
        }
        let mut ids = vec![String::new(); volumes.len()];
        while let Some(done) = workers.join_next().await {
            for (i, id) in done?? {
                ids[i] = id;
            }
        }
        Ok(ids)
    }

    /// Names of the SDK snapshots of volume `id`.
    pub async fn snapshots_of(&self, id: &str) -> Result<Vec<String>> {
        let sdk = self.client().await?;
        let request =
            sdk.request(SdkVolumeSnapshotEnumerateWithFiltersRequest { volume_id: id.into(), ..Default::default() })?;
        let ids = sdk
            .volumes()
            .snapshot_enumerate_with_filters(request)
            .await
            .map_err(|s| anyhow::anyhow!("SnapshotEnumerateWithFilters {id}: {s}"))?
            .into_inner()
            .volume_snapshot_ids;
        let mut names = Vec::new();
        for snap in ids {
            names.push(self.volume(&snap).await?.1);
        }
        Ok(names)
    }

    /// `(id, name, parent)` of the SDK volume with this id or name.
    pub async fn volume(&self, id_or_name: &str) -> Result<(String, String, String)> {
        let sdk = self.client().await?;
        let request = sdk.request(stork::driver::openstorage::proto::SdkVolumeInspectRequest {
            volume_id: id_or_name.into(),
            ..Default::default()
        })?;
        let v = sdk
            .volumes()
            .inspect(request)
            .await
            .map_err(|s| anyhow::anyhow!("Inspect {id_or_name}: {s}"))?
            .into_inner()
            .volume
            .context("Inspect without a volume")?;
        let name = v.locator.map(|l| l.name).unwrap_or_default();
        Ok((v.id, name, v.source.map(|s| s.parent).unwrap_or_default()))
    }

    /// The CA that signed the SDK's certificate (with [`OsdOptions::tls`]).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The state directory (token files for stork go here).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// One `OpenStorageVolume/Create` of a 1 GiB volume with its replicas on `replicas`.
async fn create_with(sdk: &SdkClient, name: &str, replicas: &[String]) -> Result<String> {
    let spec = VolumeSpec {
        size: 1 << 30,
        ha_level: replicas.len() as i64,
        replica_set: Some(ReplicaSet { nodes: replicas.to_vec(), ..Default::default() }),
        ..Default::default()
    };
    let request = sdk.request(SdkVolumeCreateRequest { name: name.into(), spec: Some(spec), ..Default::default() })?;
    let created = sdk.volumes().create(request).await.map_err(|s| anyhow::anyhow!("Create {name}: {s}"))?;
    Ok(created.into_inner().volume_id)
}

impl Drop for OsdServer {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop(Duration::from_secs(5));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
