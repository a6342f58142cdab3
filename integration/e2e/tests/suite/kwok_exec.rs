//! `exec` into pods on KWOK nodes, through the real kube-apiserver (websocket, as `kubectl exec`
//! and kube-rs use it): KWOK runs the command as a local process, in the working directory and
//! with the environment a test chose for the pod's namespace (or for the pod).

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client,
    api::{AttachParams, PostParams},
};
use serde_json::json;
use stork_e2e::{
    delete_nodes,
    exec::{exec_output, exit_code, local_exec_for_namespace, local_exec_for_pod, wait_local_exec},
    kwok_nodes, namespace,
    objects::WAIT,
    shared, wait_for,
};
use tokio::io::AsyncReadExt;

/// A fresh directory under the system temp dir for one test's local processes.
fn work_dir(ns: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stork-e2e-exec-{}-{ns}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("work dir");
    dir
}

/// A pod bound straight to `node` (no scheduler), waited for until KWOK reports it Running.
async fn running_pod(client: &Client, ns: &str, node: &str, name: &str) -> Api<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "fake"}]}
    });
    pods.create(&PostParams::default(), &serde_json::from_value(pod).expect("pod")).await.expect("create pod");
    wait_for(&format!("pod {name} Running"), WAIT, || async {
        let p = pods.get(name).await.map_err(|e| e.to_string())?;
        let phase = p.status.and_then(|s| s.phase).unwrap_or_default();
        if phase == "Running" { Ok(()) } else { Err(phase) }
    })
    .await;
    pods
}

#[tokio::test]
async fn exec_into_a_kwok_pod_runs_the_command_locally_in_the_namespaces_work_dir_and_reports_its_exit_code() {
    let (_cluster, client) = shared().await;
    let node = "exec-n1";
    kwok_nodes(&client, &[(node, "10.120.0.1")]).await.unwrap();
    let ns = namespace(&client, "kwok-exec").await.unwrap();
    let pods = running_pod(&client, &ns, node, "app").await;
    let dir = work_dir(&ns, "ns");
    local_exec_for_namespace(&client, &ns, &dir, &[("STORK_E2E_GREETING", "hi there")]).await.unwrap();
    wait_local_exec(&pods, "app", &dir).await;

    let command = ["sh", "-c", "echo hello > out.txt; echo err >&2; exit 3"];
    let mut proc = pods.exec("app", command, &AttachParams::default().stdout(true).stderr(true)).await.unwrap();
    let (mut out, mut err) = (proc.stdout().unwrap(), proc.stderr().unwrap());
    let status = proc.take_status().unwrap();
    let (mut stdout, mut stderr) = (String::new(), String::new());
    let (o, e, status) = tokio::join!(out.read_to_string(&mut stdout), err.read_to_string(&mut stderr), status);
    o.unwrap();
    e.unwrap();
    let status = status.expect("a status at the end of the exec");
    assert_eq!(exit_code(&status), Some(3), "{status:?}");
    assert_eq!((stdout.as_str(), stderr.as_str()), ("", "err\n"));
    assert_eq!(std::fs::read_to_string(dir.join("out.txt")).unwrap(), "hello\n");

    let env = exec_output(&pods, "app", &["sh", "-c", "echo \"$STORK_E2E_GREETING\""], None).await.unwrap();
    assert_eq!((env.stdout.as_str(), env.code()), ("hi there\n", Some(0)), "{env:?}");

    let _ = std::fs::remove_dir_all(&dir);
    delete_nodes(&client, &[node]).await;
}

#[tokio::test]
async fn a_pods_own_exec_settings_win_over_its_namespaces_and_stdin_reaches_the_command() {
    let (_cluster, client) = shared().await;
    let node = "exec-n2";
    kwok_nodes(&client, &[(node, "10.120.0.2")]).await.unwrap();
    let ns = namespace(&client, "kwok-exec-pod").await.unwrap();
    let pods = running_pod(&client, &ns, node, "app").await;
    let (ns_dir, pod_dir) = (work_dir(&ns, "ns"), work_dir(&ns, "pod"));
    local_exec_for_namespace(&client, &ns, &ns_dir, &[]).await.unwrap();
    local_exec_for_pod(&client, &ns, "app", &pod_dir, &[("WHO", "pod")]).await.unwrap();
    wait_local_exec(&pods, "app", &pod_dir).await;

    let out = exec_output(&pods, "app", &["sh", "-c", "read x; echo \"got $x from $WHO\" > f"], Some(b"ping\n"))
        .await
        .unwrap();
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(std::fs::read_to_string(pod_dir.join("f")).unwrap(), "got ping from pod\n");

    for d in [ns_dir, pod_dir] {
        let _ = std::fs::remove_dir_all(d);
    }
    delete_nodes(&client, &[node]).await;
}
