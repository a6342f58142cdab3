//! The gRPC connection to the SDK: a lazily (re)connecting channel, the bearer token
//! ([`super::token`]), per-call deadlines, and gRPC statuses as [`OsdError`]s.

use std::{path::Path, time::Duration};

use tonic::{
    Code, Request,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

use super::{
    proto::{open_storage_node_client::OpenStorageNodeClient, open_storage_volume_client::OpenStorageVolumeClient},
    token::{Credentials, TokenSource},
};

/// Largest SDK answer accepted (gRPC's default is 4 MiB, about 2,000 volumes). Every volume of
/// a large cluster in one answer is tens of MiB; this bound only guards against a runaway one.
const MAX_ANSWER: usize = 256 << 20;

/// Errors talking to the SDK.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OsdError {
    /// The SDK could not be reached or did not answer in time; retrying may help.
    #[error("OpenStorage SDK at {endpoint} is unreachable: {message}")]
    Unreachable {
        /// The URL.
        endpoint: String,
        /// Transport error or gRPC message.
        message: String,
    },
    /// The SDK refused stork's credentials.
    #[error("OpenStorage SDK at {endpoint} refused stork's credentials ({}): {message}", token_hint(.credentials.as_ref()))]
    AuthRejected {
        /// The URL.
        endpoint: String,
        /// Where the token came from, if stork sent one.
        credentials: Option<Credentials>,
        /// The SDK's message.
        message: String,
    },
    /// The token (or the secret to sign one) cannot be read.
    #[error("cannot read {what}: {message}")]
    Token {
        /// What, and from which file.
        what: String,
        /// Why.
        message: String,
    },
    /// The endpoint could not be found or set up (discovery, TLS files).
    #[error("{0}")]
    Setup(String),
    /// The object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request cannot work as given.
    #[error("{0}")]
    Invalid(String),
    /// Any other SDK failure.
    #[error("OpenStorage SDK call {call} failed: {message}")]
    Failed {
        /// The RPC.
        call: &'static str,
        /// The gRPC message.
        message: String,
    },
}

fn token_hint(credentials: Option<&Credentials>) -> String {
    match credentials {
        Some(c) => c.describe(),
        None => {
            "no token: the cluster has security enabled; give one with --osd-token-file or --osd-shared-secret-file"
                .to_string()
        }
    }
}

impl OsdError {
    /// The metric label of the error's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "unreachable",
            Self::AuthRejected { .. } | Self::Token { .. } => "auth",
            Self::Setup(_) => "setup",
            Self::NotFound(_) => "not_found",
            Self::Invalid(_) => "invalid",
            Self::Failed { .. } => "failed",
        }
    }
}

/// A connection to one SDK endpoint. Cheap to clone clients from; the channel reconnects by
/// itself after the server comes back.
#[derive(Debug)]
pub struct SdkClient {
    endpoint: String,
    channel: Channel,
    token: Option<TokenSource>,
    timeout: Duration,
}

impl SdkClient {
    /// A client for `url` (not connected until the first call). Reads the CA file now.
    pub fn new(
        url: &str,
        ca: Option<&Path>,
        credentials: Option<Credentials>,
        timeout: Duration,
    ) -> Result<Self, OsdError> {
        let setup = |what: &str, e: &dyn std::fmt::Display| OsdError::Setup(format!("{what}: {e}"));
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| setup(&format!("OpenStorage SDK endpoint {url}"), &e))?
            .connect_timeout(timeout)
            .tcp_keepalive(Some(Duration::from_secs(30)));
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).map_err(|e| setup(&format!("--osd-ca {}", ca.display()), &e))?;
            let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
            endpoint = endpoint.tls_config(tls).map_err(|e| setup("OpenStorage SDK TLS", &e))?;
        }
        Ok(Self {
            endpoint: url.to_string(),
            channel: endpoint.connect_lazy(),
            token: credentials.map(TokenSource::new),
            timeout,
        })
    }

    /// The URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `msg` with the deadline and the bearer token.
    pub fn request<T>(&self, msg: T) -> Result<Request<T>, OsdError> {
        let mut req = Request::new(msg);
        req.set_timeout(self.timeout);
        if let Some(token) = &self.token {
            let value = format!("bearer {}", token.current()?);
            let value = value.parse().map_err(|_| OsdError::Token {
                what: token.credentials().describe(),
                message: "the token is not a valid header value".to_string(),
            })?;
            req.metadata_mut().insert("authorization", value);
        }
        Ok(req)
    }

    /// The node service.
    pub fn nodes(&self) -> OpenStorageNodeClient<Channel> {
        OpenStorageNodeClient::new(self.channel.clone())
    }

    /// The volume service (volumes and snapshots). Answers may be large: the refresh reads
    /// every volume in one call.
    pub fn volumes(&self) -> OpenStorageVolumeClient<Channel> {
        OpenStorageVolumeClient::new(self.channel.clone()).max_decoding_message_size(MAX_ANSWER)
    }

    /// A failed call as an [`OsdError`].
    pub fn error(&self, call: &'static str, status: &tonic::Status) -> OsdError {
        let message = status.message().to_string();
        match status.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                OsdError::Unreachable { endpoint: self.endpoint.clone(), message }
            }
            Code::Unauthenticated | Code::PermissionDenied => OsdError::AuthRejected {
                endpoint: self.endpoint.clone(),
                credentials: self.token.as_ref().map(|t| t.credentials().clone()),
                message,
            },
            Code::NotFound => OsdError::NotFound(message),
            Code::InvalidArgument | Code::AlreadyExists | Code::FailedPrecondition | Code::OutOfRange => {
                OsdError::Invalid(message)
            }
            _ => OsdError::Failed { call, message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreadable_ca_file_is_named() {
        let err =
            SdkClient::new("https://px:9020", Some(Path::new("/nonexistent/ca.pem")), None, Duration::from_secs(1))
                .unwrap_err()
                .to_string();
        assert!(err.starts_with("--osd-ca /nonexistent/ca.pem:"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, rcgen::generate_simple_self_signed(vec!["px".into()]).unwrap().cert.pem()).unwrap();
        assert!(SdkClient::new("https://px:9020", Some(&ca), None, Duration::from_secs(1)).is_ok());
    }

    #[tokio::test]
    async fn a_rejected_token_names_its_file_and_a_missing_one_says_to_give_one() {
        let token = Some(Credentials::TokenFile("/etc/px/token".into()));
        let with = SdkClient::new("http://127.0.0.1:1", None, token, Duration::from_secs(1)).unwrap();
        let err = with.error("Inspect", &tonic::Status::unauthenticated("token expired"));
        assert_eq!(
            err.to_string(),
            "OpenStorage SDK at http://127.0.0.1:1 refused stork's credentials (token from --osd-token-file /etc/px/token): token expired"
        );
        let without = SdkClient::new("http://127.0.0.1:1", None, None, Duration::from_secs(1)).unwrap();
        let err = without.error("Inspect", &tonic::Status::unauthenticated("missing token")).to_string();
        assert!(err.contains("give one with --osd-token-file"), "{err}");
        assert_eq!(without.error("X", &tonic::Status::unavailable("refused")).kind(), "unreachable");
    }
}
