//! Where the harness finds things: the repository root, the component binaries it runs
//! (built by `integration/cluster/build.sh` and `cargo build`), and free loopback ports.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
};

use anyhow::{Result, bail};

/// Repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repo root")
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

pub(crate) struct Bins {
    pub(crate) k8s: PathBuf,
    pub(crate) kwok: PathBuf,
    /// KWOK's default stages, narrowed so a partitioned node is left alone (build.sh).
    pub(crate) kwok_stages: PathBuf,
    /// KWOK's Exec and ClusterExec CRDs, from the module it was built from (build.sh).
    pub(crate) kwok_crds: PathBuf,
    pub(crate) stork: PathBuf,
}

pub(crate) fn find_bins() -> Result<Bins> {
    let root = repo_root();
    let dir = std::env::var_os("STORK_K8S_BIN_DIR").map(PathBuf::from).unwrap_or(root.join("integration/.cache/bin"));
    let stork = std::env::var_os("STORK_BIN").map(PathBuf::from).unwrap_or(root.join("target/debug/stork"));
    let bins = Bins {
        k8s: dir.join("k8s-local"),
        kwok: dir.join("kwok"),
        kwok_stages: dir.join("kwok-stages.yaml"),
        kwok_crds: dir.join("kwok-crds.yaml"),
        stork,
    };
    for (what, p, fix) in [
        ("kube components", &bins.k8s, "run integration/cluster/build.sh (or `just e2e`)"),
        ("kwok", &bins.kwok, "run integration/cluster/build.sh (or `just e2e`)"),
        ("kwok stages", &bins.kwok_stages, "run integration/cluster/build.sh (or `just e2e`)"),
        ("kwok CRDs", &bins.kwok_crds, "run integration/cluster/build.sh (or `just e2e`)"),
        ("stork", &bins.stork, "run `cargo build --bin stork` (or `just e2e`), or set STORK_BIN"),
    ] {
        if !p.exists() {
            bail!("{what} not found at {}: {fix}", p.display());
        }
    }
    Ok(bins)
}
