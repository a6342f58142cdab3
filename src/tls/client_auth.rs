//! Client certificates for the extender (`--extender-client-ca`): the HTTPS listener asks every
//! client for a certificate but lets one without through the handshake (the API server calls
//! the webhooks without one); `/filter` and `/prioritize` then refuse a connection that showed
//! no certificate the CA signed. rustls verified the chain during the handshake, so a
//! connection either carries a verified certificate or none.
//!
//! The CA file is re-read when it changes. A missing, empty or unparsable file trusts no client
//! (extender calls get 401) until a good one appears: a Secret mounted `optional` fills in
//! after the pod started.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use actix_web::{HttpRequest, dev::Extensions};
use arc_swap::ArcSwapOption;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
    client::danger::HandshakeSignatureValid,
    pki_types::{CertificateDer, UnixTime, pem::PemObject},
    server::{
        WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
};
use tokio_util::sync::CancellationToken;

use super::provider;

/// Marks a connection whose client showed a certificate the client CA signed.
#[derive(Debug, Clone, Copy)]
struct VerifiedClient;

/// The extender's client-certificate policy, shared by the TLS config and the handlers.
#[derive(Clone)]
pub struct ClientAuth {
    path: PathBuf,
    verifier: Arc<ReloadingClientVerifier>,
}

impl ClientAuth {
    /// Loads the CA bundle at `path`; a file that cannot be used yet is logged, not fatal.
    pub fn from_file(path: &Path) -> Self {
        let auth = Self { path: path.to_path_buf(), verifier: Arc::new(ReloadingClientVerifier::default()) };
        auth.reload();
        auth
    }

    /// The verifier to build the HTTPS listener's rustls config with.
    pub fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        self.verifier.clone()
    }

    /// Re-reads the CA file; keeps trusting the previous CA when the new file is unusable.
    pub fn reload(&self) {
        match load_verifier(&self.path) {
            Ok(v) => {
                self.verifier.current.store(Some(Arc::new(v)));
                tracing::info!(path = %self.path.display(), "extender client CA loaded");
            }
            Err(why) if self.verifier.current.load().is_some() => {
                tracing::warn!(path = %self.path.display(), %why, "keeping the previous extender client CA");
            }
            Err(why) => {
                tracing::warn!(path = %self.path.display(), %why, "no extender client CA yet: extender calls are refused");
            }
        }
    }

    /// Re-reads the CA file when it changes, until `cancel`.
    pub async fn watch(self, cancel: CancellationToken) {
        let Ok(mut watch) = crate::watch::FileWatch::new(std::slice::from_ref(&self.path), Duration::from_secs(10))
        else {
            tracing::warn!(path = %self.path.display(), "cannot watch the extender client CA; changes need a restart");
            return;
        };
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                alive = watch.changed() => if !alive { return } else { self.reload() },
            }
        }
    }

    /// Records on a new connection whether its client showed a verified certificate
    /// (an `on_connect` hook of the HTTPS listener).
    pub fn on_connect(conn: &dyn std::any::Any, ext: &mut Extensions) {
        type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
        if let Some(tls) = conn.downcast_ref::<Tls>()
            && tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty())
        {
            ext.insert(VerifiedClient);
        }
    }

    /// Whether the request came over a connection with a verified client certificate.
    pub fn verified(&self, req: &HttpRequest) -> bool {
        req.conn_data::<VerifiedClient>().is_some()
    }
}

fn load_verifier(path: &Path) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("bad PEM: {e}"))?;
        roots.add(cert).map_err(|e| format!("bad CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no CA certificate in the file".into());
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("cannot build a verifier: {e}"))
}

/// Delegates to the verifier of the current CA file; with none loaded, rejects every
/// certificate offered (a client offering none still completes the handshake).
#[derive(Default)]
struct ReloadingClientVerifier {
    current: ArcSwapOption<Arc<dyn ClientCertVerifier>>,
}

impl fmt::Debug for ReloadingClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingClientVerifier").field("loaded", &self.current.load().is_some()).finish()
    }
}

impl ReloadingClientVerifier {
    fn none() -> rustls::Error {
        rustls::Error::General("no extender client CA is loaded".into())
    }
}

impl ClientCertVerifier for ReloadingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints are optional; the verifier behind the swap cannot lend its own across a reload.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let current = self.current.load();
        let v = current.as_ref().ok_or_else(Self::none)?;
        v.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let current = self.current.load();
        current.as_ref().ok_or_else(Self::none)?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let current = self.current.load();
        current.as_ref().ok_or_else(Self::none)?.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider().signature_verification_algorithms.supported_schemes()
    }
}
