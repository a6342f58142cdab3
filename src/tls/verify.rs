//! X.509 checks for the self-signed mode: which CA in a bundle issued a serving certificate,
//! and when that certificate effectively expires.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rustls::{
    RootCertStore,
    client::{WebPkiServerVerifier, danger::ServerCertVerifier},
    pki_types::{CertificateDer, ServerName, UnixTime},
};

use super::provider;

/// A parsed certificate, as far as renewal cares.
pub(super) struct Parsed {
    pub(super) der: CertificateDer<'static>,
    pub(super) not_after: SystemTime,
    pub(super) is_ca: bool,
}

/// `None` if `der` is not an X.509 certificate.
pub(super) fn parse(der: CertificateDer<'static>) -> Option<Parsed> {
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let secs = cert.validity().not_after.timestamp();
    let not_after = u64::try_from(secs).map_or(UNIX_EPOCH, |secs| UNIX_EPOCH + Duration::from_secs(secs));
    Some(Parsed { not_after, is_ca: cert.is_ca(), der })
}

/// When `chain` (leaf first) stops verifying for `dns`: the earlier of the leaf's `notAfter` and
/// its issuer's, the first CA in `trusted` under which it verifies at `now`.
///
/// The error says why it verifies under none of them (wrong name, expired, unknown issuer).
pub(super) fn serving_expiry(
    chain: &[CertificateDer<'static>],
    trusted: &[CertificateDer<'static>],
    dns: &str,
    now: SystemTime,
) -> Result<SystemTime, String> {
    let leaf = chain.first().ok_or("no certificate")?;
    let name = ServerName::try_from(dns.to_owned()).map_err(|err| err.to_string())?;
    let at = UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap_or_default());
    let mut last_err = String::from("ca.crt trusts no CA");
    // One CA at a time: which one signed it matters, as its expiry caps the leaf's.
    for ca in trusted {
        let mut roots = RootCertStore::empty();
        if roots.add(ca.clone()).is_err() {
            continue;
        }
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|err| err.to_string())?;
        match verifier.verify_server_cert(leaf, &chain[1..], &name, &[], at) {
            Ok(_) => {
                let leaf_expiry = parse(leaf.clone()).map_or(now, |c| c.not_after);
                let ca_expiry = parse(ca.clone()).map_or(now, |c| c.not_after);
                return Ok(leaf_expiry.min(ca_expiry));
            }
            Err(err) => last_err = err.to_string(),
        }
    }
    Err(format!("not valid for {dns} under any CA in ca.crt: {last_err}"))
}
