//! Two jobs:
//! - compiles the vendored OpenStorage SDK proto (`proto/`) into the gRPC client of the Portworx
//!   driver, with `protox` (a Rust protobuf compiler): no `protoc` on the build path;
//! - sets `STORK_GIT_REVISION` for the compile, so `stork --version` names the commit it was built
//!   from: the environment variable `STORK_GIT_REVISION` when set (the Containerfile passes it, as its
//!   build context has no `.git`), else `git rev-parse --short=12 HEAD`, else `unknown`.
//!
//! No `-dirty` suffix: telling a dirty tree from a clean one would mean re-running this script (and
//! recompiling stork) on every edit of any file, and the answer would still go stale between runs.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

fn main() {
    compile_protos();
    println!("cargo:rerun-if-env-changed=STORK_GIT_REVISION");
    let from_env = std::env::var("STORK_GIT_REVISION").ok().filter(|rev| !rev.trim().is_empty());
    let revision = match from_env {
        Some(rev) => rev.trim().to_owned(),
        None => git_revision().unwrap_or_else(|| "unknown".to_owned()),
    };
    println!("cargo:rustc-env=STORK_GIT_REVISION={revision}");
}

/// Generates `openstorage.api.rs` (messages plus clients; stork serves none of these services).
fn compile_protos() {
    println!("cargo:rerun-if-changed=proto");
    let files = protox::compile(["openstorage/api.proto"], ["proto"]).unwrap_or_else(|e| panic!("proto/: {e}"));
    tonic_prost_build::configure()
        .build_server(false)
        .build_transport(false)
        // The proto's comments are Go-flavoured markdown: as rustdoc they would be mangled and
        // their code blocks compiled as doctests. The proto itself is the documentation.
        .disable_comments(["."])
        // Ordered maps, as stork's own volume labels are.
        .btree_map(".")
        .compile_fds(files)
        .unwrap_or_else(|e| panic!("generating the OpenStorage client: {e}"));
}

/// The short commit id of this checkout, watching the files that change with it.
fn git_revision() -> Option<String> {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    // Only this crate's own checkout: built from an unpacked source archive that happens to sit
    // inside some other repository, git would report that repository's commit.
    if !root.join(".git").exists() {
        return None;
    }
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").arg("-C").arg(&root).args(args).output().ok()?;
        let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        (out.status.success() && !text.is_empty()).then_some(text)
    };
    let revision = git(&["rev-parse", "--short=12", "HEAD"])?;
    // Re-run when HEAD moves: HEAD itself names the branch (or holds the commit when detached);
    // a commit rewrites the branch's loose ref, or creates it when the ref was only packed.
    // Only existing paths: cargo re-runs the script on every build for a path that is missing.
    let git_dir = git(&["rev-parse", "--git-dir"]).map(|dir| root.join(dir))?;
    let common_dir = git(&["rev-parse", "--git-common-dir"]).map_or_else(|| git_dir.clone(), |dir| root.join(dir));
    watch(&git_dir.join("HEAD"));
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        let loose = common_dir.join(&branch);
        if loose.exists() {
            watch(&loose);
        } else if let Some(parent) = loose.parent() {
            watch(parent);
        }
        watch(&common_dir.join("packed-refs"));
    }
    Some(revision)
}

fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
