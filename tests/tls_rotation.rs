//! TLS on a real actix-web listener: certificate rotation with the files laid out the way the
//! kubelet projects a Secret volume (`tls.crt -> ..data/tls.crt`, `..data -> ..gen_N`), HTTP/2
//! through ALPN, and the `stork certs` output.

use std::{
    fs,
    net::SocketAddr,
    os::unix::fs::{PermissionsExt, symlink},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use actix_web::{App, HttpServer, dev::ServerHandle, web};
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, ServerName, pem::PemObject},
};
use stork::tls::{self, ReloadingCertResolver};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};
use tokio_rustls::{TlsConnector, client::TlsStream};
use tokio_util::sync::CancellationToken;
use x509_parser::extensions::GeneralName;

/// A Secret volume written the way the kubelet's atomic writer does it.
struct SecretVolume {
    dir: tempfile::TempDir,
    generation: u32,
}

impl SecretVolume {
    fn new(cert_pem: &str, key_pem: &str) -> Self {
        let mut volume = Self { dir: tempfile::tempdir().unwrap(), generation: 0 };
        volume.publish(cert_pem, key_pem);
        for name in ["tls.crt", "tls.key"] {
            symlink(format!("..data/{name}"), volume.dir.path().join(name)).unwrap();
        }
        volume
    }

    /// Write a new timestamped directory, then swap `..data` to it with one atomic rename.
    fn publish(&mut self, cert_pem: &str, key_pem: &str) {
        let root = self.dir.path();
        self.generation += 1;
        let new_dir = format!("..gen_{}", self.generation);
        fs::create_dir(root.join(&new_dir)).unwrap();
        fs::write(root.join(&new_dir).join("tls.crt"), cert_pem).unwrap();
        fs::write(root.join(&new_dir).join("tls.key"), key_pem).unwrap();
        symlink(&new_dir, root.join("..data_tmp")).unwrap();
        fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        if self.generation > 1 {
            fs::remove_dir_all(root.join(format!("..gen_{}", self.generation - 1))).unwrap();
        }
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("tls.key")
    }
}

/// A CA plus serving pair whose only non-default SAN is `name`.
struct Identity {
    ca: String,
    cert: String,
    key: String,
}

fn identity(name: &str) -> Identity {
    let (ca, cert, key) = tls::generate_ca_and_serving(&[name.to_owned()]).unwrap();
    Identity { ca, cert, key }
}

fn trusting(ca_pems: &[&str]) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for pem in ca_pems {
        roots.add_parsable_certificates(CertificateDer::pem_slice_iter(pem.as_bytes()).map(Result::unwrap));
    }
    Arc::new(roots)
}

fn start_server(resolver: Arc<ReloadingCertResolver>) -> (SocketAddr, ServerHandle) {
    let server = HttpServer::new(|| App::new().route("/", web::get().to(|| async { "ok" })))
        .workers(1)
        .disable_signals()
        .bind_rustls_0_23(("127.0.0.1", 0), tls::server_config(resolver, None))
        .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (addr, handle)
}

async fn connect(addr: SocketAddr, roots: &Arc<RootCertStore>, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let mut config = ClientConfig::builder().with_root_certificates(Arc::clone(roots)).with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let server_name = ServerName::try_from("localhost").unwrap();
    TlsConnector::from(Arc::new(config)).connect(server_name, tcp).await.unwrap()
}

/// The peer certificate's SANs: DNS names as-is, IP addresses dotted.
fn peer_sans(stream: &TlsStream<TcpStream>) -> Vec<String> {
    let leaf = &stream.get_ref().1.peer_certificates().unwrap()[0];
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).unwrap();
    let sans = cert.subject_alternative_name().unwrap().unwrap().value;
    (sans.general_names.iter())
        .map(|name| match name {
            GeneralName::DNSName(dns) => dns.to_string(),
            GeneralName::IPAddress(ip) => ip.iter().map(u8::to_string).collect::<Vec<_>>().join("."),
            other => format!("{other:?}"),
        })
        .collect()
}

/// The served certificate's first SAN (the one that is not a dev-cert default), from a fresh
/// connection.
async fn served_san(addr: SocketAddr, roots: &Arc<RootCertStore>) -> String {
    peer_sans(&connect(addr, roots, &[]).await).swap_remove(0)
}

async fn wait_for_san(addr: SocketAddr, roots: &Arc<RootCertStore>, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = served_san(addr, roots).await;
        if seen == want {
            return;
        }
        assert!(Instant::now() < deadline, "still serving {seen} after 10s, expected {want}");
        tokio::time::sleep(Duration::from_millis(50)).await; // poll until the deadline
    }
}

#[actix_web::test]
async fn rotated_secret_is_served_and_a_corrupt_update_keeps_the_last_good_certificate() {
    tls::install_crypto_provider();
    let (a, b) = (identity("a.test"), identity("b.test"));
    let roots = trusting(&[&a.ca, &b.ca]);
    let mut volume = SecretVolume::new(&a.cert, &a.key);
    let resolver = ReloadingCertResolver::from_files(&volume.cert(), &volume.key()).unwrap();
    let (addr, server) = start_server(Arc::clone(&resolver));
    let cancel = CancellationToken::new();
    let watcher =
        actix_web::rt::spawn(tls::watch_and_reload(Arc::clone(&resolver), volume.cert(), volume.key(), cancel.clone()));

    assert_eq!(served_san(addr, &roots).await, "a.test");

    volume.publish(&b.cert, &b.key);
    wait_for_san(addr, &roots, "b.test").await;

    volume.publish("-----BEGIN CERTIFICATE-----\ncorrupt\n-----END CERTIFICATE-----\n", &b.key);
    assert!(resolver.reload().is_err(), "a corrupt certificate must not load");
    // Outlast the watcher's debounce, so its own reload attempt has happened too.
    let stays_until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < stays_until {
        assert_eq!(served_san(addr, &roots).await, "b.test");
        tokio::time::sleep(Duration::from_millis(50)).await; // poll until the deadline
    }

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), watcher)
        .await
        .expect("watch_and_reload returns once cancelled")
        .unwrap();
    server.stop(false).await;
}

/// Sends one HTTP/2 `GET /` by hand and returns the response header block of stream 1.
async fn http2_get(stream: &mut TlsStream<TcpStream>) -> Vec<u8> {
    const HEADERS: u8 = 0x1;
    const SETTINGS: u8 = 0x4;
    fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        out.extend([kind, flags]);
        out.extend(stream_id.to_be_bytes());
        out.extend(payload);
        out
    }
    // HPACK: indexed :method GET (2), :scheme https (7), :path / (4); literal :authority (1).
    let mut block = vec![0x82, 0x87, 0x84, 0x41, b"localhost".len() as u8];
    block.extend(b"localhost");

    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    out.extend(frame(HEADERS, 0x4 | 0x1, 1, &block)); // END_HEADERS | END_STREAM
    stream.write_all(&out).await.unwrap();
    stream.flush().await.unwrap();

    loop {
        let mut head = [0u8; 9];
        stream.read_exact(&mut head).await.unwrap();
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream_id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).await.unwrap();
        if kind == SETTINGS && flags & 0x1 == 0 {
            stream.write_all(&frame(SETTINGS, 0x1, 0, &[])).await.unwrap();
            stream.flush().await.unwrap();
        }
        if kind == HEADERS && stream_id == 1 {
            return payload;
        }
    }
}

#[actix_web::test]
async fn http2_is_negotiated_through_alpn_and_answers_requests() {
    tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let certs = tls::write_dev_certs(dir.path(), &[]).unwrap();
    let roots = trusting(&[&fs::read_to_string(&certs.ca_cert).unwrap()]);
    let (addr, server) = start_server(ReloadingCertResolver::from_files(&certs.cert, &certs.key).unwrap());

    let h1 = connect(addr, &roots, &[b"http/1.1"]).await;
    assert_eq!(h1.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));

    let mut h2 = connect(addr, &roots, &[b"h2", b"http/1.1"]).await;
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let response =
        tokio::time::timeout(Duration::from_secs(5), http2_get(&mut h2)).await.expect("an HTTP/2 response within 5s");
    // 0x88 is HPACK's static-table entry for `:status: 200`.
    assert_eq!(response.first(), Some(&0x88), "response header block {response:02x?}");

    server.stop(false).await;
}

#[actix_web::test]
async fn dev_certs_serve_a_client_that_trusts_only_their_ca() {
    tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();

    let certs = tls::write_dev_certs(&dir.path().join("out"), &["stork.kube-system.svc".into()]).unwrap();

    assert_eq!(fs::metadata(&certs.key).unwrap().permissions().mode() & 0o777, 0o600);
    let roots = trusting(&[&fs::read_to_string(&certs.ca_cert).unwrap()]);
    let (addr, server) = start_server(ReloadingCertResolver::from_files(&certs.cert, &certs.key).unwrap());
    let stream = connect(addr, &roots, &[]).await;
    assert_eq!(peer_sans(&stream), ["stork.kube-system.svc", "localhost", "127.0.0.1"]);
    server.stop(false).await;
}
