//! The pure snapshot half of the CSI snapshot driver: the CSI `VolumeSnapshot` stork creates,
//! snapshot states read from what the CSI snapshot controller writes, and name rules. No API calls.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PersistentVolume;
use kube::ResourceExt;

use super::{
    CsiSnapshotSource, CsiVolumeSnapshot, CsiVolumeSnapshotContent, CsiVolumeSnapshotSpec, CsiVolumeSnapshotStatus,
    SNAPSHOT_ID_LABEL, SNAPSHOT_VOLUME_ANNOTATION,
};
use crate::{
    driver::{DriverSnapshot, SnapshotError, SnapshotState},
    knobs::is_label_value,
};

/// The claim (namespace, name) a CSI PV is bound to.
pub fn claim_of(pv: &PersistentVolume) -> Result<(String, String), SnapshotError> {
    let name = pv.metadata.name.as_deref().unwrap_or_default();
    let spec = pv.spec.as_ref();
    if spec.and_then(|s| s.csi.as_ref()).is_none() {
        return Err(SnapshotError::Invalid(format!("volume {name} is not a CSI volume: it cannot be snapshotted")));
    }
    let claim = spec.and_then(|s| s.claim_ref.as_ref());
    match claim.map(|c| (c.namespace.as_deref().unwrap_or_default(), c.name.as_deref().unwrap_or_default())) {
        Some((ns, claim)) if !ns.is_empty() && !claim.is_empty() => Ok((ns.to_string(), claim.to_string())),
        _ => Err(SnapshotError::Invalid(format!(
            "volume {name} is not bound to a claim: CSI snapshots are taken of claims"
        ))),
    }
}

/// The CSI `VolumeSnapshot` for driver snapshot `id` of `claim`: labelled with `id`, annotated
/// with the volume, plus every caller label that is a valid label.
pub fn csi_snapshot(
    id: &str,
    namespace: &str,
    claim: &str,
    volume_id: &str,
    class: Option<&str>,
    labels: &BTreeMap<String, String>,
) -> CsiVolumeSnapshot {
    let mut all: BTreeMap<String, String> = labels
        .iter()
        .filter(|(k, v)| is_label_key(k) && is_label_value(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    all.insert(SNAPSHOT_ID_LABEL.into(), id.into());
    let mut vs = CsiVolumeSnapshot::new(
        id,
        CsiVolumeSnapshotSpec {
            source: CsiSnapshotSource { persistent_volume_claim_name: Some(claim.into()), ..Default::default() },
            volume_snapshot_class_name: class.filter(|c| !c.is_empty()).map(Into::into),
        },
    );
    vs.metadata.namespace = Some(namespace.into());
    vs.metadata.labels = Some(all);
    vs.metadata.annotations = Some(BTreeMap::from([(SNAPSHOT_VOLUME_ANNOTATION.into(), volume_id.into())]));
    vs
}

/// State of a CSI snapshot from its status: ready wins over a stale error.
pub fn state_of(status: Option<&CsiVolumeSnapshotStatus>) -> SnapshotState {
    let Some(s) = status else { return SnapshotState::Creating };
    if s.ready_to_use == Some(true) {
        return SnapshotState::Ready;
    }
    match &s.error {
        Some(e) => SnapshotState::Failed(
            e.message
                .clone()
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "the CSI snapshot controller reported an error without a message".into()),
        ),
        None => SnapshotState::Creating,
    }
}

/// A CSI `VolumeSnapshot` as a driver snapshot of `volume_id`.
pub fn driver_snapshot(vs: &CsiVolumeSnapshot, volume_id: &str) -> DriverSnapshot {
    let created = vs.status.as_ref().and_then(|s| s.creation_time.as_ref()).or(vs.metadata.creation_timestamp.as_ref());
    DriverSnapshot {
        id: vs.name_any(),
        volume_id: volume_id.to_string(),
        state: state_of(vs.status.as_ref()),
        created: created.map(|t| t.0.to_string()).unwrap_or_default(),
    }
}

/// Checks a snapshot can be restored (ready, bound to a content that points back at it) and
/// returns the content.
pub fn restorable<'a>(
    vs: &CsiVolumeSnapshot,
    content: Option<&'a CsiVolumeSnapshotContent>,
) -> Result<&'a CsiVolumeSnapshotContent, SnapshotError> {
    let (ns, name) = (vs.namespace().unwrap_or_default(), vs.name_any());
    match state_of(vs.status.as_ref()) {
        SnapshotState::Ready => {}
        SnapshotState::Creating => {
            return Err(SnapshotError::Failed(format!("CSI VolumeSnapshot {ns}/{name} is not ready to use yet")));
        }
        SnapshotState::Failed(m) => {
            return Err(SnapshotError::Failed(format!("CSI VolumeSnapshot {ns}/{name} failed: {m}")));
        }
    }
    let Some(content) = content else {
        return Err(SnapshotError::Failed(format!("the content of CSI VolumeSnapshot {ns}/{name} was not found")));
    };
    let r = &content.spec.volume_snapshot_ref;
    if r.namespace.as_deref() != Some(ns.as_str()) || r.name.as_deref() != Some(name.as_str()) {
        return Err(SnapshotError::Invalid(format!(
            "VolumeSnapshotContent {} does not point back at CSI VolumeSnapshot {ns}/{name}",
            content.name_any()
        )));
    }
    Ok(content)
}

/// Whether a snapshot id can be both the name and a label value of a CSI `VolumeSnapshot`.
pub(super) fn is_snapshot_id(id: &str) -> bool {
    is_object_name(id) && is_label_value(id)
}

/// Whether a string is a valid label key: an optional DNS-subdomain prefix and `/`, then a
/// non-empty name with the rules of a label value.
pub fn is_label_key(k: &str) -> bool {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    !name.is_empty() && is_label_value(name) && prefix.is_none_or(is_object_name)
}

/// Whether a string is a valid object name (DNS subdomain): at most 253 lower-case
/// alphanumerics, `-` and `.`, starting and ending alphanumeric.
pub fn is_object_name(n: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    n.len() <= 253
        && edge(n.chars().next())
        && edge(n.chars().last())
        && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
}
