//! `manifests/` (and the overlays in `examples/`) render with kustomize and every object
//! is accepted by the real apiserver (server-side dry run: schema, CEL match conditions, RBAC
//! references).

use std::process::{Command, Stdio};

use stork_e2e::{repo_root, shared};

#[tokio::test]
async fn the_kustomize_base_renders_and_the_apiserver_accepts_every_object() {
    let stdout = render_and_dry_run("manifests").await;
    assert!(stdout.contains("mutatingwebhookconfiguration") && stdout.contains("deployment.apps/stork"), "{stdout}");
}

#[tokio::test]
async fn the_csi_overlay_renders_and_the_apiserver_accepts_every_object() {
    let stdout = render_and_dry_run("examples/csi").await;
    assert!(stdout.contains("deployment.apps/stork") && !stdout.contains("stork-mock-topology"), "{stdout}");
}

#[tokio::test]
async fn the_portworx_overlay_renders_and_the_apiserver_accepts_every_object() {
    let stdout = render_and_dry_run("examples/portworx").await;
    assert!(
        stdout.contains("role.rbac.authorization.k8s.io/stork-portworx") && !stdout.contains("stork-mock-topology"),
        "{stdout}"
    );
}

#[tokio::test]
async fn the_mock_demo_overlay_renders_and_the_apiserver_accepts_every_object() {
    // Its app/ needs the namespace this creates; the deploy suite applies both for real.
    let stdout = render_and_dry_run("examples/mock-demo").await;
    assert!(
        stdout.contains("persistentvolume/stork-demo-data-2") && stdout.contains("configmap/stork-mock-topology"),
        "{stdout}"
    );
}

/// `kubectl kustomize <dir>` piped into `kubectl apply --dry-run=server`; returns apply's output.
async fn render_and_dry_run(dir: &str) -> String {
    let (cluster, _) = shared().await;
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let render = Command::new(&kubectl).arg("kustomize").arg(repo_root().join(dir)).output().unwrap_or_else(|e| {
        panic!("{kubectl} not runnable ({e}); install kubectl (.ci/run does: apt-get install kubernetes-client)")
    });
    assert!(render.status.success(), "kubectl kustomize failed: {}", String::from_utf8_lossy(&render.stderr));
    let mut apply = Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(&cluster.info.kubeconfig)
        .args(["apply", "--dry-run=server", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kubectl apply");
    use std::io::Write;
    apply.stdin.take().unwrap().write_all(&render.stdout).unwrap();
    let out = apply.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "server-side dry run refused the manifests:\n{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.into_owned()
}
