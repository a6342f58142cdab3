//! Certificates for the local control plane: one CA signing the apiserver's serving cert, the
//! admin client cert (group system:masters) and stork's serving cert; plus the ECDSA key pair
//! that signs service-account tokens.

use std::path::Path;

use anyhow::Result;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// DNS name stork's serving certificate is issued for (the Service the manifests create).
pub const STORK_SERVICE_DNS: &str = "stork-service.kube-system.svc";

fn params(sans: &[&str], cn: &str, org: Option<&str>) -> Result<CertificateParams> {
    let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    p.distinguished_name.push(DnType::CommonName, cn);
    if let Some(o) = org {
        p.distinguished_name.push(DnType::OrganizationName, o);
    }
    p.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    p.not_after = p.not_before + time::Duration::days(30);
    Ok(p)
}

/// Writes `ca.crt`, `apiserver.{crt,key}`, `admin.{crt,key}`, `stork.{crt,key}`,
/// `stork-scheduler.{crt,key}`, `sa.{key,pub}`.
pub fn write_all(dir: &Path) -> Result<()> {
    let mut ca = params(&[], "stork-e2e-ca", None)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    std::fs::write(dir.join("ca.crt"), ca.pem())?;

    let leaf = |name: &str, p: CertificateParams, usage: ExtendedKeyUsagePurpose| -> Result<()> {
        let mut p = p;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        p.extended_key_usages = vec![usage];
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &ca)?;
        std::fs::write(dir.join(format!("{name}.crt")), cert.pem())?;
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem())?;
        Ok(())
    };
    let api_sans = ["localhost", "127.0.0.1", "10.0.0.1", "kubernetes", "kubernetes.default", "kubernetes.default.svc"];
    leaf("apiserver", params(&api_sans, "kube-apiserver", None)?, ExtendedKeyUsagePurpose::ServerAuth)?;
    leaf("admin", params(&[], "admin", Some("system:masters"))?, ExtendedKeyUsagePurpose::ClientAuth)?;
    let stork_sans = [STORK_SERVICE_DNS, "stork-service.kube-system.svc.cluster.local", "localhost", "127.0.0.1"];
    leaf("stork", params(&stork_sans, STORK_SERVICE_DNS, None)?, ExtendedKeyUsagePurpose::ServerAuth)?;
    // The `stork` kube-scheduler's client certificate for the extender (stork runs with
    // `--extender-client-ca ca.crt`).
    leaf("stork-scheduler", params(&[], "stork-scheduler", None)?, ExtendedKeyUsagePurpose::ClientAuth)?;

    let sa = KeyPair::generate()?;
    std::fs::write(dir.join("sa.key"), sa.serialize_pem())?;
    std::fs::write(dir.join("sa.pub"), sa.public_key_pem())?;
    Ok(())
}

/// An admin kubeconfig for `https://127.0.0.1:<port>` referring to the cert files by path.
pub fn write_kubeconfig(dir: &Path, api_port: u16) -> Result<()> {
    let path = |f: &str| dir.join(f).display().to_string();
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: local\n\
         clusters:\n- name: local\n  cluster:\n    server: https://127.0.0.1:{api_port}\n    certificate-authority: {}\n\
         users:\n- name: admin\n  user:\n    client-certificate: {}\n    client-key: {}\n\
         contexts:\n- name: local\n  context: {{cluster: local, user: admin}}\n",
        path("ca.crt"),
        path("admin.crt"),
        path("admin.key"),
    );
    std::fs::write(dir.join("admin.kubeconfig"), text)?;
    Ok(())
}
