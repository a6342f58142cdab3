//! Offline mode: the cluster view loaded once from a file of Kubernetes objects — multi-document
//! YAML, or JSON such as `kubectl get -o json` (a `kind: List`).
//!
//! Objects go into the stores one at a time as they are parsed: YAML is read from the file one
//! document at a time, JSON items are kept as raw slices of the text until typed. A large file
//! therefore costs about its cached objects, not a parsed tree of everything at once.

use std::{
    io::{BufRead, BufReader, Read},
    path::Path,
    sync::atomic::Ordering,
};

use k8s_openapi::api::{
    core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod},
    storage::v1::StorageClass,
};
use kube::runtime::{reflector::store::Writer, watcher};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, value::RawValue};

use super::{ClusterView, ClusterWriters, Error, ObjectUpdates};
use crate::model::{crd::VolumeSnapshot, rule::Rule, schedule::SchedulePolicy};

const SNAPSHOT_API_VERSION: &str = "volumesnapshot.external-storage.k8s.io/v1";
/// API version of stork's own kinds (Rule, SchedulePolicy).
const RULE_API_VERSION: &str = "stork.libopenstorage.org/v1alpha1";

/// Typed objects of the kinds the view caches.
#[derive(Debug, Default, Clone)]
pub struct Objects {
    /// StorageClasses.
    pub storage_classes: Vec<StorageClass>,
    /// PersistentVolumeClaims.
    pub pvcs: Vec<PersistentVolumeClaim>,
    /// PersistentVolumes.
    pub pvs: Vec<PersistentVolume>,
    /// Nodes.
    pub nodes: Vec<Node>,
    /// stork VolumeSnapshots.
    pub snapshots: Vec<VolumeSnapshot>,
    /// Pods.
    pub pods: Vec<Pod>,
    /// Stork Rules.
    pub rules: Vec<Rule>,
    /// Stork SchedulePolicies.
    pub policies: Vec<SchedulePolicy>,
}

/// One object of a kind the view caches. Transient (one document at a time), so the size
/// difference between variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum Object {
    StorageClass(StorageClass),
    Pvc(PersistentVolumeClaim),
    Pv(PersistentVolume),
    Node(Node),
    Snapshot(VolumeSnapshot),
    Rule(Rule),
    Policy(SchedulePolicy),
    Pod(Pod),
}

impl Objects {
    /// Parses multi-document YAML or JSON; `kind: List` documents are flattened, other kinds
    /// are ignored so a full `kubectl get -o yaml` (or `-o json`) dump can be used as is.
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        let mut out = Self::default();
        parse_text(text, &mut |o| out.push(o))?;
        Ok(out)
    }

    /// A synced view holding exactly these objects.
    pub fn into_view(self) -> ClusterView {
        self.into_view_with_updates().0
    }

    /// As [`Self::into_view`], keeping a handle to change objects afterwards.
    pub fn into_view_with_updates(self) -> (ClusterView, ObjectUpdates) {
        let (view, writers) = ClusterView::new();
        let mut feed = Feed::start(writers);
        let Self { storage_classes, pvcs, pvs, nodes, snapshots, pods, rules, policies } = self;
        storage_classes.into_iter().for_each(|o| feed.apply(Object::StorageClass(o)));
        pvcs.into_iter().for_each(|o| feed.apply(Object::Pvc(o)));
        pvs.into_iter().for_each(|o| feed.apply(Object::Pv(o)));
        nodes.into_iter().for_each(|o| feed.apply(Object::Node(o)));
        snapshots.into_iter().for_each(|o| feed.apply(Object::Snapshot(o)));
        pods.into_iter().for_each(|o| feed.apply(Object::Pod(o)));
        rules.into_iter().for_each(|o| feed.apply(Object::Rule(o)));
        policies.into_iter().for_each(|o| feed.apply(Object::Policy(o)));
        let writers = feed.finish();
        (view.clone(), ObjectUpdates::new(view, writers))
    }

    fn push(&mut self, object: Object) {
        match object {
            Object::StorageClass(o) => self.storage_classes.push(o),
            Object::Pvc(o) => self.pvcs.push(o),
            Object::Pv(o) => self.pvs.push(o),
            Object::Node(o) => self.nodes.push(o),
            Object::Snapshot(o) => self.snapshots.push(o),
            Object::Pod(o) => self.pods.push(o),
            Object::Rule(o) => self.rules.push(o),
            Object::Policy(o) => self.policies.push(o),
        }
    }
}

/// Replays complete lists into the stores, exactly as the watchers' initial lists would.
struct Feed(ClusterWriters);

impl Feed {
    fn start(mut w: ClusterWriters) -> Self {
        w.storage_classes.apply_watcher_event(&watcher::Event::Init);
        w.pvcs.apply(watcher::Event::Init);
        w.pvs.apply(watcher::Event::Init);
        w.nodes.apply_watcher_event(&watcher::Event::Init);
        w.snapshots.apply_watcher_event(&watcher::Event::Init);
        w.pods.apply_watcher_event(&watcher::Event::Init);
        Self(w)
    }

    fn apply(&mut self, object: Object) {
        let w = &mut self.0;
        match object {
            Object::StorageClass(o) => init_apply(&mut w.storage_classes, o),
            // Trimmed and packed by the writer, as in live mode.
            Object::Pvc(o) => w.pvcs.apply(watcher::Event::InitApply(o)),
            Object::Pv(o) => w.pvs.apply(watcher::Event::InitApply(o)),
            Object::Node(o) => init_apply(&mut w.nodes, o),
            Object::Snapshot(o) => init_apply(&mut w.snapshots, o),
            Object::Rule(o) => init_apply(&mut w.rules, o),
            Object::Policy(o) => init_apply(&mut w.policies, o),
            Object::Pod(mut o) => {
                super::trim_pod(&mut o);
                init_apply(&mut w.pods, o);
            }
        }
    }

    fn finish(self) -> ClusterWriters {
        let mut w = self.0;
        w.storage_classes.apply_watcher_event(&watcher::Event::InitDone);
        w.pvcs.apply(watcher::Event::InitDone);
        w.pvs.apply(watcher::Event::InitDone);
        w.nodes.apply_watcher_event(&watcher::Event::InitDone);
        w.snapshots.apply_watcher_event(&watcher::Event::InitDone);
        w.rules.apply_watcher_event(&watcher::Event::InitDone);
        w.policies.apply_watcher_event(&watcher::Event::InitDone);
        w.pods.apply_watcher_event(&watcher::Event::InitDone);
        w.synced.store(true, Ordering::Release);
        w.pods_synced.send_replace(true);
        // The file is the whole truth: a snapshot it does not list does not exist.
        w.snapshots_synced.store(true, Ordering::Release);
        w.rules_synced.store(true, Ordering::Release);
        w.policies_synced.store(true, Ordering::Release);
        w
    }
}

fn init_apply<K>(writer: &mut Writer<K>, object: K)
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    writer.apply_watcher_event(&watcher::Event::InitApply(object));
}

/// Loads `--objects FILE` into a synced view.
pub fn load_objects_file(path: &Path) -> Result<ClusterView, Error> {
    let display = path.display().to_string();
    let read_err = |source| Error::ReadObjects { path: display.clone(), source };
    let mut reader = BufReader::with_capacity(1 << 16, std::fs::File::open(path).map_err(read_err)?);
    let (view, writers) = ClusterView::new();
    let mut feed = Feed::start(writers);
    let parsed = if starts_like_json(&mut reader).map_err(read_err)? {
        let mut text = String::new();
        reader.read_to_string(&mut text).map_err(read_err)?;
        parse_text(&text, &mut |o| feed.apply(o))
    } else {
        parse_yaml(reader, &mut |o| feed.apply(o))
    };
    parsed.map_err(|message| Error::ParseObjects { path: display, message })?;
    feed.finish();
    let [(_, storageclasses), (_, pvcs), (_, pvs), (_, nodes)] = view.counts();
    tracing::info!(path = %path.display(), storageclasses, pvcs, pvs, nodes, "loaded offline cluster objects");
    Ok(view)
}

/// Whether the first non-blank byte opens a JSON object or array (the buffer is not consumed).
fn starts_like_json(reader: &mut impl BufRead) -> std::io::Result<bool> {
    let buf = reader.fill_buf()?;
    Ok(buf.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| matches!(b, b'{' | b'[')))
}

/// Parses YAML or JSON text. JSON takes the fast path; text that only looks like JSON (a YAML
/// flow mapping) falls back to the YAML parser, before any object was emitted.
fn parse_text(text: &str, each: &mut dyn FnMut(Object)) -> Result<(), String> {
    if starts_like_json(&mut text.as_bytes()).unwrap_or(false) {
        let docs: Result<Vec<&RawValue>, _> = serde_json::Deserializer::from_str(text).into_iter().collect();
        if let Ok(docs) = docs {
            let mut walk = Walk { index: 0, each };
            return docs.into_iter().try_for_each(|doc| walk.raw(doc));
        }
    }
    parse_yaml(text.as_bytes(), each)
}

/// Streams YAML documents: only one document's tree exists at a time.
fn parse_yaml(mut reader: impl Read, each: &mut dyn FnMut(Object)) -> Result<(), String> {
    // The file is the operator's own input, not a request: the parser's default budget (sized
    // against hostile input) would refuse a large cluster's dump, so only nesting stays bounded.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_reader_input_bytes = None;
    budget.max_events = usize::MAX;
    budget.max_nodes = usize::MAX;
    budget.max_total_scalar_bytes = usize::MAX;
    budget.max_documents = usize::MAX;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    let mut walk = Walk { index: 0, each };
    for doc in serde_saphyr::read_with_options::<_, Value>(&mut reader, options) {
        walk.value(doc.map_err(|e| e.to_string())?)?;
    }
    Ok(())
}

/// The fields that route a raw JSON document.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Header<'a> {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    api_version: String,
    #[serde(borrow, default)]
    items: Option<Vec<&'a RawValue>>,
}

/// Visits documents in order, flattening lists; `index` numbers every object for messages.
struct Walk<'f> {
    index: usize,
    each: &'f mut dyn FnMut(Object),
}

/// A document not yet typed.
enum Doc<'a> {
    Value(Value),
    Raw(&'a RawValue),
}

impl Doc<'_> {
    fn typed<T: DeserializeOwned>(self) -> Result<T, serde_json::Error> {
        match self {
            Doc::Value(v) => serde_json::from_value(v),
            Doc::Raw(r) => serde_json::from_str(r.get()),
        }
    }
}

impl Walk<'_> {
    fn value(&mut self, doc: Value) -> Result<(), String> {
        self.index += 1;
        let Value::Object(mut map) = doc else { return Ok(()) };
        let kind = map.get("kind").and_then(|k| k.as_str()).unwrap_or_default().to_string();
        if kind == "List" {
            // Items are typed one at a time and each one's tree is dropped right after.
            if let Some(Value::Array(items)) = map.remove("items") {
                return items.into_iter().try_for_each(|item| self.value(item));
            }
            return Ok(());
        }
        let api_version = map.get("apiVersion").and_then(|v| v.as_str()).unwrap_or_default().to_string();
        self.object(&kind, &api_version, Doc::Value(Value::Object(map)))
    }

    fn raw(&mut self, doc: &RawValue) -> Result<(), String> {
        self.index += 1;
        // Anything that is not an object with a string kind is ignored, as in YAML.
        let header: Header = serde_json::from_str(doc.get()).unwrap_or_default();
        if header.kind == "List" {
            return header.items.unwrap_or_default().into_iter().try_for_each(|item| self.raw(item));
        }
        self.object(&header.kind, &header.api_version, Doc::Raw(doc))
    }

    fn object(&mut self, kind: &str, api_version: &str, doc: Doc) -> Result<(), String> {
        let index = self.index;
        let ctx = |e: serde_json::Error| format!("object {index} ({kind}): {e}");
        let object = match kind {
            "StorageClass" => Object::StorageClass(doc.typed().map_err(ctx)?),
            "PersistentVolumeClaim" => Object::Pvc(doc.typed().map_err(ctx)?),
            "PersistentVolume" => Object::Pv(doc.typed().map_err(ctx)?),
            "Node" => {
                // Cached as the live reflector caches Nodes: without images and other bulk.
                let mut node: Node = doc.typed().map_err(ctx)?;
                super::trim_node(&mut node);
                Object::Node(node)
            }
            "Pod" => Object::Pod(doc.typed().map_err(ctx)?),
            "VolumeSnapshot" if api_version == SNAPSHOT_API_VERSION => Object::Snapshot(doc.typed().map_err(ctx)?),
            "Rule" if api_version == RULE_API_VERSION => Object::Rule(doc.typed().map_err(ctx)?),
            "SchedulePolicy" if api_version == RULE_API_VERSION => Object::Policy(doc.typed().map_err(ctx)?),
            _ => {
                tracing::debug!(%kind, index, "ignoring object of a kind stork does not cache");
                return Ok(());
            }
        };
        // Every Kubernetes object has a name, and the caches key on it (kube's store panics
        // without one): a nameless object is an error of the file, found by the fuzz harness.
        if object.name().is_none_or(str::is_empty) {
            return Err(format!("object {index} ({kind}): metadata.name is required"));
        }
        (self.each)(object);
        Ok(())
    }
}

impl Object {
    fn name(&self) -> Option<&str> {
        match self {
            Self::StorageClass(o) => o.metadata.name.as_deref(),
            Self::Pvc(o) => o.metadata.name.as_deref(),
            Self::Pv(o) => o.metadata.name.as_deref(),
            Self::Node(o) => o.metadata.name.as_deref(),
            Self::Snapshot(o) => o.metadata.name.as_deref(),
            Self::Pod(o) => o.metadata.name.as_deref(),
            Self::Rule(o) => o.metadata.name.as_deref(),
            Self::Policy(o) => o.metadata.name.as_deref(),
        }
    }
}

#[cfg(test)]
#[path = "offline_tests.rs"]
mod tests;
