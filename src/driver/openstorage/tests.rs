//! Driver tests without an SDK: what readers see before the first read and after a failure.

use super::*;
use crate::fixtures::World;

fn driver() -> Arc<OsdDriver> {
    let (cluster, _) = World::new().build();
    let config = OsdConfig::new(Some("127.0.0.1:1"), config::DEFAULT_SERVICE, config::DEFAULT_PORT_NAME, None).unwrap();
    OsdDriver::new(config, cluster, Family::default())
}

#[test]
fn nodes_are_unknown_until_the_sdk_has_been_read() {
    let d = driver();
    let err = d.nodes().unwrap_err().to_string();
    assert!(err.contains("has not been read yet"), "{err}");
}

#[test]
fn portworx_provisioners_and_in_tree_volumes_are_owned() {
    let d = driver();
    for p in ["kubernetes.io/portworx-volume", "pxd.portworx.com", "com.openstorage.pxd"] {
        assert!(d.owns_provisioner(p), "{p}");
    }
    assert!(!d.owns_provisioner("ebs.csi.aws.com"));
    let pv = PersistentVolume {
        spec: Some(k8s_openapi::api::core::v1::PersistentVolumeSpec {
            portworx_volume: Some(k8s_openapi::api::core::v1::PortworxVolumeSource {
                volume_id: "v1".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(d.owns_pv(&pv));
    assert!(d.is_csi_pod("px-csi-ext-7d9f"));
}

#[tokio::test]
async fn a_failed_read_makes_nodes_unknown_and_keeps_volumes() {
    let d = driver();
    let mut sdk_volume = proto::Volume { id: "11".into(), ..Default::default() };
    sdk_volume.locator = Some(proto::VolumeLocator { name: "pvc-a".into(), ..Default::default() });
    d.remember(&sdk_volume);
    d.mark_unknown("OpenStorage SDK at http://127.0.0.1:1 is unreachable: refused".into());
    assert!(d.nodes().unwrap_err().to_string().contains("unreachable"));
    assert_eq!(d.state.load().volumes.get("pvc-a").map(|v| v.id.clone()), Some("11".to_string()));
    assert_eq!(d.pv_source("pvc-a").csi.map(|c| c.volume_handle), Some("11".to_string()));
}
