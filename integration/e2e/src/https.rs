//! One HTTPS request to stork the way the `stork` kube-scheduler makes it: trusting the harness
//! CA, with or without a client certificate.

use std::{path::Path, sync::Arc};

use anyhow::{Context, Result};
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::TlsConnector;

/// A client certificate and its key, as PEM files.
pub struct ClientCert<'a> {
    /// Certificate (PEM).
    pub cert: &'a Path,
    /// Key (PEM).
    pub key: &'a Path,
}

/// POSTs `body` as JSON to `https://127.0.0.1:<port><path>` (server name `server_name`, trusting
/// only `ca`) and returns the status code and the response body.
pub async fn post(
    port: u16,
    ca: &Path,
    server_name: &str,
    client: Option<ClientCert<'_>>,
    path: &str,
    body: &[u8],
) -> Result<(u16, String)> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let builder = ClientConfig::builder().with_root_certificates(roots);
    let config = match client {
        Some(c) => {
            let chain = CertificateDer::pem_file_iter(c.cert)?.collect::<Result<Vec<_>, _>>()?;
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(c.key)?)?
        }
        None => builder.with_no_client_auth(),
    };
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut tls =
        TlsConnector::from(Arc::new(config)).connect(ServerName::try_from(server_name.to_owned())?, tcp).await?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {server_name}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await?;
    tls.write_all(body).await?;
    let mut raw = Vec::new();
    // The server closes after answering (Connection: close); a TLS close without notify is fine.
    let _ = tls.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status =
        text.split(' ').nth(1).and_then(|s| s.parse().ok()).with_context(|| format!("no HTTP status in {text:?}"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}
