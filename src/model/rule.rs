//! Stork's `Rule` (`stork.libopenstorage.org/v1alpha1`): commands to run in an application's pods
//! before or after a snapshot. The list sits at the top level of the object (`rules:`), not under
//! `spec`.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The only action type Stork defines.
pub const ACTION_COMMAND: &str = "command";
/// Stands for "wait here until the snapshot is taken" in a background action's command.
pub const WAIT_PLACEHOLDER: &str = "${WAIT_PLACEHOLDER}";

/// A rule: items run in order, each on the pods its selector picks. Stork keeps the list at the
/// top level of the object (`rules:`), so the spec is flattened (`no_spec`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "stork.libopenstorage.org",
    version = "v1alpha1",
    kind = "Rule",
    plural = "rules",
    namespaced,
    no_spec,
    derive = "PartialEq",
    shortname = "rule"
)]
pub struct RuleSpec {
    /// What to run, in order.
    #[serde(default)]
    pub rules: Vec<RuleItem>,
}

/// One item of a rule: a pod selector and the actions to run in the selected pods.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleItem {
    /// Labels a pod must all carry to be selected (equality).
    #[serde(default)]
    pub pod_selector: BTreeMap<String, String>,
    /// The container to run in when a pod has several; default: the pod's first.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container: String,
    /// The actions, in order.
    #[serde(default)]
    pub actions: Vec<RuleAction>,
}

fn command() -> String {
    ACTION_COMMAND.into()
}

/// One action of a rule item.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleAction {
    /// `command`, the only type.
    // A missing type is a command: the API server fills the default in, and the schema allows
    // nothing else.
    #[serde(rename = "type", default = "command")]
    #[schemars(extend("enum" = ["command"]))]
    pub type_: String,
    /// Keep running while the snapshot is taken; `${WAIT_PLACEHOLDER}` marks where the command
    /// waits. Not allowed in a post-snapshot rule.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub background: bool,
    /// Run in the first selected pod only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub run_in_single_pod: bool,
    /// The command, run as `sh -c <value>`.
    #[serde(default)]
    pub value: String,
}

impl Rule {
    /// A rule named `name` in `namespace` with these items (tests and examples).
    pub fn with_items(namespace: &str, name: &str, rules: Vec<RuleItem>) -> Self {
        let mut rule = Rule::new(name, RuleSpec { rules });
        rule.metadata.namespace = Some(namespace.into());
        rule
    }

    /// The items.
    pub fn items(&self) -> &[RuleItem] {
        &self.spec.rules
    }
}

/// The `rules.stork.libopenstorage.org` CRD, with `rules` at the top level of the object.
pub fn crd() -> CustomResourceDefinition {
    Rule::crd()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stork_rule_in_yaml_decodes_with_its_list_at_the_top_level() {
        let rule: Rule = serde_saphyr::from_str(include_str!("../../tests/data/rules/mysql-presnap.yaml")).unwrap();
        assert_eq!(rule.metadata.name.as_deref(), Some("mysql-presnap"));
        let [item] = rule.items() else { panic!("one item: {rule:?}") };
        assert_eq!(item.pod_selector["app"], "mysql");
        assert_eq!(item.container, "mysql");
        assert!(item.actions[0].background);
        assert!(item.actions[0].value.contains(WAIT_PLACEHOLDER));
    }

    #[test]
    fn the_crd_puts_rules_at_the_top_level_and_allows_only_command_actions() {
        let crd = crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("rules.stork.libopenstorage.org"));
        let schema = crd.spec.versions[0].schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap();
        let props = schema.properties.as_ref().unwrap();
        assert!(!props.contains_key("spec"));
        let json = serde_json::to_value(&props["rules"]).unwrap();
        assert_eq!(
            json["items"]["properties"]["actions"]["items"]["properties"]["type"]["enum"],
            serde_json::json!(["command"])
        );
    }
}
