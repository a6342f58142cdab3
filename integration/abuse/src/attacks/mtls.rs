//! Attack 8, extender mTLS: a second stork started with `--extender-client-ca` (a CA made here,
//! which also signs a client certificate with the clientAuth usage).
//!
//! Asserted: over HTTPS, `/filter` and `/prioritize` without a client certificate get 401 or
//! 403, and 200 with the certificate; `/mutate` without one gets 200 (the apiserver presents no
//! certificate); `stork serve --help` says the plain `--extender-listen` listener is for loopback.

use std::{path::Path, process::Command, sync::Arc, time::Duration};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, pem::PemObject},
};
use stork_bench::stork::Extra;

use crate::{
    client::{Endpoint, Request},
    fixtures,
    harness::Ctx,
    report::Outcome,
};

/// A client CA (written as PEM to `ca_path`) and a client certificate it signed, as a TLS client
/// that trusts `server_ca`.
fn client_with_certificate(ca_path: &Path, server_ca: &Path) -> anyhow::Result<Arc<ClientConfig>> {
    let mut ca = CertificateParams::new(Vec::new())?;
    ca.distinguished_name.push(DnType::CommonName, "stork-abuse client CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    std::fs::write(ca_path, ca.pem()).with_context(|| format!("writing {}", ca_path.display()))?;
    let mut leaf = CertificateParams::new(Vec::new())?;
    leaf.distinguished_name.push(DnType::CommonName, "kube-scheduler");
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate()?;
    let cert = leaf.signed_by(&key, &ca)?;
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(server_ca)? {
        roots.add(c?)?;
    }
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert.der().clone()], key)?;
    Ok(Arc::new(config))
}

/// The `--extender-listen` paragraph of `stork serve --help`.
fn extender_listen_help(bin: &Path) -> anyhow::Result<String> {
    let help = Command::new(bin).args(["serve", "--help"]).output().context("running stork serve --help")?;
    let text = String::from_utf8_lossy(&help.stdout);
    let mut lines = text.lines().skip_while(|l| !l.trim_start().starts_with("--extender-listen"));
    let first = lines.next().context("stork serve --help has no --extender-listen")?;
    let rest = lines.take_while(|l| !l.trim_start().starts_with('-'));
    Ok(std::iter::once(first).chain(rest).map(str::trim).collect::<Vec<_>>().join(" "))
}

/// Runs the attack.
pub fn run(ctx: &Ctx, out: &mut Outcome) -> anyhow::Result<()> {
    match extender_listen_help(&ctx.bin) {
        Ok(help) => {
            out.figure("extender_listen_help", help.clone());
            out.check(help.to_lowercase().contains("loopback"), || {
                format!("`stork serve --help` does not say --extender-listen is for loopback use: {help:?}")
            });
        }
        Err(e) => out.fail(format!("{e:#}")),
    }
    let dir = ctx.dir("mtls")?;
    let ca = dir.join("client-ca.crt");
    let with_cert = client_with_certificate(&ca, &ctx.ca)?;
    let extra = Extra { args: vec!["--extender-client-ca".into(), ca.display().to_string()], ..Extra::default() };
    let target = match ctx.start_seed("mtls", &extra) {
        Ok(t) => t,
        Err(e) => {
            // The first line says how stork ended, a later one (clap's) which flag it refused.
            let reason = format!("{e:#}");
            let mut lines = reason.lines();
            let ended = lines.next().unwrap_or_default();
            let error = lines.find(|l| l.contains("error")).unwrap_or_default();
            out.fail(format!("stork did not start with --extender-client-ca: {ended} {}", error.trim()));
            return Ok(());
        }
    };
    let anonymous = &target.https;
    let authenticated = Endpoint { addr: target.https.addr, tls: Some(with_cert) };
    let status = |endpoint: &Endpoint, path: &str, body: &[u8]| {
        endpoint
            .exchange(&Request::post(path, body), Duration::from_secs(10))
            .map(|r| r.status)
            .map_err(|e| e.to_string())
    };
    for path in ["/filter", "/prioritize"] {
        let args = if path == "/filter" { fixtures::FILTER_ARGS } else { fixtures::PRIORITIZE_ARGS };
        let without = status(anonymous, path, args.as_bytes());
        let with = status(&authenticated, path, args.as_bytes());
        out.figure(format!("{path} without a client certificate"), format!("{without:?}"));
        out.figure(format!("{path} with the client certificate"), format!("{with:?}"));
        out.check(matches!(without, Ok(401 | 403)), || {
            format!("HTTPS {path} without a client certificate: {without:?} (want 401 or 403)")
        });
        out.check(with == Ok(200), || format!("HTTPS {path} with a valid client certificate: {with:?} (want 200)"));
    }
    let review = fixtures::pod_review("abuse-mtls");
    let mutate = status(anonymous, "/mutate", &review);
    out.figure("/mutate without a client certificate", format!("{mutate:?}"));
    out.check(mutate == Ok(200), || {
        format!("HTTPS /mutate without a client certificate: {mutate:?} (want 200: the webhook paths stay open)")
    });
    target.finish(ctx, out, "the extender mTLS check");
    Ok(())
}
