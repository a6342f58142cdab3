//! The manifests as a user gets them: `kubectl kustomize <dir>` and `kubectl apply -k <dir>`.

use std::{path::Path, process::Command};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::repo_root;

/// The kubectl to run (`$KUBECTL`, else `kubectl` on `PATH`).
pub fn kubectl() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into())
}

/// The objects one kustomize directory renders to.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The directory, relative to the repository root.
    pub dir: String,
    /// Every rendered object, in kustomize's order.
    pub docs: Vec<Value>,
}

impl Rendered {
    /// Runs `kubectl kustomize <repo>/<dir>`.
    pub fn of(dir: &str) -> Result<Self> {
        let out = Command::new(kubectl()).arg("kustomize").arg(repo_root().join(dir)).output().with_context(|| {
            format!("{} not runnable; install kubectl (.ci/run does: apt-get install kubectl)", kubectl())
        })?;
        if !out.status.success() {
            bail!("kubectl kustomize {dir} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let text = String::from_utf8(out.stdout).context("kustomize output is not UTF-8")?;
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).with_context(|| format!("parse rendered {dir}"))?;
        Ok(Self { dir: dir.into(), docs: docs.into_iter().filter(|d| !d.is_null()).collect() })
    }

    /// The rendered object of `kind` named `name`.
    pub fn get(&self, kind: &str, name: &str) -> Result<&Value> {
        self.docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .with_context(|| format!("{} renders no {kind} named {name}", self.dir))
    }

    /// Every rendered object of `kind`.
    pub fn all<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.docs.iter().filter(move |d| d["kind"] == kind)
    }
}

/// `kubectl apply -k <repo>/<dir>` against the cluster of `kubeconfig`, as the install guide
/// has users run it; returns kubectl's output.
pub fn apply(kubeconfig: &Path, dir: &str) -> Result<String> {
    kubectl_k(kubeconfig, "apply", dir)
}

/// `kubectl delete -k <repo>/<dir>` (the uninstall guide's command); kubectl's output.
pub fn delete(kubeconfig: &Path, dir: &str) -> Result<String> {
    kubectl_k(kubeconfig, "delete", dir)
}

fn kubectl_k(kubeconfig: &Path, verb: &str, dir: &str) -> Result<String> {
    let out = Command::new(kubectl())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg(verb)
        .arg("-k")
        .arg(repo_root().join(dir))
        .output()
        .with_context(|| format!("{} not runnable", kubectl()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("kubectl {verb} -k {dir} failed:\n{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(stdout)
}
