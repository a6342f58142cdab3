//! `--self-signed` against the real apiserver: stork creates its CA and serving certificate in a
//! Secret, writes the CA into its webhook configurations' `caBundle`, serves AdmissionReviews to
//! a client trusting only that bundle, and renews, with a second replica adopting each renewal,
//! without failing a single request.
//!
//! The test runs its own two stork processes next to the harness's (which uses files).

use std::{
    collections::BTreeSet,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result, ensure};
use http_body_util::{BodyExt, Full};
use hyper::{body::Bytes, client::conn::http1::SendRequest};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::{
    admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration},
    core::v1::Secret,
};
use kube::{Api, api::DeleteParams};
use rustls::{
    ClientConfig, RootCertStore,
    client::Resumption,
    pki_types::{CertificateDer, ServerName, pem::PemObject},
};
use serde_json::{Value, json};
use stork_e2e::{namespace, objects::create, repo_root, shared, wait_for};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};
use tokio_rustls::TlsConnector;

const REVIEW: &str = include_str!("../../../../tests/data/admission/pod-without-pvc.json");
const SECRET: &str = "stork-webhook-tls";
const WAIT: Duration = Duration::from_secs(60);
/// Distinct certificates each replica must serve to fresh connections under load: four renewals.
const SERIALS: usize = 5;

/// A stork process of this test, killed when dropped.
struct Stork {
    child: Child,
    log: PathBuf,
    https: SocketAddr,
    admin_port: u16,
}

impl Stork {
    fn start(kubeconfig: &Path, name: &str, ns: &str, webhook_config: &str, extra: &[&str]) -> Stork {
        let dir = std::env::temp_dir().join(format!("stork-e2e-{ns}"));
        std::fs::create_dir_all(&dir).unwrap();
        let topology = dir.join("topology.yaml");
        std::fs::write(&topology, "nodes: []\nvolumes: []\n").unwrap();
        let (https, admin_port) = (SocketAddr::from(([127, 0, 0, 1], free_port())), free_port());
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let bin = std::env::var_os("STORK_BIN").map_or(repo_root().join("target/debug/stork"), PathBuf::from);
        let mut cmd = Command::new(bin);
        cmd.env("RUST_LOG", "info,stork=debug").args(["serve", "--driver", "mock", "--mock-topology"]).arg(&topology);
        cmd.arg("--kubeconfig").arg(kubeconfig);
        cmd.args(["--self-signed", "--namespace", ns, "--webhook-config", webhook_config]);
        cmd.args(["--listen", &https.to_string(), "--admin-listen", &format!("127.0.0.1:{admin_port}")]);
        cmd.args(extra).stdin(Stdio::null()).stdout(out.try_clone().unwrap()).stderr(out);
        let child = cmd.spawn().expect("start stork (run `cargo build --bin stork` first)");
        eprintln!("[e2e] started {name} (pid {}), log {}", child.id(), log.display());
        Stork { child, log, https, admin_port }
    }

    async fn wait_ready(&mut self) {
        let exited = self.child.try_wait().unwrap();
        let log = || std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(exited.is_none(), "stork exited ({exited:?}):\n{}", log());
        wait_for("stork /readyz 200", WAIT, || async {
            match status_line(self.admin_port, "/readyz").await {
                Ok(line) if line.contains(" 200 ") => Ok(()),
                Ok(line) => Err(line),
                Err(e) => Err(format!("{e:#}; log: {}", log())),
            }
        })
        .await;
    }
}

/// The status line of `GET http://127.0.0.1:<port><path>` (HTTP/1.0, so the server closes).
async fn status_line(port: u16, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).await?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut response)).await??;
    Ok(response.lines().next().unwrap_or_default().to_owned())
}

impl Drop for Stork {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A webhook the apiserver never calls: its object selector matches no object.
fn never_called(name: &str, url: String) -> Value {
    json!({
        "name": name, "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Ignore",
        "clientConfig": {"url": url},
        "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
        "objectSelector": {"matchLabels": {"stork.test/never": "matches"}}
    })
}

/// A client trusting nothing but `bundle`. Like the apiserver's, it never resumes a TLS
/// session, so every new connection sees the certificate served at that moment.
fn tls_client(bundle: &[u8]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(bundle) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    config.resumption = Resumption::disabled();
    Arc::new(config)
}

/// An HTTP/1.1 connection over TLS, and the serial of the certificate the server presented.
async fn connect(addr: SocketAddr, tls: &Arc<ClientConfig>, name: &str) -> Result<(SendRequest<Full<Bytes>>, String)> {
    let tcp = TcpStream::connect(addr).await?;
    let stream = TlsConnector::from(tls.clone()).connect(ServerName::try_from(name.to_owned())?, tcp).await?;
    let leaf = stream.get_ref().1.peer_certificates().context("no peer certificate")?[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf)?;
    let serial = cert.raw_serial_as_string();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok((sender, serial))
}

/// POSTs the recorded review to /mutate and expects HTTP 200 with an allowed response for it.
async fn review(sender: &mut SendRequest<Full<Bytes>>, host: &str) -> Result<()> {
    let req = http::Request::post("/mutate")
        .header("host", host)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(REVIEW.as_bytes())))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body: Value = serde_json::from_slice(&resp.into_body().collect().await?.to_bytes())?;
    ensure!(status == 200, "HTTP {status}: {body}");
    ensure!(body["response"]["uid"] == "uid-plain" && body["response"]["allowed"] == true, "{body}");
    Ok(())
}

/// What a client saw while hammering one replica.
#[derive(Debug, Default)]
struct Seen {
    ok: usize,
    failures: Vec<String>,
    serials: BTreeSet<String>,
}

/// Reviews over one keep-alive connection and over fresh connections, alternately, until fresh
/// connections have seen `serials` distinct certificates or `timeout` passes.
async fn hammer(addr: SocketAddr, tls: Arc<ClientConfig>, host: String, serials: usize, timeout: Duration) -> Seen {
    let mut seen = Seen::default();
    let deadline = Instant::now() + timeout;
    let mut kept = connect(addr, &tls, &host).await.expect("first connection").0;
    while seen.serials.len() < serials && Instant::now() < deadline {
        let fresh = async {
            let (mut sender, serial) = connect(addr, &tls, &host).await?;
            review(&mut sender, &host).await?;
            Ok::<_, anyhow::Error>(serial)
        };
        match fresh.await {
            Ok(serial) => {
                seen.serials.insert(serial);
                seen.ok += 1;
            }
            Err(e) => seen.failures.push(format!("fresh connection: {e:#}")),
        }
        match review(&mut kept, &host).await {
            Ok(()) => seen.ok += 1,
            Err(e) => seen.failures.push(format!("keep-alive connection: {e:#}")),
        }
    }
    seen
}

async fn ca_bundles(
    mutating: &Api<MutatingWebhookConfiguration>,
    validating: &Api<ValidatingWebhookConfiguration>,
    name: &str,
) -> Result<Vec<Option<Vec<u8>>>> {
    let mut bundles: Vec<_> = (mutating.get(name).await?.webhooks.unwrap_or_default().into_iter())
        .map(|w| w.client_config.ca_bundle.map(|b| b.0))
        .collect();
    bundles.extend(
        (validating.get(name).await?.webhooks.unwrap_or_default().into_iter())
            .map(|w| w.client_config.ca_bundle.map(|b| b.0)),
    );
    Ok(bundles)
}

#[tokio::test]
async fn a_self_signed_stork_publishes_its_ca_and_renews_without_failing_a_request() {
    stork::tls::install_crypto_provider();
    let (cluster, client) = shared().await;
    let kubeconfig = &cluster.info.kubeconfig;
    let ns = namespace(&client, "selfsigned").await.unwrap();
    let config = format!("selfsigned-{ns}");
    let host = format!("stork-service.{ns}.svc");
    let (first_name, second_name) = ("first.selfsigned.stork.test", "second.selfsigned.stork.test");

    let mut a = Stork::start(kubeconfig, "stork-selfsigned-a", &ns, &config, &[]);
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let url = |path: &str| format!("https://{}{path}", a.https);
    let hooks = json!([never_called(first_name, url("/mutate")), never_called(second_name, url("/mutate"))]);
    create(&mutating, json!({"metadata": {"name": config}, "webhooks": hooks})).await;
    create(
        &validating,
        json!({"metadata": {"name": config}, "webhooks": [never_called(first_name, url("/validate"))]}),
    )
    .await;
    a.wait_ready().await;

    // The Secret, and its CA in every webhook's caBundle (the configurations may have appeared
    // after stork's first check: it retries).
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret = secrets.get(SECRET).await.expect("stork created its Secret");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret.data.unwrap();
    let keys: Vec<_> = data.keys().map(String::as_str).collect();
    assert_eq!(keys, ["ca.crt", "ca.key", "client.crt", "client.key", "tls.crt", "tls.key"]);
    let ca = data["ca.crt"].0.clone();
    wait_for("caBundle on every webhook", WAIT, || async {
        let bundles = ca_bundles(&mutating, &validating, &config).await.map_err(|e| format!("{e:#}"))?;
        if bundles.iter().all(|b| b.as_deref() == Some(&ca[..])) && bundles.len() == 3 {
            Ok(())
        } else {
            Err(format!(
                "{} webhooks, set: {:?}",
                bundles.len(),
                bundles.iter().map(Option::is_some).collect::<Vec<_>>()
            ))
        }
    })
    .await;

    let tls = tls_client(&ca);
    let (mut sender, first_serial) = connect(a.https, &tls, &host).await.expect("TLS trusting only the caBundle");
    review(&mut sender, &host).await.expect("an AdmissionReview answered over self-signed TLS");

    // A second replica that renews at every check (renew-before beyond the one-year validity,
    // checks every second); the first adopts each renewal through its watch on the Secret.
    let mut b = Stork::start(
        kubeconfig,
        "stork-selfsigned-b",
        &ns,
        &config,
        &["--cert-renew-before", "400d", "--cert-check-interval", "1s"],
    );
    b.wait_ready().await;
    let timeout = Duration::from_secs(60);
    let (seen_a, seen_b) = tokio::join!(
        hammer(a.https, tls_client(&ca), host.clone(), SERIALS, timeout),
        hammer(b.https, tls_client(&ca), host.clone(), SERIALS, timeout),
    );

    for (name, seen) in [("first replica", &seen_a), ("second replica", &seen_b)] {
        eprintln!("[e2e] {name}: {} ok, {} serials, failures {:?}", seen.ok, seen.serials.len(), seen.failures);
        assert!(seen.failures.is_empty(), "{name}: failed requests: {:?}", seen.failures);
        assert!(seen.serials.len() >= SERIALS, "{name} served only {:?} within {timeout:?}", seen.serials);
    }
    assert!(seen_a.serials.iter().any(|s| *s != first_serial), "the first replica adopted renewals");
    let now = secrets.get(SECRET).await.unwrap().data.unwrap();
    assert_eq!(now["ca.crt"].0, ca, "renewing the serving certificate keeps the CA");

    drop((a, b));
    let _ = mutating.delete(&config, &DeleteParams::default()).await;
    let _ = validating.delete(&config, &DeleteParams::default()).await;
}
