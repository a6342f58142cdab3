//! Extra stork replicas started by a test, next to the harness's own stork, sharing its
//! kubeconfig and mock topology. They serve no HTTPS (no certificates) and run the health
//! monitor with whatever flags the test passes. Killed when dropped.

use std::{path::PathBuf, process::Command, time::Duration};

use anyhow::Result;

use crate::{
    cluster::{Cluster, free_port, http_get_full, repo_root},
    procs::Proc,
};

/// A stork process started by a test.
pub struct Replica {
    /// Identity (`POD_NAME`), also the log file stem.
    pub name: String,
    /// Admin port (`/metrics`, `/readyz`).
    pub admin_port: u16,
    proc: Proc,
}

impl Replica {
    /// Starts `stork serve --driver mock` as `name` with `extra` flags; waits for `/readyz`.
    pub fn start(cluster: &Cluster, name: &str, extra: &[&str]) -> Result<Self> {
        let bin = std::env::var_os("STORK_BIN").map(PathBuf::from).unwrap_or(repo_root().join("target/debug/stork"));
        let admin_port = free_port();
        let info = &cluster.info;
        let mut cmd = Command::new(bin);
        cmd.env("RUST_LOG", "info,stork=debug").env("POD_NAME", name);
        cmd.args(["serve", "--driver", "mock"]);
        cmd.arg("--mock-topology").arg(&info.topology).arg("--kubeconfig").arg(&info.kubeconfig);
        cmd.args(["--listen", &format!("127.0.0.1:{}", free_port())]);
        cmd.args(["--admin-listen", &format!("127.0.0.1:{admin_port}")]);
        cmd.args(extra);
        let mut proc = Proc::spawn(name, cmd, &info.dir)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            proc.check_alive()?;
            if http_get_full(admin_port, "/readyz").is_ok_and(|r| r.lines().next().is_some_and(|l| l.contains(" 200 ")))
            {
                break;
            }
            if std::time::Instant::now() >= deadline {
                anyhow::bail!("{name} not ready within 60s; log tail:\n{}", proc.log_tail(30));
            }
            std::thread::sleep(Duration::from_millis(200)); // poll until the deadline
        }
        Ok(Self { name: name.into(), admin_port, proc })
    }

    /// The value of an unlabelled metric line `name value`, 0 if absent.
    pub fn metric(&self, name: &str) -> f64 {
        let text = http_get_full(self.admin_port, "/metrics").unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Whether this replica holds the leader lease (`stork_leader 1`).
    pub fn is_leader(&self) -> bool {
        self.metric("stork_leader") == 1.0
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.proc.log_tail(lines)
    }

    /// SIGKILL: no lease release, the others must wait for it to expire.
    pub fn kill(mut self) {
        self.proc.kill();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.proc.stop(Duration::from_secs(5));
    }
}
