//! Certificate issuance with rcgen: a CA, and serving certificates it signs. Used by the
//! self-signed mode (CA kept in a Secret) and by `stork certs` (files for development).

use std::{
    fmt, fs,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::Error;

/// Certificates start this long before they are issued, so a node with a slightly slow clock
/// does not reject a fresh one.
const CLOCK_SKEW: time::Duration = time::Duration::hours(1);
const DAY: u64 = 24 * 60 * 60;

/// A certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    /// The certificate.
    pub cert: String,
    /// The PKCS#8 private key.
    pub key: String,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not derived: the key must never reach a log line.
        f.debug_struct("Issued").field("cert", &self.cert).finish_non_exhaustive()
    }
}

/// Issue a self-signed CA named `common_name`, valid for `validity` from `now`.
///
/// Path length 0: it signs serving certificates only, never another CA.
pub fn issue_ca(common_name: &str, now: SystemTime, validity: Duration) -> Result<Issued, Error> {
    let mut params = params(Vec::new(), common_name, now, validity)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().map_err(Error::Generate)?;
    let ca = CertifiedIssuer::self_signed(params, key).map_err(Error::Generate)?;
    Ok(Issued { cert: ca.pem(), key: ca.key().serialize_pem() })
}

/// Issue a serving certificate for `sans` (the first is also the common name), signed by `ca`.
///
/// `ca.cert` may be a bundle: the first certificate is the issuer, and `ca.key` must be its key.
/// A SAN that parses as an IP address becomes an IP SAN.
pub fn issue_serving(ca: &Issued, sans: &[String], now: SystemTime, validity: Duration) -> Result<Issued, Error> {
    let ca_key = KeyPair::from_pem(&ca.key).map_err(Error::Generate)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key).map_err(Error::Generate)?;
    let common_name = sans.first().map_or("stork webhook", String::as_str);
    let mut params = params(sans.to_vec(), common_name, now, validity)?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().map_err(Error::Generate)?;
    let cert = params.signed_by(&key, &issuer).map_err(Error::Generate)?;
    Ok(Issued { cert: cert.pem(), key: key.serialize_pem() })
}

/// Issue a client certificate named `common_name` (the `stork` kube-scheduler's, for
/// `--extender-client-ca`), signed by `ca` as in [`issue_serving`].
pub fn issue_client(ca: &Issued, common_name: &str, now: SystemTime, validity: Duration) -> Result<Issued, Error> {
    let ca_key = KeyPair::from_pem(&ca.key).map_err(Error::Generate)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key).map_err(Error::Generate)?;
    let mut params = params(Vec::new(), common_name, now, validity)?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().map_err(Error::Generate)?;
    let cert = params.signed_by(&key, &issuer).map_err(Error::Generate)?;
    Ok(Issued { cert: cert.pem(), key: key.serialize_pem() })
}

fn params(
    sans: Vec<String>,
    common_name: &str,
    now: SystemTime,
    validity: Duration,
) -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::new(sans).map_err(Error::Generate)?;
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.not_before = time::OffsetDateTime::from(now) - CLOCK_SKEW;
    params.not_after = time::OffsetDateTime::from(now + validity);
    Ok(params)
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
    let now = SystemTime::now();
    let ca = issue_ca("stork development CA", now, Duration::from_secs(3650 * DAY))?;
    let mut sans = dns.to_vec();
    sans.extend(["localhost", "127.0.0.1"].into_iter().filter(|x| !dns.iter().any(|d| d == x)).map(String::from));
    let serving = issue_serving(&ca, &sans, now, Duration::from_secs(365 * DAY))?;
    Ok((ca.cert, serving.cert, serving.key))
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
