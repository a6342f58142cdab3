//! `stork serve` as a process: offline mode serves the seed scenario, picks up topology edits
//! without a restart, and exits 0 on SIGTERM.

use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

/// Polls `probe` until it returns `Some`, or fails with the last thing it saw.
async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => panic!("timed out waiting for {what}; last saw: {last}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await, // poll until the deadline
        }
    }
}

struct Stork(Child);

impl Drop for Stork {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(topology: &Path, ext: u16, admin: u16) -> Stork {
    let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/seed");
    let child = Command::new(env!("CARGO_BIN_EXE_stork"))
        .args(["serve", "--driver", "mock", "--mock-topology"])
        .arg(topology)
        .args(["--objects", &format!("{seed}/objects.yaml")])
        .args(["--extender-listen", &format!("127.0.0.1:{ext}"), "--admin-listen", &format!("127.0.0.1:{admin}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn stork");
    Stork(child)
}

async fn kept_nodes(client: &reqwest::Client, ext: u16) -> Result<Vec<String>, String> {
    let args = include_str!("../examples/seed/filter-args.json");
    let resp =
        client.post(format!("http://127.0.0.1:{ext}/filter")).body(args).send().await.map_err(|e| e.to_string())?;
    let v: Value = resp.json().await.map_err(|e| e.to_string())?;
    serde_json::from_value(v["NodeNames"].clone()).map_err(|e| format!("{e}: {v}"))
}

#[tokio::test]
async fn serve_reloads_an_edited_topology_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let topology = dir.path().join("topology.yaml");
    std::fs::write(&topology, include_str!("../examples/seed/topology.yaml")).unwrap();
    let (ext, admin) = (free_port(), free_port());
    let mut stork = start(&topology, ext, admin);
    let client = reqwest::Client::new();

    eventually("readiness", async || {
        let r = client.get(format!("http://127.0.0.1:{admin}/readyz")).send().await.map_err(|e| e.to_string())?;
        if r.status().is_success() { Ok(()) } else { Err(r.status().to_string()) }
    })
    .await;
    assert_eq!(kept_nodes(&client, ext).await.unwrap(), ["n1", "n2", "n3"]);

    std::fs::write(&topology, include_str!("../examples/seed/topology-n2-offline.yaml")).unwrap();
    eventually("n2 to be dropped after the topology edit", async || {
        let kept = kept_nodes(&client, ext).await?;
        if kept == ["n1", "n3"] { Ok(()) } else { Err(format!("{kept:?}")) }
    })
    .await;

    let pid = stork.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = eventually("exit after SIGTERM", async || {
        stork.0.try_wait().map_err(|e| e.to_string())?.ok_or("running".into())
    })
    .await;
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn serve_refuses_to_start_on_an_invalid_topology_and_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let topology = dir.path().join("bad.yaml");
    std::fs::write(&topology, "nodes:\n- id: a\n  staus: Online\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stork"))
        .args(["serve", "--driver", "mock", "--objects", "/dev/null", "--mock-topology"])
        .arg(&topology)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml") && err.contains("staus"), "{err}");
}
