//! Webhook TLS: load a PEM cert/key pair, hot-reload it safely, and generate dev certificates.
//!
//! The serving pair lives behind a [`ReloadingCertResolver`], so rotating a Secret never restarts
//! the actix server: new handshakes pick up the new pair, open connections keep theirs. A reload
//! swaps only after the new cert and key both parse and match; on any failure the old pair keeps
//! serving (policy-server semantics).

use std::{
    fmt, fs, io,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use arc_swap::ArcSwap;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};
use x509_parser::time::ASN1Time;

use crate::watch::FileWatch;

/// How often the watcher re-checks the files even without a notify event (NFS, missed events).
const RELOAD_POLL: Duration = Duration::from_secs(10);

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
    #[error("failed to generate a development certificate")]
    Generate(#[source] rcgen::Error),
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

/// A [`ResolvesServerCert`] serving one cert/key pair that can be replaced at runtime.
pub struct ReloadingCertResolver {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for ReloadingCertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not derived: that would dump the certificate DER into every `{:?}` of a ServerConfig.
        write!(f, "ReloadingCertResolver({}, {})", self.cert_path.display(), self.key_path.display())
    }
}

impl ReloadingCertResolver {
    /// Load the pair at startup, failing fast with the offending path in the error.
    ///
    /// `cert` may hold a full chain (leaf first); `key` may be PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub fn from_files(cert: &Path, key: &Path) -> Result<Arc<Self>, Error> {
        let current = ArcSwap::from_pointee(load_pair(cert, key)?);
        Ok(Arc::new(Self { cert_path: cert.to_path_buf(), key_path: key.to_path_buf(), current }))
    }

    /// Re-read both files and swap them in if they parse and match.
    ///
    /// `Ok(true)` after a swap, `Ok(false)` if the chain is unchanged; on error the old pair keeps serving.
    pub fn reload(&self) -> Result<bool, Error> {
        let pair = load_pair(&self.cert_path, &self.key_path)?;
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
}

impl ResolvesServerCert for ReloadingCertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    fs::read(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })
}

fn load_pair(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, Error> {
    let pem_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Pem { path, source }
    };
    let chain =
        CertificateDer::pem_slice_iter(&read(cert_path)?).collect::<Result<Vec<_>, _>>().map_err(pem_err(cert_path))?;
    let leaf = chain.first().ok_or_else(|| pem_err(cert_path)(rustls::pki_types::pem::Error::NoItemsFound))?;
    // Checked here so a corrupt DER body is reported as such, not as a key mismatch.
    x509_parser::parse_x509_certificate(leaf)
        .map_err(|source| Error::Certificate { path: cert_path.to_path_buf(), source })?;

    let key = PrivateKeyDer::from_pem_slice(&read(key_path)?).map_err(pem_err(key_path))?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|source| Error::Key { path: key_path.to_path_buf(), source })?;

    let pair = CertifiedKey::new(chain, signing_key);
    match pair.keys_match() {
        // Unknown: the provider cannot expose the public key; rustls' own `from_der` accepts that.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(pair),
        Err(source) => Err(Error::KeyMismatch { cert: cert_path.to_path_buf(), key: key_path.to_path_buf(), source }),
    }
}

/// Serial (colon-separated hex) and `notAfter` of the leaf certificate.
fn describe(pair: &CertifiedKey) -> Option<(String, ASN1Time)> {
    let (_, cert) = x509_parser::parse_x509_certificate(pair.cert.first()?).ok()?;
    Some((cert.raw_serial_as_string(), cert.validity().not_after))
}

/// A rustls server config resolving certificates through `resolver`, without client auth.
///
/// ALPN is deliberately left empty: actix's `bind_rustls_0_23` prepends `h2` (with the `http2`
/// feature) and `http/1.1` to whatever is configured, so setting them here would duplicate them.
pub fn server_config(resolver: Arc<ReloadingCertResolver>) -> ServerConfig {
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the crypto provider supports the default TLS versions")
        .with_no_client_auth()
        .with_cert_resolver(resolver)
}

/// Reload `resolver` whenever `cert` or `key` change, until `cancel` fires.
///
/// `cert`/`key` should be the paths the resolver was built from. A failed reload is logged at
/// warn and the previous pair keeps serving; if the watcher cannot start, the startup pair serves
/// until restart.
pub async fn watch_and_reload(
    resolver: Arc<ReloadingCertResolver>,
    cert: PathBuf,
    key: PathBuf,
    cancel: CancellationToken,
) {
    let mut watch = match FileWatch::new(&[cert, key], RELOAD_POLL) {
        Ok(watch) => watch,
        Err(err) => {
            error!(error = &err as &dyn std::error::Error, "certificate hot-reload disabled");
            return;
        }
    };
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            alive = watch.changed() => if !alive {
                error!("file watcher stopped; certificate hot-reload disabled");
                return;
            },
        }
        match resolver.reload() {
            Ok(true) => match describe(&resolver.current.load()) {
                Some((serial, not_after)) => info!(%serial, %not_after, "reloaded TLS certificate"),
                None => info!("reloaded TLS certificate"),
            },
            Ok(false) => debug!("TLS files touched but the certificate is unchanged"),
            Err(err) => warn!(error = &err as &dyn std::error::Error, "keeping the previous TLS certificate"),
        }
    }
}

/// Paths written by [`write_dev_certs`].
#[derive(Debug, Clone)]
pub struct DevCerts {
    /// The CA certificate (`ca.crt`), for the webhook `caBundle` or a client trust store.
    pub ca_cert: PathBuf,
    /// The serving certificate (`tls.crt`).
    pub cert: PathBuf,
    /// The serving private key (`tls.key`, mode 0600).
    pub key: PathBuf,
}

/// Generate a throwaway CA (10 years) and a serving cert it signs (1 year), all PEM in memory.
///
/// Returns `(ca_pem, cert_pem, key_pem)`. The serving cert's SANs are `dns` plus `localhost` and
/// the IP `127.0.0.1`, so local port-forwards and tests verify without extra flags.
pub fn generate_ca_and_serving(dns: &[String]) -> Result<(String, String, String), Error> {
    let mut ca_params = dev_params(Vec::new(), "stork development CA", 3650)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(Error::Generate)?)
        .map_err(Error::Generate)?;

    let mut sans = dns.to_vec();
    sans.extend(["localhost", "127.0.0.1"].into_iter().filter(|x| !dns.iter().any(|d| d == x)).map(String::from));
    let mut params = dev_params(sans, "stork webhook", 365)?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().map_err(Error::Generate)?;
    let cert = params.signed_by(&key, &ca).map_err(Error::Generate)?;
    Ok((ca.pem(), cert.pem(), key.serialize_pem()))
}

fn dev_params(sans: Vec<String>, common_name: &str, days: i64) -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::new(sans).map_err(Error::Generate)?;
    params.distinguished_name.push(DnType::CommonName, common_name);
    // Backdated so a node with a slightly slow clock does not reject a fresh cert.
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    params.not_after = params.not_before + time::Duration::days(days);
    Ok(params)
}

/// Write `ca.crt`, `tls.crt` and `tls.key` (mode 0600) into `out` for `stork certs`.
///
/// SANs are as for [`generate_ca_and_serving`]: `dns` plus `localhost` and `127.0.0.1`.
pub fn write_dev_certs(out: &Path, dns: &[String]) -> Result<DevCerts, Error> {
    let (ca_pem, cert_pem, key_pem) = generate_ca_and_serving(dns)?;
    fs::create_dir_all(out).map_err(|source| Error::Write { path: out.to_path_buf(), source })?;
    let certs = DevCerts { ca_cert: out.join("ca.crt"), cert: out.join("tls.crt"), key: out.join("tls.key") };
    write_file(&certs.ca_cert, &ca_pem, 0o644)?;
    write_file(&certs.cert, &cert_pem, 0o644)?;
    write_file(&certs.key, &key_pem, 0o600)?;
    Ok(certs)
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), Error> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt, os::unix::fs::PermissionsExt};
    let wrap = |source| Error::Write { path: path.to_path_buf(), source };
    let mut file =
        fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(path).map_err(wrap)?;
    // `mode` only applies on creation; an existing key file may have been world-readable.
    file.set_permissions(fs::Permissions::from_mode(mode)).map_err(wrap)?;
    file.write_all(contents.as_bytes()).map_err(wrap)
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
