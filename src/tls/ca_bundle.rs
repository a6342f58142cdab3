//! Keeping `caBundle` current on every webhook of stork's Mutating- and
//! ValidatingWebhookConfiguration. stork never creates them (`kubectl apply -k manifests` does).

use std::fmt::Debug;

use base64::Engine as _;
use json_patch::{AddOperation, Patch, PatchOperation, TestOperation, jsonptr::PointerBuf};
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use kube::{
    Api,
    api::{Patch as KubePatch, PatchParams},
};
use serde::de::DeserializeOwned;
use serde_json::json;

/// One webhook entry: its name and current caBundle.
pub(super) type Entry = (String, Option<Vec<u8>>);

/// The webhook entries of a MutatingWebhookConfiguration.
pub(super) fn mutating_entries(config: &MutatingWebhookConfiguration) -> Vec<Entry> {
    let hooks = config.webhooks.iter().flatten();
    hooks.map(|w| (w.name.clone(), w.client_config.ca_bundle.as_ref().map(|b| b.0.clone()))).collect()
}

/// The webhook entries of a ValidatingWebhookConfiguration.
pub(super) fn validating_entries(config: &ValidatingWebhookConfiguration) -> Vec<Entry> {
    let hooks = config.webhooks.iter().flatten();
    hooks.map(|w| (w.name.clone(), w.client_config.ca_bundle.as_ref().map(|b| b.0.clone()))).collect()
}

/// Patch `name`'s webhooks to trust `bundle`: `None` if it does not exist, else how many changed.
pub(super) async fn set<K>(
    api: &Api<K>,
    name: &str,
    bundle: &str,
    entries: fn(&K) -> Vec<Entry>,
) -> kube::Result<Option<usize>>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug,
{
    let Some(config) = api.get_opt(name).await? else { return Ok(None) };
    let Some(patch) = patch(&entries(&config), bundle.as_bytes()) else { return Ok(Some(0)) };
    let changed = patch.0.len() / 2;
    api.patch(name, &PatchParams::default(), &KubePatch::Json::<()>(patch)).await?;
    Ok(Some(changed))
}

/// A JSON patch setting `caBundle` on each entry that differs, or `None` if none does.
///
/// Each change is guarded by a test of the entry's name, so a concurrent reordering of the
/// webhooks fails the patch instead of giving one webhook another's settings.
fn patch(entries: &[Entry], bundle: &[u8]) -> Option<Patch> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bundle);
    let mut ops = Vec::new();
    for (index, (name, current)) in entries.iter().enumerate() {
        if current.as_deref() == Some(bundle) {
            continue;
        }
        let index = index.to_string();
        let name_path = PointerBuf::from_tokens(["webhooks", index.as_str(), "name"]);
        ops.push(PatchOperation::Test(TestOperation { path: name_path, value: json!(name) }));
        let path = PointerBuf::from_tokens(["webhooks", index.as_str(), "clientConfig", "caBundle"]);
        ops.push(PatchOperation::Add(AddOperation { path, value: json!(encoded) }));
    }
    (!ops.is_empty()).then_some(Patch(ops))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_webhooks_with_a_different_bundle_are_patched_each_behind_a_name_test() {
        let entries = vec![
            ("current.stork".to_owned(), Some(b"BUNDLE".to_vec())),
            ("stale.stork".to_owned(), Some(b"OLD".to_vec())),
            ("unset.stork".to_owned(), None),
        ];

        let patch = patch(&entries, b"BUNDLE").unwrap();

        let expected = json!([
            {"op": "test", "path": "/webhooks/1/name", "value": "stale.stork"},
            {"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": "QlVORExF"},
            {"op": "test", "path": "/webhooks/2/name", "value": "unset.stork"},
            {"op": "add", "path": "/webhooks/2/clientConfig/caBundle", "value": "QlVORExF"},
        ]);
        assert_eq!(serde_json::to_value(&patch).unwrap(), expected);
    }

    #[test]
    fn a_configuration_already_trusting_the_bundle_needs_no_patch() {
        assert!(patch(&[("a".into(), Some(b"B".to_vec()))], b"B").is_none());
        assert!(patch(&[], b"B").is_none(), "a configuration without webhooks");
    }
}
