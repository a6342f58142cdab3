//! SDK volumes as stork's volumes, and which SDK volume a PV names.

use k8s_openapi::api::core::v1::PersistentVolume;

use super::{config::PROVISIONERS, proto};
use crate::driver::Volume;

/// Label Portworx sets on a volume Windows pods reach over SMB.
const WINSHARE_LABEL: &str = "winshare";

/// What stork keeps of an SDK volume.
pub fn volume_of(v: &proto::Volume) -> Volume {
    let spec = v.spec.as_ref();
    let mut replicas: Vec<String> = Vec::new();
    for id in v.replica_sets.iter().flat_map(|r| &r.nodes) {
        if !replicas.contains(id) {
            replicas.push(id.clone());
        }
    }
    // As Stork: the spec's labels, overlaid by the locator's.
    let mut labels = spec.map(|s| s.volume_labels.clone()).unwrap_or_default();
    labels.extend(v.locator.iter().flat_map(|l| l.volume_labels.clone()));
    let windows = spec.is_some_and(|s| s.winshare)
        || labels.get(WINSHARE_LABEL).is_some_and(|w| w.parse::<bool>().unwrap_or(false));
    Volume {
        id: v.id.clone(),
        replicas,
        anti_hyperconvergence: spec.is_some_and(|s| s.sharedv4 && s.sharedv4_service_spec.is_some()),
        windows,
        labels,
        ..Volume::default()
    }
}

/// The SDK volume a PV names: a CSI volume handle of a Portworx CSI driver, or an in-tree
/// Portworx volume id. Either may be an id or a name; the SDK accepts both.
pub fn volume_ref(pv: &PersistentVolume) -> Option<&str> {
    let spec = pv.spec.as_ref()?;
    if let Some(csi) = spec.csi.as_ref().filter(|c| PROVISIONERS.contains(&c.driver.as_str())) {
        return Some(csi.volume_handle.as_str());
    }
    spec.portworx_volume.as_ref().map(|p| p.volume_id.as_str())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{CSIPersistentVolumeSource, PersistentVolumeSpec, PortworxVolumeSource};

    use super::*;

    fn pv(spec: PersistentVolumeSpec) -> PersistentVolume {
        PersistentVolume { spec: Some(spec), ..PersistentVolume::default() }
    }

    #[test]
    fn a_pv_names_its_volume_by_csi_handle_or_in_tree_id() {
        let csi = |driver: &str| {
            pv(PersistentVolumeSpec {
                csi: Some(CSIPersistentVolumeSource {
                    driver: driver.into(),
                    volume_handle: "1234".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
        };
        assert_eq!(volume_ref(&csi("pxd.portworx.com")), Some("1234"));
        assert_eq!(volume_ref(&csi("com.openstorage.pxd")), Some("1234"));
        assert_eq!(volume_ref(&csi("ebs.csi.aws.com")), None);
        let in_tree = pv(PersistentVolumeSpec {
            portworx_volume: Some(PortworxVolumeSource { volume_id: "pvc-1".into(), ..Default::default() }),
            ..Default::default()
        });
        assert_eq!(volume_ref(&in_tree), Some("pvc-1"));
        assert_eq!(volume_ref(&pv(PersistentVolumeSpec::default())), None);
    }

    #[test]
    fn replicas_are_every_replica_set_node_once_and_locator_labels_win() {
        let v = proto::Volume {
            id: "77".into(),
            replica_sets: vec![
                proto::ReplicaSet { nodes: vec!["a".into(), "b".into()], ..Default::default() },
                proto::ReplicaSet { nodes: vec!["b".into(), "c".into()], ..Default::default() },
            ],
            spec: Some(proto::VolumeSpec {
                volume_labels: [("k", "spec"), ("winshare", "true")].map(|(k, v)| (k.into(), v.into())).into(),
                ..Default::default()
            }),
            locator: Some(proto::VolumeLocator {
                name: "pvc-1".into(),
                volume_labels: [("k".into(), "locator".into())].into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let vol = volume_of(&v);
        assert_eq!((vol.id.as_str(), vol.replicas.as_slice()), ("77", &["a", "b", "c"].map(String::from)[..]));
        assert_eq!(vol.labels["k"], "locator");
        assert!(vol.windows);
        assert!(!vol.anti_hyperconvergence);
    }

    #[test]
    fn a_sharedv4_service_volume_prefers_other_nodes() {
        let v = proto::Volume {
            spec: Some(proto::VolumeSpec {
                sharedv4: true,
                sharedv4_service_spec: Some(proto::Sharedv4ServiceSpec::default()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(volume_of(&v).anti_hyperconvergence);
    }
}
