//! What every attack shares: the stork binary and its certificates, the memory limit the
//! manifests give stork, a fresh stork per attack (so each attack's memory peak is its own), and
//! the end-of-attack checks (peak memory under the limit, stork still alive).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use serde_json::Value;
use stork_bench::stork::{Certs, Extra, Stork};

use crate::{
    client::Endpoint,
    fixtures,
    report::{Outcome, mib, size},
};

/// How long stork may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The run's settings and shared files.
pub struct Ctx {
    /// The stork binary.
    pub bin: PathBuf,
    /// CI-sized attacks.
    pub smoke: bool,
    /// `limits.memory` of the stork container in manifests/stork.yaml, in bytes.
    pub memory_limit: u64,
    /// Serving certificate and a client trusting its CA.
    pub certs: Certs,
    /// The CA stork's serving certificate chains to.
    pub ca: PathBuf,
    work: tempfile::TempDir,
}

impl Ctx {
    /// Issues certificates with the binary and reads the memory limit from `root/manifests`.
    pub fn new(bin: PathBuf, root: &Path, smoke: bool) -> anyhow::Result<Self> {
        let manifest = root.join("manifests/stork.yaml");
        let text = std::fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
        let memory_limit = memory_limit(&text)
            .with_context(|| format!("the stork container's limits.memory in {}", manifest.display()))?;
        let work = tempfile::Builder::new().prefix("stork-abuse-").tempdir()?;
        let certs_dir = work.path().join("certs");
        std::fs::create_dir_all(&certs_dir)?;
        let certs = Certs::issue(&bin, &certs_dir)?;
        Ok(Self { bin, smoke, memory_limit, certs, ca: certs_dir.join("ca.crt"), work })
    }

    /// A new directory for one attack's files.
    pub fn dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.work.path().join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// Starts stork on the seed scenario in a new directory `name`.
    pub fn start_seed(&self, name: &str, extra: &Extra) -> anyhow::Result<Target> {
        let dir = self.dir(name)?;
        let (objects, topology) = fixtures::write_seed(&dir)?;
        self.start(&dir, &objects, &topology, extra)
    }

    /// Starts stork on the given files and waits until it is ready.
    pub fn start(&self, dir: &Path, objects: &Path, topology: &Path, extra: &Extra) -> anyhow::Result<Target> {
        let mut stork = Stork::start_with(&self.bin, dir, objects, topology, &self.certs, extra)?;
        stork.wait_ready(READY_TIMEOUT)?;
        let tls = Some(self.certs.client.clone());
        Ok(Target {
            https: Endpoint { addr: stork.https, tls },
            plain: Endpoint { addr: stork.extender, tls: None },
            admin: Endpoint { addr: stork.admin, tls: None },
            stork,
        })
    }
}

/// A stork started for one attack, with its three listeners.
pub struct Target {
    /// The process.
    pub stork: Stork,
    /// HTTPS: webhooks and extender.
    pub https: Endpoint,
    /// Plain-HTTP extender.
    pub plain: Endpoint,
    /// Plain-HTTP admin.
    pub admin: Endpoint,
}

impl Target {
    /// Peak resident memory so far (VmHWM), in bytes.
    pub fn peak(&self) -> Option<u64> {
        self.stork.memory().ok().map(|m| m.peak_kib * 1024)
    }

    /// Records stork's memory peak and asserts it stayed under the limit, then that stork is
    /// still running; stops it.
    pub fn finish(mut self, ctx: &Ctx, out: &mut Outcome, under: &str) {
        if let Ok(m) = self.stork.memory() {
            let peak = m.peak_kib * 1024;
            out.figure("rss_peak_mib", mib(peak));
            out.figure("rss_end_mib", mib(m.rss_kib * 1024));
            out.check(peak < ctx.memory_limit, || {
                format!("stork VmHWM {} ≥ limit {} under {under}", size(peak), size(ctx.memory_limit))
            });
        }
        if let Some(status) = self.stork.exited() {
            out.stork_died = true;
            out.fail(format!("stork exited ({status}) during {under}; log tail:\n{}", self.stork.log_tail()));
        }
    }
}

/// `resources.limits.memory` of the container named `stork` in any Deployment of `manifests`
/// (multi-document YAML), in bytes.
pub fn memory_limit(manifests: &str) -> anyhow::Result<u64> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(manifests).context("parsing the manifests")?;
    let limit = docs
        .iter()
        .filter(|d| d["kind"] == "Deployment")
        .filter_map(|d| d["spec"]["template"]["spec"]["containers"].as_array())
        .flatten()
        .find(|c| c["name"] == "stork")
        .and_then(|c| c["resources"]["limits"]["memory"].as_str())
        .context("no Deployment with a container `stork` that sets resources.limits.memory")?;
    quantity(limit)
}

/// A Kubernetes memory quantity (`256Mi`, `1G`, `134217728`) in bytes.
pub fn quantity(text: &str) -> anyhow::Result<u64> {
    const SUFFIXES: [(&str, u64); 12] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("Pi", 1 << 50),
        ("Ei", 1 << 60),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
        ("P", 1_000_000_000_000_000),
        ("E", 1_000_000_000_000_000_000),
    ];
    let text = text.trim();
    let (number, factor) =
        SUFFIXES.iter().find_map(|(s, f)| text.strip_suffix(s).map(|n| (n, *f))).unwrap_or((text, 1));
    let value: f64 = number.parse().with_context(|| format!("memory quantity {text:?}"))?;
    if !(value.is_finite() && value > 0.0) {
        bail!("memory quantity {text:?} is not a positive size");
    }
    Ok((value * factor as f64) as u64)
}

/// Raises this process's open-file soft limit to the hard limit (stork, started later, inherits
/// it): the idle-connection attack holds thousands of sockets at once.
pub fn raise_nofile_limit() -> anyhow::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error()).context("getrlimit(RLIMIT_NOFILE)");
        }
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            return Err(std::io::Error::last_os_error()).context("setrlimit(RLIMIT_NOFILE)");
        }
    }
    Ok(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_comes_from_the_stork_container_of_the_deployment() {
        let manifests = "kind: Service\nmetadata: {name: stork}\n---\nkind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n        - name: sidecar\n          resources: {limits: {memory: 1Gi}}\n        - name: stork\n          resources:\n            limits: {cpu: \"2\", memory: 256Mi}\n";
        assert_eq!(memory_limit(manifests).unwrap(), 256 << 20);
    }

    #[test]
    fn the_repository_manifests_give_stork_a_memory_limit() {
        let text = include_str!("../../../manifests/stork.yaml");
        assert!(memory_limit(text).unwrap() >= 64 << 20);
    }

    #[test]
    fn quantities_take_binary_and_decimal_suffixes() {
        assert_eq!(quantity("512Mi").unwrap(), 512 << 20);
        assert_eq!(quantity("1G").unwrap(), 1_000_000_000);
        assert_eq!(quantity("1.5Gi").unwrap(), 3 << 29);
        assert_eq!(quantity("1048576").unwrap(), 1 << 20);
        assert!(quantity("lots").is_err() && quantity("0").is_err());
    }
}
