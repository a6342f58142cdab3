//! Readiness probes of the cluster's processes: plain HTTP/1.0 on loopback for etcd and stork,
//! and the admin kubeconfig's client for kube-apiserver's `/readyz`.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

use crate::procs::Proc;

/// Polls `GET http://127.0.0.1:<port><path>` until 200, failing early if the process dies.
pub(crate) fn wait_http_ok(proc: &mut Proc, port: u16, path: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("nothing yet");
    while Instant::now() < deadline {
        proc.check_alive()?;
        match http_get(port, path) {
            Ok(status) if status.contains(" 200 ") => return Ok(()),
            Ok(status) => last = status,
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100)); // poll until the deadline
    }
    bail!("{} not ready on :{port}{path} after {timeout:?}; last saw: {last}\n{}", proc.name, proc.log_tail(30))
}

fn http_get(port: u16, path: &str) -> Result<String> {
    Ok(http_get_full(port, path)?.lines().next().unwrap_or_default().to_string())
}

/// `GET http://127.0.0.1:<port><path>` over HTTP/1.0: the whole response, status line first.
pub fn http_get_full(port: u16, path: &str) -> Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    Ok(buf)
}

pub(crate) fn wait_apiserver(proc: &mut Proc, kubeconfig: &Path, timeout: Duration) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let deadline = Instant::now() + timeout;
    let mut last = String::from("nothing yet");
    while Instant::now() < deadline {
        proc.check_alive()?;
        let probe = rt.block_on(async {
            let client = crate::client_for(kubeconfig).await?;
            let req = http_request("/readyz")?;
            client.request_text(req).await.map_err(anyhow::Error::from)
        });
        match probe {
            Ok(body) if body.trim() == "ok" => return Ok(()),
            Ok(body) => last = body,
            Err(e) => last = format!("{e:#}"),
        }
        std::thread::sleep(Duration::from_millis(250)); // poll until the deadline
    }
    bail!("kube-apiserver not ready after {timeout:?}; last saw: {last}\n{}", proc.log_tail(30))
}

fn http_request(path: &str) -> Result<http::Request<Vec<u8>>> {
    Ok(http::Request::get(path).body(Vec::new())?)
}
