//! stork's bearer token for an SDK with security enabled: read from a file (re-read when the
//! file changes: Portworx issues short-lived tokens, a mounted Secret changes by symlink swap),
//! or signed by stork itself with the cluster's shared secret, as Stork does.
//!
//! The signing is written here (HS256 over `ring`'s HMAC, which is already in the tree through
//! rustls) rather than taken from a JWT crate: it is one fixed header, one claims object and one
//! MAC, and nothing is ever verified.

use std::{
    path::PathBuf,
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use super::OsdError;

/// Stork's default issuer for the tokens it signs (`PX_JWT_ISSUER` unset).
pub const DEFAULT_ISSUER: &str = "stork.openstorage.io";

/// How long a signed token is valid (Stork: one hour).
const LIFETIME: Duration = Duration::from_secs(3600);
/// A signed token is replaced this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(600);

/// Where the token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `--osd-token-file`.
    TokenFile(PathBuf),
    /// `--osd-shared-secret-file` and `--osd-jwt-issuer`: stork signs its own tokens.
    SharedSecret {
        /// The file holding the secret.
        file: PathBuf,
        /// The issuer the SDK trusts the secret for.
        issuer: String,
    },
}

impl Credentials {
    /// What a refusal names: where the token came from.
    pub fn describe(&self) -> String {
        match self {
            Self::TokenFile(path) => format!("token from --osd-token-file {}", path.display()),
            Self::SharedSecret { file, issuer } => {
                format!(
                    "token signed for issuer {issuer} with the secret in --osd-shared-secret-file {}",
                    file.display()
                )
            }
        }
    }

    fn file(&self) -> (&PathBuf, &'static str) {
        match self {
            Self::TokenFile(path) => (path, "the OpenStorage SDK token from --osd-token-file"),
            Self::SharedSecret { file, .. } => (file, "the shared secret from --osd-shared-secret-file"),
        }
    }
}

/// The file's content as last read, and the token made from it.
#[derive(Debug)]
struct Cached {
    stamp: (SystemTime, u64),
    token: String,
    /// When a signed token must be replaced (`None`: a token from a file, kept until it changes).
    renew_at: Option<SystemTime>,
}

/// The current token, cached until its file changes or a signed one nears expiry.
#[derive(Debug)]
pub struct TokenSource {
    credentials: Credentials,
    cached: Mutex<Option<Cached>>,
}

impl TokenSource {
    /// Reads the file on first use.
    pub fn new(credentials: Credentials) -> Self {
        Self { credentials, cached: Mutex::new(None) }
    }

    /// Where the token comes from.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The token to send now.
    pub fn current(&self) -> Result<String, OsdError> {
        self.current_at(SystemTime::now())
    }

    fn current_at(&self, now: SystemTime) -> Result<String, OsdError> {
        let (path, what) = self.credentials.file();
        let err = |message: String| OsdError::Token { what: format!("{what} {}", path.display()), message };
        let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
        let stamp = (meta.modified().unwrap_or(UNIX_EPOCH), meta.len());
        let mut cached = self.cached.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = cached.as_ref()
            && c.stamp == stamp
            && c.renew_at.is_none_or(|at| now < at)
        {
            return Ok(c.token.clone());
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let content = text.trim();
        if content.is_empty() {
            return Err(err("the file is empty".to_string()));
        }
        let (token, renew_at) = match &self.credentials {
            Credentials::TokenFile(_) => (content.to_string(), None),
            Credentials::SharedSecret { issuer, .. } => {
                (sign(content.as_bytes(), issuer, now), Some(now + LIFETIME - RENEW_BEFORE))
            }
        };
        *cached = Some(Cached { stamp, token: token.clone(), renew_at });
        Ok(token)
    }
}

/// An HS256 JWT for stork as the SDK's shared-secret authenticator expects it: issuer, subject,
/// name, email, the `system.admin` role, valid from a minute ago (clock skew) for an hour.
fn sign(secret: &[u8], issuer: &str, now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let claims = serde_json::json!({
        "iss": issuer,
        "sub": format!("{issuer}.stork"),
        "name": "Stork",
        "email": format!("stork@{issuer}"),
        "roles": ["system.admin"],
        "groups": ["*"],
        "iat": secs.saturating_sub(60),
        "exp": secs + LIFETIME.as_secs(),
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret), input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_is_read_again_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let token = TokenSource::new(Credentials::TokenFile(path.clone()));
        assert!(matches!(token.current(), Err(OsdError::Token { .. })));
        std::fs::write(&path, "first\n").unwrap();
        assert_eq!(token.current().unwrap(), "first");
        std::fs::write(&path, "second-token\n").unwrap();
        assert_eq!(token.current().unwrap(), "second-token");
        std::fs::write(&path, "  \n").unwrap();
        let err = token.current().unwrap_err().to_string();
        assert!(err.contains("--osd-token-file") && err.contains("empty"), "{err}");
    }

    #[test]
    fn a_signed_token_verifies_with_the_secret_and_is_renewed_before_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "s3cret\n").unwrap();
        let source = TokenSource::new(Credentials::SharedSecret { file, issuer: DEFAULT_ISSUER.into() });
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let token = source.current_at(t0).unwrap();
        let (input, tag) = token.rsplit_once('.').unwrap();
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"s3cret");
        ring::hmac::verify(&key, input.as_bytes(), &URL_SAFE_NO_PAD.decode(tag).unwrap())
            .expect("HS256 over the trimmed secret");
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(input.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_eq!(claims["iss"], DEFAULT_ISSUER);
        assert_eq!(claims["roles"], serde_json::json!(["system.admin"]));
        assert_eq!((claims["iat"].as_u64(), claims["exp"].as_u64()), (Some(1_799_999_940), Some(1_800_003_600)));
        // Kept while fresh, replaced ten minutes before it expires.
        assert_eq!(source.current_at(t0 + Duration::from_secs(2999)).unwrap(), token);
        assert_ne!(source.current_at(t0 + Duration::from_secs(3000)).unwrap(), token);
    }
}
