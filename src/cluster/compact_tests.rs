use kube::runtime::watcher::Event;

use super::*;
use crate::cluster::cache::cache;

fn full_pvc() -> PersistentVolumeClaim {
    serde_json::from_str(include_str!("../../tests/data/cluster/pvc-full.json")).unwrap()
}

fn full_pv() -> PersistentVolume {
    serde_json::from_str(include_str!("../../tests/data/cluster/pv-full.json")).unwrap()
}

#[test]
fn a_cached_claim_keeps_what_the_decisions_read_and_drops_the_rest() {
    let cached = CachedPvc::pack(full_pvc()).get();

    let meta = &cached.metadata;
    assert_eq!((meta.namespace.as_deref(), meta.name.as_deref()), (Some("db"), Some("data-0")));
    let annotations = meta.annotations.as_ref().unwrap();
    assert_eq!(annotations.get(crate::knobs::PREFER_LOCAL_NODE_ONLY).map(String::as_str), Some("true"));
    assert!(annotations.contains_key("volume.kubernetes.io/storage-provisioner"));
    assert!(!annotations.contains_key(LAST_APPLIED), "kubectl's copy of the object is dropped");
    assert!(meta.managed_fields.is_none() && meta.self_link.is_none());
    assert_eq!(meta.owner_references.as_ref().map(Vec::len), Some(1), "rarely set fields are kept too");

    let spec = cached.spec.as_ref().unwrap();
    assert_eq!(crate::cluster::storage_class_name(&cached), Some("fast"));
    assert_eq!(spec.volume_name.as_deref(), Some("pv-0"));
    assert_eq!(spec.data_source.as_ref().map(|d| d.name.as_str()), Some("snap-0"));
    let resources = spec.resources.as_ref().unwrap();
    assert_eq!(resources.requests.as_ref().unwrap()["storage"].0, "10Gi");
    assert_eq!(resources.limits.as_ref().unwrap()["storage"].0, "20Gi");

    let status = cached.status.as_ref().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Bound"));
    assert!(status.conditions.is_none() && status.modify_volume_status.is_none());

    let mut expected = full_pvc();
    trim_pvc(&mut expected);
    assert_eq!(*cached, expected, "nothing but the trimmed bulk is lost");
}

#[test]
fn a_cached_volume_keeps_its_source_affinity_and_claim_and_drops_the_bulk() {
    let cached = CachedPv::pack(full_pv()).get();

    let annotations = cached.metadata.annotations.as_ref().unwrap();
    assert!(annotations.contains_key(crate::driver::csi::locality::REPLICA_NODES_ANNOTATION));
    assert!(!annotations.contains_key(LAST_APPLIED));
    assert!(cached.metadata.managed_fields.is_none());

    let spec = cached.spec.as_ref().unwrap();
    let csi = spec.csi.as_ref().unwrap();
    assert_eq!((csi.driver.as_str(), csi.volume_handle.as_str()), ("csi.example.com", "vol-0"));
    assert_eq!(csi.node_stage_secret_ref.as_ref().and_then(|s| s.name.as_deref()), Some("stage-secret"));
    let claim = spec.claim_ref.as_ref().unwrap();
    assert_eq!((claim.namespace.as_deref(), claim.name.as_deref()), (Some("db"), Some("data-0")));
    assert!(spec.node_affinity.is_some());
    assert_eq!(spec.persistent_volume_reclaim_policy.as_deref(), Some("Delete"));
    assert_eq!(spec.mount_options.as_deref(), Some(&["noatime".to_string()][..]));

    let mut expected = full_pv();
    trim_pv(&mut expected);
    assert_eq!(*cached, expected, "nothing but the trimmed bulk is lost");
}

#[test]
fn usual_claims_and_volumes_are_cached_without_a_boxed_remainder() {
    // As the benchmarks' synthetic cluster writes them (`stork-synth`).
    let pvc: PersistentVolumeClaim =
        serde_json::from_str(include_str!("../../tests/data/cluster/usual-pvc.json")).unwrap();
    let pv: PersistentVolume = serde_json::from_str(include_str!("../../tests/data/cluster/usual-pv.json")).unwrap();
    let (cached_pvc, cached_pv) = (CachedPvc::pack(pvc.clone()), CachedPv::pack(pv.clone()));
    assert!(cached_pvc.rest.is_none() && cached_pv.rest.is_none(), "a full typed object per entry is what costs");
    assert_eq!(*cached_pvc.get(), pvc);
    assert_eq!(*cached_pv.get(), pv);
}

#[test]
fn empty_but_present_parts_come_back_present_and_absent_ones_absent() {
    for json in [
        r#"{"metadata": {"name": "a"}, "spec": {}, "status": {}}"#,
        r#"{"metadata": {"name": "a"}, "spec": {"resources": {}}}"#,
        r#"{"metadata": {"name": "a", "labels": {}}}"#,
    ] {
        let pvc: PersistentVolumeClaim = serde_json::from_str(json).unwrap();
        assert_eq!(*CachedPvc::pack(pvc.clone()).get(), pvc, "{json}");
    }
    for json in [
        r#"{"metadata": {"name": "a"}, "spec": {"csi": {"driver": "", "volumeHandle": ""}}, "status": {}}"#,
        r#"{"metadata": {"name": "a"}, "spec": {"hostPath": {"path": "/d"}}}"#,
        r#"{"metadata": {"name": "a"}}"#,
    ] {
        let pv: PersistentVolume = serde_json::from_str(json).unwrap();
        assert_eq!(*CachedPv::pack(pv.clone()).get(), pv, "{json}");
    }
}

#[tokio::test]
async fn the_cache_swaps_in_an_initial_list_whole_then_follows_changes() {
    let (reader, mut writer) = cache::<CachedPv>();
    let pv = |name: &str| -> PersistentVolume {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap()
    };
    writer.apply(Event::Init);
    writer.apply(Event::InitApply(pv("a")));
    assert!(reader.get("a").is_none(), "an unfinished list is not visible");
    writer.apply(Event::InitDone);
    reader.wait_until_ready().await.unwrap();
    assert_eq!(reader.get("a").unwrap().get().metadata.name.as_deref(), Some("a"));

    writer.apply(Event::Apply(pv("b")));
    writer.apply(Event::Delete(pv("a")));
    assert_eq!((reader.get("a").is_none(), reader.len()), (true, 1));

    writer.apply(Event::Init);
    writer.apply(Event::InitApply(pv("c")));
    writer.apply(Event::InitDone);
    assert_eq!((reader.get("b").is_none(), reader.len()), (true, 1), "a relist replaces everything");
    assert_eq!(CachedPv::key(&pv("c")), "c");
}
