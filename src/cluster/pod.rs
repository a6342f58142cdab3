//! The few fields of a Pod that placement and admission decisions read.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A Pod reduced to what stork decides on; unknown fields are skipped while decoding.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PodFacts {
    /// Object metadata.
    pub metadata: PodMeta,
    /// The parts of the spec we read.
    pub spec: PodSpecFacts,
}

/// Pod metadata we read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PodMeta {
    /// Pod name (may be empty on CREATE when `generateName` is used).
    pub name: String,
    /// Pod namespace.
    pub namespace: String,
    /// Generate-name prefix, used for messages when `name` is empty.
    #[serde(rename = "generateName")]
    pub generate_name: String,
    /// UID, for events.
    pub uid: String,
    /// Annotations (`null` decodes as empty).
    #[serde(deserialize_with = "null_as_default")]
    pub annotations: BTreeMap<String, String>,
    /// Labels (`null` decodes as empty).
    #[serde(deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
}

/// Pod spec fields we read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodSpecFacts {
    /// Volumes (`null` decodes as empty).
    #[serde(deserialize_with = "null_as_default")]
    pub volumes: Vec<PodVolumeFacts>,
    /// The scheduler that places this pod.
    pub scheduler_name: String,
    /// The node the pod is bound to, if any.
    pub node_name: String,
}

/// One pod volume; only claim-backed sources matter to stork.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodVolumeFacts {
    /// Volume name within the pod.
    pub name: String,
    /// A PVC source.
    pub persistent_volume_claim: Option<ClaimSource>,
    /// A generic ephemeral volume: its PVC is named `<pod>-<volume>`.
    pub ephemeral: Option<EphemeralSource>,
}

/// `ephemeral` volume source: the template the ephemeral volume controller makes the claim from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EphemeralSource {
    /// The claim template (`null` decodes as empty).
    #[serde(deserialize_with = "null_as_default")]
    pub volume_claim_template: ClaimTemplate,
}

/// `volumeClaimTemplate` of an ephemeral volume: only its spec's class matters to stork.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClaimTemplate {
    /// The claim spec (`null` decodes as empty).
    #[serde(deserialize_with = "null_as_default")]
    pub spec: ClaimTemplateSpec,
}

/// The part of an ephemeral claim template's spec stork reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ClaimTemplateSpec {
    /// The class the claim will have; none means the cluster's default class.
    pub storage_class_name: Option<String>,
}

/// One claim a pod uses (see [`PodFacts::claims`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodClaim<'a> {
    /// The pod volume it backs.
    pub volume: &'a str,
    /// The claim's name in the pod's namespace.
    pub name: String,
    /// For a generic ephemeral volume, the class its template names (`Some(None)`: the default
    /// class). The claim may not exist yet: the ephemeral volume controller creates it after
    /// the pod, so admission and scheduling decide from the template.
    pub ephemeral_class: Option<Option<&'a str>>,
}

/// `persistentVolumeClaim` volume source.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ClaimSource {
    /// PVC name in the pod's namespace.
    pub claim_name: String,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl PodFacts {
    /// The fields of a full Pod that [`PodFacts`] holds.
    pub fn of(pod: &k8s_openapi::api::core::v1::Pod) -> Self {
        let mut f = PodFacts::default();
        f.metadata.name = pod.metadata.name.clone().unwrap_or_default();
        f.metadata.namespace = pod.metadata.namespace.clone().unwrap_or_default();
        f.metadata.uid = pod.metadata.uid.clone().unwrap_or_default();
        f.metadata.annotations = pod.metadata.annotations.clone().unwrap_or_default();
        f.metadata.labels = pod.metadata.labels.clone().unwrap_or_default();
        if let Some(spec) = &pod.spec {
            f.spec.node_name = spec.node_name.clone().unwrap_or_default();
            f.spec.scheduler_name = spec.scheduler_name.clone().unwrap_or_default();
            // Round-trip only the volumes: small, and keeps one decoding of volume sources.
            f.spec.volumes = spec
                .volumes
                .iter()
                .flatten()
                .filter_map(|v| serde_json::to_value(v).ok().and_then(|v| serde_json::from_value(v).ok()))
                .collect();
        }
        f
    }

    /// The claims this pod uses, in volume order. Generic ephemeral volumes count: their claim
    /// is `<pod name>-<volume name>` (a pod created with `generateName` has no name yet, so its
    /// ephemeral claims are named with an empty pod name; only their template class is usable).
    pub fn claims(&self) -> impl Iterator<Item = PodClaim<'_>> + '_ {
        self.spec.volumes.iter().filter_map(|v| {
            let volume = v.name.as_str();
            if let Some(src) = &v.persistent_volume_claim {
                Some(PodClaim { volume, name: src.claim_name.clone(), ephemeral_class: None })
            } else {
                let template = v.ephemeral.as_ref()?;
                let class = template.volume_claim_template.spec.storage_class_name.as_deref();
                Some(PodClaim {
                    volume,
                    name: format!("{}-{}", self.metadata.name, v.name),
                    ephemeral_class: Some(class),
                })
            }
        })
    }

    /// `namespace/name` (or `namespace/generateName*`) for messages and logs.
    pub fn display_name(&self) -> String {
        if self.metadata.name.is_empty() {
            format!("{}/{}*", self.metadata.namespace, self.metadata.generate_name)
        } else {
            format!("{}/{}", self.metadata.namespace, self.metadata.name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_include_pvc_and_generic_ephemeral_volumes_but_not_others() {
        let pod: PodFacts = serde_json::from_str(
            r#"{"metadata":{"name":"db-0","namespace":"ns","annotations":null},
                "spec":{"volumes":[{"name":"data","persistentVolumeClaim":{"claimName":"data-db-0"}},
                                   {"name":"scratch","ephemeral":{"volumeClaimTemplate":{}}},
                                   {"name":"cfg","configMap":{"name":"x"}}]}}"#,
        )
        .unwrap();
        let claims: Vec<_> = pod.claims().map(|c| (c.name, c.ephemeral_class)).collect();
        assert_eq!(claims, [("data-db-0".to_string(), None), ("db-0-scratch".to_string(), Some(None))]);
    }
}
