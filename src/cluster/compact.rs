//! Compact cached forms of PVCs and PVs.
//!
//! A k8s-openapi `PersistentVolume` is 3.4 KB before any string is allocated (its spec holds
//! every in-tree volume source inline) and each one-entry `BTreeMap` costs a 0.5 KB node, so
//! 50,000 claim/volume pairs held as typed objects cost over 300 MB. The cache keeps instead the
//! fields real claims and volumes set, as boxed strings and pair slices, plus the rest of the
//! object (anything else that was set) in a box that is absent for usual objects. Reading one
//! rebuilds the typed object: nothing kept is lost, so decision code reads what it read before.

use std::{collections::BTreeMap, sync::Arc};

use super::cache::Packed;
use k8s_openapi::{
    api::core::v1::{
        PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimStatus,
        PersistentVolumeSpec, PersistentVolumeStatus, VolumeNodeAffinity, VolumeResourceRequirements,
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{ObjectMeta, Time},
    },
};

/// An optional string, 8 bytes smaller than `Option<String>`.
type Str = Option<Box<str>>;
/// A string map as a slice of pairs: a one-entry map costs 32 bytes instead of a B-tree node.
type Pairs = Option<Box<[(Box<str>, Box<str>)]>>;
type Strs = Option<Box<[Box<str>]>>;

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn pack(s: Option<String>) -> Str {
    s.map(String::into_boxed_str)
}

fn unpack(s: &Str) -> Option<String> {
    s.as_deref().map(String::from)
}

fn pack_strs(v: Option<Vec<String>>) -> Strs {
    v.map(|v| v.into_iter().map(String::into_boxed_str).collect())
}

fn unpack_strs(v: &Strs) -> Option<Vec<String>> {
    v.as_deref().map(|v| v.iter().map(|s| String::from(&**s)).collect())
}

fn pack_map<V>(m: Option<BTreeMap<String, V>>, value: fn(V) -> String) -> Pairs {
    m.map(|m| m.into_iter().map(|(k, v)| (k.into_boxed_str(), value(v).into_boxed_str())).collect())
}

fn unpack_map<V>(m: &Pairs, value: fn(String) -> V) -> Option<BTreeMap<String, V>> {
    m.as_deref().map(|m| m.iter().map(|(k, v)| (String::from(&**k), value(String::from(&**v)))).collect())
}

fn pack_quantities(m: Option<BTreeMap<String, Quantity>>) -> Pairs {
    pack_map(m, |q| q.0)
}

fn unpack_quantities(m: &Pairs) -> Option<BTreeMap<String, Quantity>> {
    unpack_map(m, Quantity)
}

/// Whether `slot` held a value; empties it when only defaults are left, so an emptied spec or
/// status does not keep the rest box alive. The flag lets [`refill`] restore `Some(default)`.
fn hollow<T: Default + PartialEq>(slot: &mut Option<T>) -> bool {
    let present = slot.is_some();
    if slot.as_ref().is_some_and(|v| *v == T::default()) {
        *slot = None;
    }
    present
}

/// The slot to refill when it was present, recreated empty if [`hollow`] removed it.
fn refill<T: Default>(slot: &mut Option<T>, present: bool) -> Option<&mut T> {
    present.then(|| slot.get_or_insert_with(T::default))
}

/// Boxes what is left of an object once its kept fields were taken out, unless nothing is.
fn rest<T: Default + PartialEq>(left: T) -> Option<Box<T>> {
    (left != T::default()).then(|| Box::new(left))
}

/// Drops what no decision reads and the cache must not pay for: managed fields, the self
/// link and kubectl's copy of the whole object. Shared by every cached kind.
pub(crate) fn trim_meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    meta.self_link = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
}

/// The metadata fields claims and volumes usually carry.
#[derive(Debug, Clone, PartialEq)]
struct Meta {
    name: Str,
    namespace: Str,
    uid: Str,
    resource_version: Str,
    creation_timestamp: Option<Time>,
    labels: Pairs,
    annotations: Pairs,
    finalizers: Strs,
}

impl Meta {
    /// Takes the kept fields out of metadata already trimmed by [`trim_meta`].
    fn take(m: &mut ObjectMeta) -> Self {
        Self {
            name: pack(m.name.take()),
            namespace: pack(m.namespace.take()),
            uid: pack(m.uid.take()),
            resource_version: pack(m.resource_version.take()),
            creation_timestamp: m.creation_timestamp.take(),
            labels: pack_map(m.labels.take(), |v| v),
            annotations: pack_map(m.annotations.take(), |v| v),
            finalizers: pack_strs(m.finalizers.take()),
        }
    }

    fn fill(&self, m: &mut ObjectMeta) {
        m.name = unpack(&self.name);
        m.namespace = unpack(&self.namespace);
        m.uid = unpack(&self.uid);
        m.resource_version = unpack(&self.resource_version);
        m.creation_timestamp = self.creation_timestamp.clone();
        m.labels = unpack_map(&self.labels, |v| v);
        m.annotations = unpack_map(&self.annotations, |v| v);
        m.finalizers = unpack_strs(&self.finalizers);
    }
}

/// A cached PersistentVolumeClaim; [`CachedPvc::get`] rebuilds the (trimmed) claim.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CachedPvc {
    meta: Meta,
    has_spec: bool,
    has_resources: bool,
    has_status: bool,
    access_modes: Strs,
    requests: Pairs,
    storage_class_name: Str,
    volume_mode: Str,
    volume_name: Str,
    phase: Str,
    status_access_modes: Strs,
    capacity: Pairs,
    rest: Option<Box<PersistentVolumeClaim>>,
}

impl Packed for CachedPvc {
    type Full = PersistentVolumeClaim;

    /// Trims the claim (see [`trim_pvc`]) and packs it.
    fn pack(mut pvc: PersistentVolumeClaim) -> Self {
        trim_pvc(&mut pvc);
        let meta = Meta::take(&mut pvc.metadata);
        let (mut access_modes, mut requests, mut storage_class_name, mut volume_mode, mut volume_name) =
            (None, None, None, None, None);
        let (mut has_resources, mut phase, mut status_access_modes, mut capacity) = (false, None, None, None);
        if let Some(s) = pvc.spec.as_mut() {
            access_modes = pack_strs(s.access_modes.take());
            if let Some(r) = s.resources.as_mut() {
                requests = pack_quantities(r.requests.take());
            }
            has_resources = hollow::<VolumeResourceRequirements>(&mut s.resources);
            storage_class_name = pack(s.storage_class_name.take());
            volume_mode = pack(s.volume_mode.take());
            volume_name = pack(s.volume_name.take());
        }
        let has_spec = hollow::<PersistentVolumeClaimSpec>(&mut pvc.spec);
        if let Some(s) = pvc.status.as_mut() {
            phase = pack(s.phase.take());
            status_access_modes = pack_strs(s.access_modes.take());
            capacity = pack_quantities(s.capacity.take());
        }
        let has_status = hollow::<PersistentVolumeClaimStatus>(&mut pvc.status);
        Self {
            meta,
            has_spec,
            has_resources,
            has_status,
            access_modes,
            requests,
            storage_class_name,
            volume_mode,
            volume_name,
            phase,
            status_access_modes,
            capacity,
            rest: rest(pvc),
        }
    }

    /// Store key: `namespace/name`.
    fn key(pvc: &PersistentVolumeClaim) -> String {
        let m = &pvc.metadata;
        claim_key(m.namespace.as_deref().unwrap_or_default(), m.name.as_deref().unwrap_or_default())
    }
}

impl CachedPvc {
    /// The claim as it was cached.
    pub(crate) fn get(&self) -> Arc<PersistentVolumeClaim> {
        let mut pvc = self.rest.as_deref().cloned().unwrap_or_default();
        self.meta.fill(&mut pvc.metadata);
        if let Some(s) = refill(&mut pvc.spec, self.has_spec) {
            s.access_modes = unpack_strs(&self.access_modes);
            if let Some(r) = refill(&mut s.resources, self.has_resources) {
                r.requests = unpack_quantities(&self.requests);
            }
            s.storage_class_name = unpack(&self.storage_class_name);
            s.volume_mode = unpack(&self.volume_mode);
            s.volume_name = unpack(&self.volume_name);
        }
        if let Some(s) = refill(&mut pvc.status, self.has_status) {
            s.phase = unpack(&self.phase);
            s.access_modes = unpack_strs(&self.status_access_modes);
            s.capacity = unpack_quantities(&self.capacity);
        }
        Arc::new(pvc)
    }
}

/// The key a claim is cached (and indexed) under: `namespace/name`.
pub fn claim_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// A cached PersistentVolume; [`CachedPv::get`] rebuilds the (trimmed) volume.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CachedPv {
    meta: Meta,
    has_spec: bool,
    has_csi: bool,
    has_status: bool,
    access_modes: Strs,
    capacity: Pairs,
    claim_ref: Option<Box<k8s_openapi::api::core::v1::ObjectReference>>,
    csi_driver: Box<str>,
    csi_volume_handle: Box<str>,
    csi_fs_type: Str,
    csi_read_only: Option<bool>,
    csi_volume_attributes: Pairs,
    node_affinity: Option<Box<VolumeNodeAffinity>>,
    reclaim_policy: Str,
    storage_class_name: Str,
    volume_mode: Str,
    phase: Str,
    last_phase_transition_time: Option<Time>,
    rest: Option<Box<PersistentVolume>>,
}

impl Packed for CachedPv {
    type Full = PersistentVolume;

    /// Trims the volume (see [`trim_pv`]) and packs it.
    fn pack(mut pv: PersistentVolume) -> Self {
        trim_pv(&mut pv);
        let meta = Meta::take(&mut pv.metadata);
        let mut out = Self {
            meta,
            has_spec: false,
            has_csi: false,
            has_status: false,
            access_modes: None,
            capacity: None,
            claim_ref: None,
            csi_driver: Box::default(),
            csi_volume_handle: Box::default(),
            csi_fs_type: None,
            csi_read_only: None,
            csi_volume_attributes: None,
            node_affinity: None,
            reclaim_policy: None,
            storage_class_name: None,
            volume_mode: None,
            phase: None,
            last_phase_transition_time: None,
            rest: None,
        };
        if let Some(s) = pv.spec.as_mut() {
            out.access_modes = pack_strs(s.access_modes.take());
            out.capacity = pack_quantities(s.capacity.take());
            out.claim_ref = s.claim_ref.take().map(Box::new);
            if let Some(c) = s.csi.as_mut() {
                out.csi_driver = std::mem::take(&mut c.driver).into_boxed_str();
                out.csi_volume_handle = std::mem::take(&mut c.volume_handle).into_boxed_str();
                out.csi_fs_type = pack(c.fs_type.take());
                out.csi_read_only = c.read_only.take();
                out.csi_volume_attributes = pack_map(c.volume_attributes.take(), |v| v);
            }
            out.has_csi = hollow(&mut s.csi);
            out.node_affinity = s.node_affinity.take().map(Box::new);
            out.reclaim_policy = pack(s.persistent_volume_reclaim_policy.take());
            out.storage_class_name = pack(s.storage_class_name.take());
            out.volume_mode = pack(s.volume_mode.take());
        }
        out.has_spec = hollow::<PersistentVolumeSpec>(&mut pv.spec);
        if let Some(s) = pv.status.as_mut() {
            out.phase = pack(s.phase.take());
            out.last_phase_transition_time = s.last_phase_transition_time.take();
        }
        out.has_status = hollow::<PersistentVolumeStatus>(&mut pv.status);
        out.rest = rest(pv);
        out
    }

    /// Store key: the name.
    fn key(pv: &PersistentVolume) -> String {
        pv.metadata.name.clone().unwrap_or_default()
    }
}

impl CachedPv {
    /// The volume as it was cached.
    pub(crate) fn get(&self) -> Arc<PersistentVolume> {
        let mut pv = self.rest.as_deref().cloned().unwrap_or_default();
        self.meta.fill(&mut pv.metadata);
        if let Some(s) = refill(&mut pv.spec, self.has_spec) {
            s.access_modes = unpack_strs(&self.access_modes);
            s.capacity = unpack_quantities(&self.capacity);
            s.claim_ref = self.claim_ref.as_deref().cloned();
            if let Some(c) = refill(&mut s.csi, self.has_csi) {
                c.driver = String::from(&*self.csi_driver);
                c.volume_handle = String::from(&*self.csi_volume_handle);
                c.fs_type = unpack(&self.csi_fs_type);
                c.read_only = self.csi_read_only;
                c.volume_attributes = unpack_map(&self.csi_volume_attributes, |v| v);
            }
            s.node_affinity = self.node_affinity.as_deref().cloned();
            s.persistent_volume_reclaim_policy = unpack(&self.reclaim_policy);
            s.storage_class_name = unpack(&self.storage_class_name);
            s.volume_mode = unpack(&self.volume_mode);
        }
        if let Some(s) = refill(&mut pv.status, self.has_status) {
            s.phase = unpack(&self.phase);
            s.last_phase_transition_time = self.last_phase_transition_time.clone();
        }
        Arc::new(pv)
    }
}

/// What the cache drops from a claim besides [`trim_meta`]: its conditions and the
/// volume-modification status, which change often and are read by no decision.
pub fn trim_pvc(pvc: &mut PersistentVolumeClaim) {
    trim_meta(&mut pvc.metadata);
    if let Some(status) = pvc.status.as_mut() {
        status.conditions = None;
        status.modify_volume_status = None;
    }
}

/// What the cache drops from a volume: only [`trim_meta`]'s bulk. Every spec field may matter
/// to a driver (sources, affinity, claim reference), and the compact form keeps them cheaply.
pub fn trim_pv(pv: &mut PersistentVolume) {
    trim_meta(&mut pv.metadata);
}

#[cfg(test)]
#[path = "compact_tests.rs"]
mod tests;
