//! What the `csi` driver serves: CSI driver names, where their node-plugin pods run, and the
//! node label that holds the rack.

use std::{collections::HashSet, str::FromStr};

use super::selector::LabelSelector;

/// Node label read for the rack by default.
pub const DEFAULT_RACK_LABEL: &str = "stork.libopenstorage.org/rack";
/// Node label read for the rack when the configured one is absent (Portworx clusters set it).
pub const FALLBACK_RACK_LABEL: &str = "px/rack";

/// Why a CSI driver configuration is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `--driver csi` without any `--csi-driver`.
    #[error("the csi driver needs at least one CSI driver name (--csi-driver)")]
    NoDrivers,
    /// An empty or repeated driver name.
    #[error("invalid CSI driver name {0:?}: names must be non-empty and distinct")]
    DriverName(String),
    /// More node-plugin selectors than drivers to pair them with.
    #[error(
        "{plugins} node-plugin selectors for {drivers} CSI drivers: each selector pairs with the driver at its position"
    )]
    TooManyPlugins {
        /// Selectors given.
        plugins: usize,
        /// Drivers given.
        drivers: usize,
    },
    /// A node-plugin selector that does not parse.
    #[error(
        "invalid node-plugin selector {value:?}: {reason} (expected <NAMESPACE>/<LABEL-SELECTOR>, e.g. kube-system/app=csi-node)"
    )]
    Selector {
        /// The text given.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// An empty rack label.
    #[error("the rack label must not be empty")]
    RackLabel,
}

/// Configuration of the `csi` driver.
///
/// `node_plugins` pairs with `drivers` by position: `node_plugins[i]` finds the node-plugin pods
/// of `drivers[i]`. It may be shorter than `drivers`; a driver without a selector is judged on
/// its CSINode entry and the Node's readiness alone. Check with [`CsiConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsiConfig {
    /// CSI driver names (`CSIDriver` names, StorageClass provisioners, `PV.spec.csi.driver`).
    pub drivers: Vec<String>,
    /// Node-plugin pods of each driver, by position.
    pub node_plugins: Vec<NodePluginSelector>,
    /// Node label holding the rack ([`DEFAULT_RACK_LABEL`]); [`FALLBACK_RACK_LABEL`] is read
    /// when a node lacks it.
    pub rack_label: String,
}

impl Default for CsiConfig {
    fn default() -> Self {
        Self { drivers: Vec::new(), node_plugins: Vec::new(), rack_label: DEFAULT_RACK_LABEL.to_string() }
    }
}

impl CsiConfig {
    /// A configuration for these drivers, without node-plugin selectors, with the default rack label.
    pub fn for_drivers<S: Into<String>>(drivers: impl IntoIterator<Item = S>) -> Self {
        Self { drivers: drivers.into_iter().map(Into::into).collect(), ..Self::default() }
    }

    /// Parses `<NAMESPACE>/<LABEL-SELECTOR>` strings (CLI values) into a validated configuration.
    pub fn parse(drivers: Vec<String>, node_plugins: &[String], rack_label: String) -> Result<Self, ConfigError> {
        let node_plugins = node_plugins.iter().map(|s| s.parse()).collect::<Result<Vec<_>, _>>()?;
        let config = Self { drivers, node_plugins, rack_label };
        config.validate()?;
        Ok(config)
    }

    /// Rejects a configuration the driver cannot serve: no drivers, empty or duplicate names,
    /// more selectors than drivers, an empty rack label.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.drivers.is_empty() {
            return Err(ConfigError::NoDrivers);
        }
        let mut seen = HashSet::new();
        if let Some(bad) = self.drivers.iter().find(|d| d.trim().is_empty() || !seen.insert(d.as_str())) {
            return Err(ConfigError::DriverName(bad.clone()));
        }
        if self.node_plugins.len() > self.drivers.len() {
            return Err(ConfigError::TooManyPlugins { plugins: self.node_plugins.len(), drivers: self.drivers.len() });
        }
        if self.rack_label.trim().is_empty() {
            return Err(ConfigError::RackLabel);
        }
        Ok(())
    }

    /// Whether `name` is one of the configured CSI drivers.
    pub fn serves(&self, name: &str) -> bool {
        self.drivers.iter().any(|d| d == name)
    }

    /// Each driver with its node-plugin selector, if any.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, Option<&NodePluginSelector>)> {
        self.drivers.iter().enumerate().map(|(i, d)| (d.as_str(), self.node_plugins.get(i)))
    }
}

/// Where a driver's node-plugin pods are: a namespace and a label selector, written
/// `<NAMESPACE>/<LABEL-SELECTOR>` (`kube-system/app.kubernetes.io/name=csi-node`: the first `/`
/// ends the namespace, so selector keys may have prefixes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePluginSelector {
    /// Namespace of the pods.
    pub namespace: String,
    /// Label selector, as the apiserver takes it (validated).
    pub selector: String,
    parsed: LabelSelector,
}

impl NodePluginSelector {
    /// Whether a pod with these labels is one of the node-plugin pods (the namespace is the
    /// caller's to check).
    pub fn selects(&self, labels: Option<&std::collections::BTreeMap<String, String>>) -> bool {
        self.parsed.matches(labels)
    }
}

impl FromStr for NodePluginSelector {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| ConfigError::Selector { value: s.to_string(), reason: reason.to_string() };
        let Some((namespace, selector)) = s.split_once('/') else {
            return Err(err("no '/' between namespace and selector"));
        };
        let dns_label = namespace.len() <= 63
            && !namespace.starts_with('-')
            && !namespace.ends_with('-')
            && namespace.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if namespace.is_empty() || !dns_label {
            return Err(err("the namespace must be a DNS label (lower-case letters, digits, '-')"));
        }
        let selector = selector.trim();
        if selector.is_empty() {
            // An empty selector would take every pod of the namespace for the node plugin.
            return Err(err("the label selector is empty"));
        }
        let parsed = LabelSelector::parse(selector).map_err(|reason| err(&reason))?;
        Ok(Self { namespace: namespace.to_string(), selector: selector.to_string(), parsed })
    }
}

impl std::fmt::Display for NodePluginSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.selector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selector_splits_at_the_first_slash_so_label_keys_keep_their_prefix() {
        let s: NodePluginSelector = "kube-system/app.kubernetes.io/name=csi-node,tier in (a,b)".parse().unwrap();
        assert_eq!(s.namespace, "kube-system");
        assert_eq!(s.selector, "app.kubernetes.io/name=csi-node,tier in (a,b)");
        assert_eq!(s.to_string(), "kube-system/app.kubernetes.io/name=csi-node,tier in (a,b)");
    }

    #[test]
    fn selectors_without_namespace_or_labels_or_with_bad_syntax_are_rejected_clearly() {
        for (bad, hint) in [
            ("app=csi", "no '/'"),
            ("/app=csi", "DNS label"),
            ("Kube-System/app=csi", "DNS label"),
            ("kube-system/", "empty"),
            ("kube-system/app in (a", "unclosed"),
        ] {
            let e = bad.parse::<NodePluginSelector>().unwrap_err().to_string();
            assert!(e.contains(hint) && e.contains("<NAMESPACE>/<LABEL-SELECTOR>"), "{bad}: {e}");
        }
    }

    #[test]
    fn selectors_pair_with_drivers_by_position_and_may_be_fewer() {
        let c = CsiConfig::parse(vec!["a.csi".into(), "b.csi".into()], &["ns/app=a".into()], "rack".into()).unwrap();
        let pairs: Vec<_> = c.pairs().map(|(d, s)| (d, s.map(|s| s.selector.as_str()))).collect();
        assert_eq!(pairs, [("a.csi", Some("app=a")), ("b.csi", None)]);
        assert!(c.serves("b.csi") && !c.serves("c.csi"));
    }

    #[test]
    fn unusable_configurations_are_rejected() {
        let parse = |d: &[&str], p: &[&str], rack: &str| {
            let plugins: Vec<String> = p.iter().map(|s| s.to_string()).collect();
            CsiConfig::parse(d.iter().map(|s| s.to_string()).collect(), &plugins, rack.into()).unwrap_err()
        };
        assert_eq!(parse(&[], &[], "r"), ConfigError::NoDrivers);
        assert_eq!(parse(&["a", "a"], &[], "r"), ConfigError::DriverName("a".into()));
        assert_eq!(parse(&[""], &[], "r"), ConfigError::DriverName(String::new()));
        assert_eq!(parse(&["a"], &["n/x=1", "n/y=1"], "r"), ConfigError::TooManyPlugins { plugins: 2, drivers: 1 });
        assert_eq!(parse(&["a"], &[], " "), ConfigError::RackLabel);
    }
}
