//! Client certificates for the extender (`--extender-client-ca`): the HTTPS listener asks every
//! client for a certificate but lets one without through the handshake (the API server calls
//! the webhooks without one); `/filter` and `/prioritize` then refuse a connection that showed
//! no certificate the CA signed. rustls verified the chain during the handshake, so a
//! connection either carries a verified certificate or none.
//!
//! The CA comes from a file, re-read when it changes (a missing, empty or unparsable file trusts
//! no client until a good one appears), or, with `--extender-client-ca self-signed`, from the CA
//! stork keeps in its own Secret: trusted from the first request, and followed through every
//! rotation without waiting for a kubelet to refresh a mounted file.

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

/// The `--extender-client-ca` value naming the self-signed mode's own CA instead of a file.
pub const SELF_SIGNED: &str = "self-signed";

/// The extender's client-certificate policy, shared by the TLS config and the handlers.
#[derive(Clone)]
pub struct ClientAuth {
    /// The CA file; `None` when the self-signed mode sets the CA ([`Self::set_ca_pem`]).
    path: Option<PathBuf>,
    verifier: Arc<ReloadingClientVerifier>,
}

impl ClientAuth {
    /// Loads the CA bundle at `path`; a file that cannot be used yet is logged, not fatal.
    pub fn from_file(path: &Path) -> Self {
        let auth = Self { path: Some(path.to_path_buf()), verifier: Arc::new(ReloadingClientVerifier::default()) };
        auth.reload();
        auth
    }

    /// Trusts the CA the self-signed mode manages, set by it through [`Self::set_ca_pem`].
    pub fn self_signed() -> Self {
        Self { path: None, verifier: Arc::new(ReloadingClientVerifier::default()) }
    }

    /// Trusts the CAs of `pem` from now on (the self-signed mode's bundle, after each rotation).
    pub fn set_ca_pem(&self, pem: &[u8]) {
        match verifier_of(pem) {
            Ok(v) => self.verifier.current.store(Some(Arc::new(v))),
            Err(why) => tracing::warn!(%why, "keeping the previous extender client CA"),
        }
    }

    /// The verifier to build the HTTPS listener's rustls config with.
    pub fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        self.verifier.clone()
    }

    /// Re-reads the CA file; keeps trusting the previous CA when the new file is unusable.
    pub fn reload(&self) {
        let Some(path) = &self.path else { return };
        let loaded = std::fs::read(path).map_err(|e| format!("cannot read: {e}")).and_then(|pem| verifier_of(&pem));
        match loaded {
            Ok(v) => {
                self.verifier.current.store(Some(Arc::new(v)));
                tracing::info!(path = %path.display(), "extender client CA loaded");
            }
            Err(why) if self.verifier.current.load().is_some() => {
                tracing::warn!(path = %path.display(), %why, "keeping the previous extender client CA");
            }
            Err(why) => {
                tracing::warn!(path = %path.display(), %why, "no extender client CA yet: extender calls are refused");
            }
        }
    }

    /// Re-reads the CA file when it changes, until `cancel` (nothing to watch in self-signed mode).
    pub async fn watch(self, cancel: CancellationToken) {
        let Some(path) = self.path.clone() else { return };
        let Ok(mut watch) = crate::watch::FileWatch::new(std::slice::from_ref(&path), Duration::from_secs(10)) else {
            tracing::warn!(path = %path.display(), "cannot watch the extender client CA; changes need a restart");
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

fn verifier_of(pem: &[u8]) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("bad PEM: {e}"))?;
        roots.add(cert).map_err(|e| format!("bad CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no CA certificate in it".into());
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
        let v = current.as_ref().ok_or_else(|| rustls::Error::General("no extender client CA is loaded".into()))?;
        v.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Signatures do not depend on the CA: rustls's own check with the provider's algorithms.
        rustls::crypto::verify_tls12_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider().signature_verification_algorithms.supported_schemes()
    }
}
