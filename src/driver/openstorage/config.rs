//! How stork reaches the OpenStorage SDK: the endpoint (given, or discovered from a Service as
//! Stork does), TLS, the bearer-token file and timings.

use std::{path::PathBuf, time::Duration};

use k8s_openapi::api::core::v1::Service;

/// Provisioners and CSI driver names of Portworx volumes (in-tree, CSI, and the deprecated
/// CSI name Stork still accepts).
pub const PROVISIONERS: [&str; 3] = ["kubernetes.io/portworx-volume", "pxd.portworx.com", "com.openstorage.pxd"];

/// Name prefix of Portworx's CSI controller pods (Stork's `px-csi-ext`).
pub const CSI_POD_PREFIX: &str = "px-csi-ext";

/// The Service Stork discovers the SDK through, and its SDK port's name.
pub const DEFAULT_SERVICE: &str = "kube-system/portworx-service";
/// Name of the SDK port on [`DEFAULT_SERVICE`].
pub const DEFAULT_PORT_NAME: &str = "px-sdk";

/// Errors in the driver's flags or in discovery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `--osd-endpoint` is not `host:port` or an `http(s)://host:port` URL.
    #[error("--osd-endpoint {0:?} is not host:port, http://host:port or https://host:port")]
    Endpoint(String),
    /// `https://` without a CA to verify the server with.
    #[error("--osd-endpoint {0} is https: name the CA that signed the server's certificate with --osd-ca")]
    HttpsWithoutCa(String),
    /// `--osd-service` is not `namespace/name`.
    #[error("--osd-service {0:?} is not NAMESPACE/NAME")]
    Service(String),
    /// The Service has no port of that name.
    #[error("service {service} has no port named {port:?} (ports: {found})")]
    NoPort {
        /// `namespace/name`.
        service: String,
        /// The port name looked for.
        port: String,
        /// The names it has.
        found: String,
    },
}

/// Where the SDK listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointSource {
    /// `--osd-endpoint`, normalised to a URL.
    Given(String),
    /// Discovered from a Service's named port.
    Service {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Port name.
        port: String,
    },
}

/// The `openstorage` driver's settings.
#[derive(Debug, Clone)]
pub struct OsdConfig {
    /// Where the SDK is.
    pub endpoint: EndpointSource,
    /// CA bundle (PEM) to verify the SDK's TLS certificate; TLS is on when set.
    pub ca: Option<PathBuf>,
    /// Where the bearer token comes from, on a cluster with security enabled.
    pub credentials: Option<super::Credentials>,
    /// How often nodes and volumes are read.
    pub poll_interval: Duration,
    /// Deadline of each SDK call.
    pub call_timeout: Duration,
    /// Node label holding the rack when the SDK reports none (Stork's `px/rack`).
    pub rack_label: String,
}

impl OsdConfig {
    /// Settings from the flags: `endpoint` wins over `service`.
    pub fn new(endpoint: Option<&str>, service: &str, port: &str, ca: Option<PathBuf>) -> Result<Self, ConfigError> {
        let endpoint = match endpoint {
            Some(given) => {
                let url = normalise(given)?;
                if url.starts_with("https://") && ca.is_none() {
                    return Err(ConfigError::HttpsWithoutCa(url));
                }
                EndpointSource::Given(url)
            }
            None => {
                let (namespace, name) = service
                    .split_once('/')
                    .filter(|(ns, n)| !ns.is_empty() && !n.is_empty() && !n.contains('/'))
                    .ok_or_else(|| ConfigError::Service(service.to_string()))?;
                EndpointSource::Service { namespace: namespace.into(), name: name.into(), port: port.into() }
            }
        };
        Ok(Self {
            endpoint,
            ca,
            credentials: None,
            poll_interval: Duration::from_secs(10),
            call_timeout: Duration::from_secs(10),
            rack_label: "px/rack".into(),
        })
    }

    /// Whether the connection uses TLS.
    pub fn tls(&self) -> bool {
        self.ca.is_some()
    }

    /// The scheme for an endpoint built from a Service.
    fn scheme(&self) -> &'static str {
        if self.tls() { "https" } else { "http" }
    }

    /// The SDK URL a Service leads to: its cluster DNS name and the named port, as Stork builds
    /// it (`<name>.<namespace>:<port>`).
    pub fn url_from_service(&self, svc: &Service, port_name: &str) -> Result<String, ConfigError> {
        let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
        let name = svc.metadata.name.as_deref().unwrap_or_default();
        let ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref());
        let port = ports.into_iter().flatten().find(|p| p.name.as_deref() == Some(port_name));
        match port {
            Some(p) => Ok(format!("{}://{name}.{ns}:{}", self.scheme(), p.port)),
            None => Err(ConfigError::NoPort {
                service: format!("{ns}/{name}"),
                port: port_name.to_string(),
                found: ports.into_iter().flatten().filter_map(|p| p.name.clone()).collect::<Vec<_>>().join(", "),
            }),
        }
    }
}

/// `host:port` → `http://host:port`; URLs are kept (without a trailing slash).
fn normalise(given: &str) -> Result<String, ConfigError> {
    let bad = || ConfigError::Endpoint(given.to_string());
    let given = given.trim().trim_end_matches('/');
    let (scheme, rest) = match given.split_once("://") {
        Some((s @ ("http" | "https"), rest)) => (s, rest),
        Some(_) => return Err(bad()),
        None => ("http", given),
    };
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || rest.contains('/') || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(format!("{scheme}://{rest}"))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};

    use super::*;

    #[test]
    fn endpoints_are_host_port_or_http_urls() {
        let url = |e: &str| OsdConfig::new(Some(e), DEFAULT_SERVICE, DEFAULT_PORT_NAME, None).map(|c| c.endpoint);
        assert_eq!(url("127.0.0.1:9100"), Ok(EndpointSource::Given("http://127.0.0.1:9100".into())));
        assert_eq!(url("http://px.example:9020/"), Ok(EndpointSource::Given("http://px.example:9020".into())));
        for bad in ["px", "px:", "px:port", "ftp://px:1", "http://px:1/path", ":9020"] {
            assert!(matches!(url(bad), Err(ConfigError::Endpoint(_))), "{bad}");
        }
        assert!(matches!(url("https://px:9020"), Err(ConfigError::HttpsWithoutCa(_))));
        let tls = OsdConfig::new(Some("https://px:9020"), DEFAULT_SERVICE, DEFAULT_PORT_NAME, Some("ca.pem".into()));
        assert!(tls.is_ok_and(|c| c.tls()));
    }

    #[test]
    fn without_an_endpoint_the_sdk_port_of_the_portworx_service_is_used() {
        let config = OsdConfig::new(None, DEFAULT_SERVICE, DEFAULT_PORT_NAME, None).unwrap();
        let EndpointSource::Service { namespace, name, port } = &config.endpoint else { panic!("{config:?}") };
        assert_eq!((namespace.as_str(), name.as_str(), port.as_str()), ("kube-system", "portworx-service", "px-sdk"));
        let port = |name: &str, port| ServicePort { name: Some(name.into()), port, ..ServicePort::default() };
        let mut svc = Service {
            spec: Some(ServiceSpec {
                ports: Some(vec![port("px-api", 9001), port("px-sdk", 9020)]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        };
        svc.metadata.name = Some("portworx-service".into());
        svc.metadata.namespace = Some("kube-system".into());
        assert_eq!(config.url_from_service(&svc, "px-sdk"), Ok("http://portworx-service.kube-system:9020".into()));
        let err = config.url_from_service(&svc, "px-sdk-tls").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"service kube-system/portworx-service has no port named "px-sdk-tls" (ports: px-api, px-sdk)"#
        );
        for bad in ["portworx-service", "/x", "a/", "a/b/c"] {
            assert!(OsdConfig::new(None, bad, DEFAULT_PORT_NAME, None).is_err(), "{bad}");
        }
    }
}
