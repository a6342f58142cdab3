//! Webhook TLS: load a PEM cert/key pair, hot-reload it safely, and issue certificates.
//!
//! The serving pair lives behind a [`ReloadingCertResolver`], so rotating a certificate never
//! restarts the actix server: new handshakes pick up the new pair, open connections keep theirs.
//! A swap happens only after the new cert and key both parse and match; on any failure the old
//! pair keeps serving (policy-server semantics).
//!
//! Two sources feed the resolver: files (`--tls-cert/--tls-key`, watched by
//! [`watch_and_reload`]) or stork's own CA kept in a Secret ([`self_signed`], whose pure
//! decisions live in [`renewal`]). [`issue_ca`] and [`issue_serving`] sign for both that mode and
//! `stork certs`.

mod ca_bundle;
pub mod client_auth;
mod issue;
mod reload;
pub mod renewal;
mod secret;
pub mod self_signed;
mod verify;

use std::{
    fmt, fs, io,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use arc_swap::ArcSwap;
pub use issue::{DevCerts, Issued, generate_ca_and_serving, issue_ca, issue_client, issue_serving, write_dev_certs};
pub use reload::watch_and_reload;
use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use x509_parser::time::ASN1Time;

/// Errors from loading, reloading or generating TLS material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A cert or key file could not be read.
    #[error("failed to read {}", .path.display())]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A file holds malformed PEM, or no certificate / private key block at all.
    #[error("failed to parse PEM in {}", .path.display())]
    Pem {
        /// The malformed file.
        path: PathBuf,
        /// What the PEM parser rejected.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The first certificate is not valid X.509 DER.
    #[error("failed to parse the X.509 certificate in {}", .path.display())]
    Certificate {
        /// The file holding the bad certificate.
        path: PathBuf,
        /// The X.509 parser error.
        #[source]
        source: x509_parser::nom::Err<x509_parser::error::X509Error>,
    },
    /// The private key uses an algorithm the crypto provider cannot sign with.
    #[error("failed to load the private key in {}", .path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why rustls refused the key.
        #[source]
        source: rustls::Error,
    },
    /// The private key does not belong to the certificate (or to its first entry, for a chain).
    #[error("failed to match private key {} to certificate {}", .key.display(), .cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// The rustls consistency check error.
        #[source]
        source: rustls::Error,
    },
    /// rcgen could not generate a key or sign a certificate.
    #[error("failed to generate a certificate")]
    Generate(#[source] rcgen::Error),
    /// `--cert-renew-before` leaves no room between renewals (see [`renewal::Policy::new`]).
    #[error(
        "failed to accept a renew-before of {}s: it must be above zero and under half the CA validity ({}s)",
        .0.as_secs(), renewal::CA_VALIDITY.as_secs() / 2
    )]
    RenewBefore(Duration),
    /// `--cert-check-interval` is zero.
    #[error("failed to use a certificate check interval of zero")]
    CheckInterval,
    /// A generated file could not be written.
    #[error("failed to write {}", .path.display())]
    Write {
        /// The file that could not be written.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// Install ring as the process-wide rustls crypto provider. Idempotent.
///
/// rustls 0.22+ needs a process default whenever more than one provider could be compiled in;
/// call this first thing in `main` and in test setup.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Keys and configs use the installed default so a future switch (e.g. FIPS) applies everywhere;
/// ring is the fallback so this module also works before `install_crypto_provider`.
fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default().cloned().unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Stand-in "paths" naming in-memory PEM in errors, where files would name themselves.
const MEMORY_CERT: &str = "in-memory tls.crt";
const MEMORY_KEY: &str = "in-memory tls.key";

/// Where a [`ReloadingCertResolver`] gets its pair from.
#[derive(Debug)]
enum Source {
    /// Re-read on [`ReloadingCertResolver::reload`].
    Files { cert: PathBuf, key: PathBuf },
    /// Pushed in through [`ReloadingCertResolver::set_pem`].
    Memory,
}

/// A [`ResolvesServerCert`] serving one cert/key pair that can be replaced at runtime.
///
/// rustls asks the resolver once per handshake, so a swap affects new connections only:
/// sessions already established (and the requests on them) keep the pair they started with.
pub struct ReloadingCertResolver {
    source: Source,
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for ReloadingCertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not derived: that would dump the certificate DER into every `{:?}` of a ServerConfig.
        match &self.source {
            Source::Files { cert, key } => write!(f, "ReloadingCertResolver({}, {})", cert.display(), key.display()),
            Source::Memory => write!(f, "ReloadingCertResolver(in memory)"),
        }
    }
}

impl ReloadingCertResolver {
    /// Load the pair at startup, failing fast with the offending path in the error.
    ///
    /// `cert` may hold a full chain (leaf first); `key` may be PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub fn from_files(cert: &Path, key: &Path) -> Result<Arc<Self>, Error> {
        let current = ArcSwap::from_pointee(parse_pair(&read(cert)?, &read(key)?, cert, key)?);
        Ok(Arc::new(Self { source: Source::Files { cert: cert.to_path_buf(), key: key.to_path_buf() }, current }))
    }

    /// Serve a pair held in memory (the self-signed mode's Secret); replace it with [`Self::set_pem`].
    pub fn from_pem(cert: &str, key: &str) -> Result<Arc<Self>, Error> {
        let current = ArcSwap::from_pointee(parse_memory_pair(cert, key)?);
        Ok(Arc::new(Self { source: Source::Memory, current }))
    }

    /// Re-read both files and swap them in if they parse and match.
    ///
    /// `Ok(true)` after a swap, `Ok(false)` if the chain is unchanged (or the pair is held in
    /// memory, so there is nothing to re-read); on error the old pair keeps serving.
    pub fn reload(&self) -> Result<bool, Error> {
        match &self.source {
            Source::Files { cert, key } => self.swap(parse_pair(&read(cert)?, &read(key)?, cert, key)?),
            Source::Memory => Ok(false),
        }
    }

    /// Swap in a PEM pair if it parses and matches; same results as [`Self::reload`].
    pub fn set_pem(&self, cert: &str, key: &str) -> Result<bool, Error> {
        self.swap(parse_memory_pair(cert, key)?)
    }

    fn swap(&self, pair: CertifiedKey) -> Result<bool, Error> {
        // The key matched this chain, so an identical chain implies an identical key.
        if pair.cert == self.current.load().cert {
            return Ok(false);
        }
        self.current.store(Arc::new(pair));
        Ok(true)
    }

    /// The `notAfter` of the certificate currently served, for expiry logging and metrics.
    pub fn current_not_after(&self) -> Option<SystemTime> {
        let (_, not_after) = describe(&self.current.load())?;
        u64::try_from(not_after.timestamp()).ok().map(|secs| UNIX_EPOCH + Duration::from_secs(secs))
    }

    /// The serial (colon-separated hex) of the certificate currently served, for logs.
    pub fn current_serial(&self) -> Option<String> {
        describe(&self.current.load()).map(|(serial, _)| serial)
    }
}

impl ResolvesServerCert for ReloadingCertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    fs::read(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })
}

fn parse_memory_pair(cert: &str, key: &str) -> Result<CertifiedKey, Error> {
    parse_pair(cert.as_bytes(), key.as_bytes(), Path::new(MEMORY_CERT), Path::new(MEMORY_KEY))
}

/// Parse a PEM chain (leaf first) and its key, and check they belong together.
///
/// `cert_origin`/`key_origin` name the inputs in errors: file paths, or labels for PEM from elsewhere.
fn parse_pair(cert_pem: &[u8], key_pem: &[u8], cert_origin: &Path, key_origin: &Path) -> Result<CertifiedKey, Error> {
    let pem_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Pem { path, source }
    };
    let chain =
        CertificateDer::pem_slice_iter(cert_pem).collect::<Result<Vec<_>, _>>().map_err(pem_err(cert_origin))?;
    let leaf = chain.first().ok_or_else(|| pem_err(cert_origin)(rustls::pki_types::pem::Error::NoItemsFound))?;
    // Checked here so a corrupt DER body is reported as such, not as a key mismatch.
    x509_parser::parse_x509_certificate(leaf)
        .map_err(|source| Error::Certificate { path: cert_origin.to_path_buf(), source })?;

    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(pem_err(key_origin))?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|source| Error::Key { path: key_origin.to_path_buf(), source })?;

    let pair = CertifiedKey::new(chain, signing_key);
    match pair.keys_match() {
        // Unknown: the provider cannot expose the public key; rustls' own `from_der` accepts that.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(pair),
        Err(source) => {
            Err(Error::KeyMismatch { cert: cert_origin.to_path_buf(), key: key_origin.to_path_buf(), source })
        }
    }
}

/// Serial (colon-separated hex) and `notAfter` of the leaf certificate.
fn describe(pair: &CertifiedKey) -> Option<(String, ASN1Time)> {
    let (_, cert) = x509_parser::parse_x509_certificate(pair.cert.first()?).ok()?;
    Some((cert.raw_serial_as_string(), cert.validity().not_after))
}

/// A rustls server config resolving certificates through `resolver`; with `client_auth`, it
/// asks clients for a certificate ([`client_auth::ClientAuth`]) without requiring one.
///
/// ALPN is deliberately left empty: actix's `bind_rustls_0_23` prepends `h2` (with the `http2`
/// feature) and `http/1.1` to whatever is configured, so setting them here would duplicate them.
pub fn server_config(
    resolver: Arc<ReloadingCertResolver>,
    client_auth: Option<&client_auth::ClientAuth>,
) -> ServerConfig {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the crypto provider supports the default TLS versions");
    match client_auth {
        Some(auth) => builder.with_client_cert_verifier(auth.verifier()),
        None => builder.with_no_client_auth(),
    }
    .with_cert_resolver(resolver)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temp dir holding `tls.crt`/`tls.key`; `.0` keeps it alive.
    struct Pair(tempfile::TempDir, PathBuf, PathBuf);

    fn write_pair(cert_pem: &str, key_pem: &str) -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        fs::write(&cert, cert_pem).unwrap();
        fs::write(&key, key_pem).unwrap();
        Pair(dir, cert, key)
    }

    fn generate(name: &str) -> (String, String, String) {
        generate_ca_and_serving(&[name.to_owned()]).unwrap()
    }

    fn served_cert(resolver: &ReloadingCertResolver) -> Vec<u8> {
        resolver.current.load().cert[0].to_vec()
    }

    #[test]
    fn a_mismatched_key_is_rejected_until_the_matching_key_lands() {
        let ((_, cert_a, key_a), (_, cert_b, key_b)) = (generate("a.test"), generate("b.test"));
        let Pair(_dir, cert, key) = write_pair(&cert_a, &key_a);
        let resolver = ReloadingCertResolver::from_files(&cert, &key).unwrap();
        let before = served_cert(&resolver);

        // A rotation caught halfway: the new cert is in place, the old key is still there.
        fs::write(&cert, &cert_b).unwrap();
        let err = resolver.reload().unwrap_err();
        assert!(matches!(err, Error::KeyMismatch { .. }), "{err:?}");
        assert_eq!(served_cert(&resolver), before);

        fs::write(&key, &key_b).unwrap();
        assert!(resolver.reload().unwrap(), "the completed pair is swapped in");
        assert!(!resolver.reload().unwrap(), "an unchanged pair is not swapped again");
        assert!(resolver.current_not_after().unwrap() > SystemTime::now());
    }

    #[test]
    fn an_in_memory_pair_is_swapped_only_for_a_new_matching_pair() {
        let ((_, cert_a, key_a), (_, cert_b, key_b)) = (generate("a.test"), generate("b.test"));
        let resolver = ReloadingCertResolver::from_pem(&cert_a, &key_a).unwrap();
        let before = served_cert(&resolver);

        let err = resolver.set_pem(&cert_b, &key_a).unwrap_err();
        assert!(err.to_string().contains("in-memory tls.key"), "{err}");
        assert_eq!(served_cert(&resolver), before);

        assert!(resolver.set_pem(&cert_b, &key_b).unwrap());
        assert!(!resolver.set_pem(&cert_b, &key_b).unwrap(), "an unchanged pair is not swapped again");
        assert!(!resolver.reload().unwrap(), "an in-memory pair has nothing to re-read");
        assert_ne!(served_cert(&resolver), before);
    }

    #[test]
    fn garbage_pem_is_rejected_and_the_old_pair_keeps_serving() {
        let (_, good_cert, good_key) = generate("a.test");
        let Pair(_dir, cert, key) = write_pair(&good_cert, &good_key);
        let resolver = ReloadingCertResolver::from_files(&cert, &key).unwrap();
        let before = served_cert(&resolver);

        for garbage in [
            "not a certificate at all",
            "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            fs::write(&cert, garbage).unwrap();
            let err = resolver.reload().unwrap_err();
            assert!(err.to_string().contains(&*cert.to_string_lossy()), "{err}");
        }
        fs::write(&cert, &good_cert).unwrap();
        fs::write(&key, "-----BEGIN PRIVATE KEY-----\nAAAA\n").unwrap();
        assert!(matches!(resolver.reload(), Err(Error::Pem { .. })));

        assert_eq!(served_cert(&resolver), before);
    }

    #[test]
    fn a_full_chain_is_accepted_with_the_leaf_first() {
        let (ca, cert_pem, key_pem) = generate("a.test");
        let Pair(_dir, cert, key) = write_pair(&format!("{cert_pem}{ca}"), &key_pem);

        let resolver = ReloadingCertResolver::from_files(&cert, &key).unwrap();

        assert_eq!(resolver.current.load().cert.len(), 2);
    }

    #[test]
    fn startup_failures_name_the_offending_file() {
        let ((_, cert_a, _), (_, _, key_b)) = (generate("a.test"), generate("b.test"));
        let Pair(_dir, cert, key) = write_pair(&cert_a, &key_b);
        let mismatch = ReloadingCertResolver::from_files(&cert, &key).unwrap_err();
        assert!(mismatch.to_string().contains(&*cert.to_string_lossy()), "{mismatch}");

        let missing = ReloadingCertResolver::from_files(Path::new("/nope/tls.crt"), &key).unwrap_err();
        assert_eq!(missing.to_string(), "failed to read /nope/tls.crt");
    }
}
