//! A release `stork serve` child process in offline mode, on free localhost ports.

use std::{
    net::{SocketAddr, TcpListener},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use rustls::ClientConfig;

use crate::probe;

/// Development certificates from `stork certs`.
#[derive(Debug, Clone)]
pub struct Certs {
    /// Serving certificate for `localhost`.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// A client trusting the CA, for probes.
    pub client: Arc<ClientConfig>,
}

impl Certs {
    /// Runs `stork certs --out DIR --dns localhost`.
    pub fn issue(stork: &Path, dir: &Path) -> anyhow::Result<Self> {
        let out = Command::new(stork)
            .args(["certs", "--out"])
            .arg(dir)
            .args(["--dns", "localhost"])
            .env("RUST_LOG", "warn")
            .output()
            .with_context(|| format!("running {} certs", stork.display()))?;
        if !out.status.success() {
            bail!("stork certs failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let ca = dir.join("ca.crt");
        let client = probe::tls_config(&ca)?;
        Ok(Self { cert: dir.join("tls.crt"), key: dir.join("tls.key"), client })
    }
}

/// Peak and current resident memory of a process, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// VmHWM: the high-water mark of the resident set.
    pub peak_kib: u64,
    /// VmRSS: the resident set now.
    pub rss_kib: u64,
}

/// What a launch adds to the bench's own command line (other harnesses).
#[derive(Debug, Clone, Default)]
pub struct Extra {
    /// Flags appended to `stork serve …`.
    pub args: Vec<String>,
    /// `RUST_LOG` for stork; `None` keeps stork's default level.
    pub rust_log: Option<String>,
}

/// A running stork; killed on drop.
pub struct Stork {
    child: Child,
    log: PathBuf,
    /// Plain-HTTP extender listener.
    pub extender: SocketAddr,
    /// HTTPS listener (extender and webhooks).
    pub https: SocketAddr,
    /// Admin listener (/readyz).
    pub admin: SocketAddr,
    /// The command line, with the fixture directory written as `$DIR`.
    pub command: String,
}

impl Stork {
    /// Starts `stork serve --driver mock` on the given files; logs go to `dir/logs/stork.log`.
    pub fn start(stork: &Path, dir: &Path, objects: &Path, topology: &Path, certs: &Certs) -> anyhow::Result<Self> {
        Self::start_with(stork, dir, objects, topology, certs, &Extra::default())
    }

    /// [`Stork::start`] with `extra` flags and log level.
    pub fn start_with(
        stork: &Path,
        dir: &Path,
        objects: &Path,
        topology: &Path,
        certs: &Certs,
        extra: &Extra,
    ) -> anyhow::Result<Self> {
        let [extender, https, admin] = free_ports()?;
        let args: Vec<String> = [
            "serve".into(),
            "--driver".into(),
            "mock".into(),
            "--mock-topology".into(),
            topology.display().to_string(),
            "--objects".into(),
            objects.display().to_string(),
            "--extender-listen".into(),
            extender.to_string(),
            "--listen".into(),
            https.to_string(),
            "--admin-listen".into(),
            admin.to_string(),
            "--tls-cert".into(),
            certs.cert.display().to_string(),
            "--tls-key".into(),
            certs.key.display().to_string(),
        ]
        .into_iter()
        .chain(extra.args.iter().cloned())
        .collect();
        // Not in `dir` itself: stork watches that directory (certificates, topology), and a log
        // line written there would wake its file watchers on every request, as no deployment does.
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        let log = logs.join("stork.log");
        let log_file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        // stork's own default log level unless asked: the harness measures the binary as deployed.
        let mut cmd = Command::new(stork);
        match &extra.rust_log {
            Some(level) => cmd.env("RUST_LOG", level),
            None => cmd.env_remove("RUST_LOG"),
        };
        // If the harness dies, stork must not outlive it holding ports and memory.
        // SAFETY: prctl is async-signal-safe and touches only the child being spawned.
        unsafe {
            cmd.pre_exec(|| match libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            });
        }
        let child = cmd
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", stork.display()))?;
        let shown = std::iter::once("stork".to_string()).chain(args).collect::<Vec<_>>().join(" ");
        let command = shown.replace(&dir.display().to_string(), "$DIR");
        tracing::info!(pid = child.id(), %command, "started stork");
        Ok(Self { child, log, extender, https, admin, command })
    }

    /// Polls `/readyz` until it answers 200; returns how long that took.
    pub fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("stork exited ({status}) before it was ready:\n{}", self.log_tail());
            }
            if probe::request(self.admin, None, "GET", "/readyz", b"").is_ok_and(|r| r.status == 200) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                bail!("stork was not ready after {timeout:?}:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20)); // poll /readyz until the deadline
        }
    }

    /// Waits until stork exits (for `stork-bench serve`, which runs until interrupted).
    pub fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.wait()
    }

    /// How stork exited, if it has.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// stork's log (stdout and stderr).
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// VmHWM and VmRSS from /proc/<pid>/status.
    pub fn memory(&self) -> anyhow::Result<Memory> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = status.lines().find(|l| l.starts_with(name)).with_context(|| format!("{name} in {path}"))?;
            let kib = line.split_whitespace().nth(1).context("value")?;
            Ok(kib.parse()?)
        };
        Ok(Memory { peak_kib: field("VmHWM:")?, rss_kib: field("VmRSS:")? })
    }

    /// The last lines of stork's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Stork {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three distinct free localhost ports (bound and released; stork binds them right after).
fn free_ports() -> anyhow::Result<[SocketAddr; 3]> {
    let listeners = [(); 3].map(|_| TcpListener::bind("127.0.0.1:0"));
    let mut addrs = [SocketAddr::from(([127, 0, 0, 1], 0)); 3];
    for (addr, l) in addrs.iter_mut().zip(listeners) {
        *addr = l?.local_addr()?;
    }
    Ok(addrs)
}
