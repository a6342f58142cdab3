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
    pub ephemeral: Option<serde::de::IgnoredAny>,
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
    /// The PVC names this pod uses, in volume order, with the pod volume they back.
    /// Generic ephemeral volumes count: their claim is `<pod name>-<volume name>`.
    pub fn claims(&self) -> impl Iterator<Item = (&str, String)> + '_ {
        self.spec.volumes.iter().filter_map(|v| {
            if let Some(src) = &v.persistent_volume_claim {
                Some((v.name.as_str(), src.claim_name.clone()))
            } else if v.ephemeral.is_some() && !self.metadata.name.is_empty() {
                Some((v.name.as_str(), format!("{}-{}", self.metadata.name, v.name)))
            } else {
                None
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
        let claims: Vec<_> = pod.claims().map(|(_, c)| c).collect();
        assert_eq!(claims, ["data-db-0", "db-0-scratch"]);
    }
}
