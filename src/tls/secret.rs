//! The Secret of the self-signed mode: type `kubernetes.io/tls` with `tls.crt` and `tls.key`,
//! plus `ca.crt` (the trusted CAs, signer first) and `ca.key` so any replica can renew.

use std::{collections::BTreeMap, fmt};

use base64::Engine as _;
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::api::ObjectMeta;

const TLS_CERT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";
const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const CLIENT_CERT: &str = "client.crt";
const CLIENT_KEY: &str = "client.key";

/// The PEM blobs kept in the Secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Material {
    /// `ca.crt`: the CA that signs new serving certificates first, then older CAs that are still
    /// trusted while a rotation completes. This is exactly the webhooks' `caBundle`.
    pub ca_bundle: String,
    /// `ca.key`: the key of the first CA in `ca_bundle`.
    pub ca_key: String,
    /// `tls.crt`: the serving certificate.
    pub cert: String,
    /// `tls.key`: its key.
    pub key: String,
    /// `client.crt`: the `stork` kube-scheduler's client certificate for the extender, signed
    /// with the serving certificate (the scheduler mounts it with `ca.crt`, never `ca.key`).
    pub client_cert: String,
    /// `client.key`: its key.
    pub client_key: String,
}

impl fmt::Debug for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not derived: keys must never reach a log line.
        f.debug_struct("Material").field("ca_bundle", &self.ca_bundle).field("cert", &self.cert).finish_non_exhaustive()
    }
}

impl Material {
    /// The Secret's PEM blobs; a missing or non-UTF-8 entry reads as empty, which renewal repairs.
    pub fn from_secret(secret: &Secret) -> Self {
        let get = |key: &str| {
            let bytes = secret.data.as_ref().and_then(|data| data.get(key));
            bytes.and_then(|b| String::from_utf8(b.0.clone()).ok()).unwrap_or_default()
        };
        Self {
            ca_bundle: get(CA_CERT),
            ca_key: get(CA_KEY),
            cert: get(TLS_CERT),
            key: get(TLS_KEY),
            client_cert: get(CLIENT_CERT),
            client_key: get(CLIENT_KEY),
        }
    }

    /// The Secret's `data`.
    pub fn to_data(&self) -> BTreeMap<String, ByteString> {
        [
            (TLS_CERT, &self.cert),
            (TLS_KEY, &self.key),
            (CA_CERT, &self.ca_bundle),
            (CA_KEY, &self.ca_key),
            (CLIENT_CERT, &self.client_cert),
            (CLIENT_KEY, &self.client_key),
        ]
        .into_iter()
        .map(|(key, pem)| (key.to_owned(), ByteString(pem.clone().into_bytes())))
        .collect()
    }

    /// A new Secret `namespace/name` holding this.
    pub fn to_secret(&self, namespace: &str, name: &str) -> Secret {
        let labels = [("app.kubernetes.io/name", "stork"), ("app.kubernetes.io/managed-by", "stork")];
        Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                labels: Some(labels.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()),
                ..ObjectMeta::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(self.to_data()),
            ..Secret::default()
        }
    }
}

/// PEM text of one certificate, 64 base64 characters per line.
pub(super) fn pem_encode(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::{CertificateDer, pem::PemObject};

    use super::*;

    #[test]
    fn secret_contents_round_trip_and_missing_keys_read_as_empty() {
        let material = Material {
            ca_bundle: "ca".into(),
            ca_key: "cakey".into(),
            cert: "crt".into(),
            key: "key".into(),
            client_cert: "ccrt".into(),
            client_key: "ckey".into(),
        };

        let secret = material.to_secret("ns", "tls");

        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        assert_eq!(Material::from_secret(&secret), material);
        let keys: Vec<_> = secret.data.unwrap().into_keys().collect();
        assert_eq!(keys, ["ca.crt", "ca.key", "client.crt", "client.key", "tls.crt", "tls.key"]);
        assert_eq!(Material::from_secret(&Secret::default()), Material::default());
    }

    #[test]
    fn pem_encoding_round_trips_through_the_parser() {
        let (ca, _, _) = crate::tls::generate_ca_and_serving(&["a.test".into()]).unwrap();
        let der = CertificateDer::from_pem_slice(ca.as_bytes()).unwrap();

        assert_eq!(pem_encode(&der), ca);
    }
}
