//! The self-signed mode's decisions, free of I/O: whether a Secret's certificates are usable,
//! what to renew, and which CAs the webhooks' `caBundle` must trust.
//!
//! A CA is replaced in steps so that no admission request meets a certificate its caller does
//! not trust yet. When the CA comes within *twice* renew-before of expiry, a successor goes
//! first in the bundle, but whatever is issued in that same step is still signed by the old CA.
//! A serving certificate under the old CA is reissued under the successor once it is due, which
//! is at the latest renew-before later, as the old CA's expiry caps its own. By then every
//! replica and the apiserver have long picked up the bundle holding both CAs. The old CA leaves
//! the bundle when it expires.

use std::{
    fmt,
    time::{Duration, SystemTime},
};

use rustls::pki_types::{CertificateDer, pem::PemObject};

pub use super::secret::Material;
use super::{Error, Issued, issue_ca, issue_client, issue_serving, parse_pair, secret::pem_encode, verify};

const DAY: u64 = 24 * 60 * 60;
/// How long a CA issued here is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(3650 * DAY);
/// How long a serving certificate issued here is valid.
pub const SERVING_VALIDITY: Duration = Duration::from_secs(365 * DAY);
/// Common name of the CAs issued here.
const CA_NAME: &str = "stork webhook CA";
/// Common name of the `stork` kube-scheduler's client certificate.
pub const SCHEDULER_CLIENT_NAME: &str = "stork-scheduler";

/// What the serving certificate must satisfy, and how early to renew.
#[derive(Debug, Clone)]
pub struct Policy {
    sans: Vec<String>,
    renew_before: Duration,
}

impl Policy {
    /// Certificates for Service `service` in `namespace`, renewed `renew_before` ahead of expiry.
    ///
    /// `renew_before` may exceed the serving validity (every check then renews: useful to test
    /// rotation), but must stay under half the CA validity, or every CA would be due as soon as
    /// it is issued.
    pub fn new(service: &str, namespace: &str, renew_before: Duration) -> Result<Self, Error> {
        if renew_before.is_zero() || renew_before >= CA_VALIDITY / 2 {
            return Err(Error::RenewBefore(renew_before));
        }
        let sans = vec![
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
            format!("{service}.{namespace}"),
            service.to_owned(),
        ];
        Ok(Self { sans, renew_before })
    }

    /// The name the apiserver verifies: `<service>.<namespace>.svc`.
    pub fn service_dns(&self) -> &str {
        &self.sans[0]
    }
}

/// Why the Secret's contents are rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// No usable CA: missing, unparsable, expired, not a CA, or `ca.key` does not match it.
    CaUnusable(String),
    /// The CA expires within twice renew-before; a successor takes over signing.
    CaExpiring,
    /// No usable serving pair: missing, unparsable, key mismatch, wrong name, or no trusted issuer.
    ServingUnusable(String),
    /// The serving certificate, or the CA that signed it, expires within renew-before.
    ServingExpiring,
    /// The bundle holds expired, duplicate or unparsable entries.
    BundleStale,
    /// No usable scheduler client pair (missing, unparsable, key mismatch) or it is due.
    ClientUnusable(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CaUnusable(why) => write!(f, "CA unusable: {why}"),
            Self::CaExpiring => f.write_str("CA due for renewal"),
            Self::ServingUnusable(why) => write!(f, "serving certificate unusable: {why}"),
            Self::ServingExpiring => f.write_str("serving certificate due for renewal"),
            Self::BundleStale => f.write_str("CA bundle holds expired or duplicate entries"),
            Self::ClientUnusable(why) => write!(f, "scheduler client certificate unusable: {why}"),
        }
    }
}

/// What [`assess`] found wrong with a Secret's contents; all `None`/`false` means usable as is.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Assessment {
    /// Why a new CA must take over signing, if it must.
    pub ca: Option<Reason>,
    /// Why the serving pair must be reissued, if it must.
    pub serving: Option<Reason>,
    /// Whether the bundle must be rewritten without some entries.
    pub prune: bool,
    /// Why the scheduler's client pair must be reissued, if it must.
    pub client: Option<Reason>,
    /// The bundle's CAs still worth trusting, in order.
    trusted: Vec<CertificateDer<'static>>,
}

impl Assessment {
    /// Nothing to write: serve the contents as they are.
    pub fn is_usable(&self) -> bool {
        self.ca.is_none() && self.serving.is_none() && !self.prune && self.client.is_none()
    }
}

/// The outcome of [`plan`].
#[derive(Debug)]
pub enum Plan {
    /// The contents are usable as they are.
    Keep,
    /// Write `material` back, for `reasons`.
    Write {
        /// The renewed contents.
        material: Material,
        /// What was wrong (at least one entry).
        reasons: Vec<Reason>,
    },
}

/// Decide, without changing anything, whether `current` can be served at `now`.
pub fn assess(current: &Material, policy: &Policy, now: SystemTime) -> Assessment {
    let mut out = Assessment::default();
    let entries: Vec<_> = CertificateDer::pem_slice_iter(current.ca_bundle.as_bytes()).collect();
    for der in entries.iter().filter_map(|e| e.as_ref().ok()) {
        match verify::parse(der.clone().into_owned()) {
            Some(ca) if ca.is_ca && ca.not_after > now && !out.trusted.contains(&ca.der) => out.trusted.push(ca.der),
            _ => out.prune = true,
        }
    }
    out.prune |= entries.iter().any(Result::is_err);

    let first = entries.first().and_then(|e| e.as_ref().ok()).map(|der| (der, verify::parse(der.clone().into_owned())));
    out.ca = match first {
        None => Some(Reason::CaUnusable("ca.crt holds no certificate".into())),
        Some((_, None)) => Some(Reason::CaUnusable("the first certificate in ca.crt does not parse".into())),
        Some((_, Some(ca))) if !ca.is_ca => {
            Some(Reason::CaUnusable("the first certificate in ca.crt is not a CA".into()))
        }
        Some((_, Some(ca))) if ca.not_after <= now => Some(Reason::CaUnusable("the CA has expired".into())),
        Some((der, Some(ca))) => {
            let pem = pem_encode(der);
            match parse_pair(pem.as_bytes(), current.ca_key.as_bytes(), "ca.crt".as_ref(), "ca.key".as_ref()) {
                Err(err) => Some(Reason::CaUnusable(error_chain(&err))),
                Ok(_) if due(ca.not_after, now, 2 * policy.renew_before) => Some(Reason::CaExpiring),
                Ok(_) => None,
            }
        }
    };
    out.serving = assess_serving(current, policy, &out.trusted, now).err();
    out.client = assess_client(current, policy, now).err();
    out
}

/// `Ok` if the scheduler's client pair parses, matches and is not due.
fn assess_client(current: &Material, policy: &Policy, now: SystemTime) -> Result<(), Reason> {
    let pair = parse_pair(
        current.client_cert.as_bytes(),
        current.client_key.as_bytes(),
        "client.crt".as_ref(),
        "client.key".as_ref(),
    )
    .map_err(|err| Reason::ClientUnusable(error_chain(&err)))?;
    let leaf = pair.cert.first().and_then(|der| verify::parse(der.clone().into_owned()));
    let leaf = leaf.ok_or_else(|| Reason::ClientUnusable("client.crt does not parse".into()))?;
    if due(leaf.not_after, now, policy.renew_before) {
        return Err(Reason::ClientUnusable("due for renewal".into()));
    }
    Ok(())
}

/// `Ok` if the serving pair is usable and not due; the reason otherwise.
fn assess_serving(
    current: &Material,
    policy: &Policy,
    trusted: &[CertificateDer<'static>],
    now: SystemTime,
) -> Result<(), Reason> {
    let pair = parse_pair(current.cert.as_bytes(), current.key.as_bytes(), "tls.crt".as_ref(), "tls.key".as_ref())
        .map_err(|err| Reason::ServingUnusable(error_chain(&err)))?;
    let expiry =
        verify::serving_expiry(&pair.cert, trusted, policy.service_dns(), now).map_err(Reason::ServingUnusable)?;
    if due(expiry, now, policy.renew_before) { Err(Reason::ServingExpiring) } else { Ok(()) }
}

fn due(not_after: SystemTime, now: SystemTime, renew_before: Duration) -> bool {
    not_after <= now + renew_before
}

/// Decide what to write back, issuing a new CA and/or serving certificate as needed.
///
/// An empty `current` (no Secret yet) yields a fresh CA and serving certificate.
pub fn plan(current: &Material, policy: &Policy, now: SystemTime) -> Result<Plan, Error> {
    let assessment = assess(current, policy, now);
    if assessment.is_usable() {
        return Ok(Plan::Keep);
    }
    let Assessment { ca, serving, prune, client, mut trusted } = assessment;
    let handover = ca == Some(Reason::CaExpiring);
    let mut next = current.clone();
    // A due (but still valid) CA signs one last serving certificate, even one not due yet: that
    // certificate expires with the CA, so its successor sits in the published bundle for about
    // renew-before before anything is served under it.
    let old_signer = Issued { cert: current.ca_bundle.clone(), key: current.ca_key.clone() };
    if ca.is_some() {
        let new_ca = issue_ca(CA_NAME, now, CA_VALIDITY)?;
        let der = CertificateDer::from_pem_slice(new_ca.cert.as_bytes())
            .map_err(|source| Error::Pem { path: "new ca.crt".into(), source })?;
        trusted.insert(0, der);
        next.ca_key = new_ca.key;
    }
    // Re-encoding an untouched bundle could change its bytes and cause a pointless write.
    if ca.is_some() || prune {
        next.ca_bundle = trusted.iter().map(|der| pem_encode(der)).collect();
    }
    // A client pair reissued with the serving one is not a reason of its own.
    let reissue_serving = serving.is_some() || handover;
    let client = if reissue_serving { None } else { client };
    if reissue_serving {
        let signer =
            if handover { old_signer } else { Issued { cert: next.ca_bundle.clone(), key: next.ca_key.clone() } };
        let issued = issue_serving(&signer, &policy.sans, now, SERVING_VALIDITY)?;
        (next.cert, next.key) = (issued.cert, issued.key);
        // Issued with the serving certificate, by the same CA: both leave the old CA together.
        let client = issue_client(&signer, SCHEDULER_CLIENT_NAME, now, SERVING_VALIDITY)?;
        (next.client_cert, next.client_key) = (client.cert, client.key);
    } else if client.is_some() {
        let signer = Issued { cert: next.ca_bundle.clone(), key: next.ca_key.clone() };
        let issued = issue_client(&signer, SCHEDULER_CLIENT_NAME, now, SERVING_VALIDITY)?;
        (next.client_cert, next.client_key) = (issued.cert, issued.key);
    }
    let reasons = ca.into_iter().chain(serving).chain(prune.then_some(Reason::BundleStale)).chain(client).collect();
    Ok(Plan::Write { material: next, reasons })
}

/// An error and its sources on one line, for a [`Reason`].
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
#[path = "renewal_tests.rs"]
mod tests;
