//! Offline cluster object files (`Objects::from_yaml`, what `--objects` holds): multi-document
//! YAML and JSON, `kind: List` included.
//!
//! Properties, besides never panicking:
//! - objects that load make a view, and the seed scenario's extender and webhook requests are
//!   answered against it without error;
//! - one input in eight also goes through `load_objects_file` (the streaming file reader stork
//!   starts with), which must agree with `from_yaml` on success and on what it cached.

use std::{cell::RefCell, path::PathBuf, sync::Arc};

use stork::{
    cluster::{ClusterView, Objects, load_objects_file},
    extender::http::ExtenderState,
    webhook::{
        WebhookState,
        review::{review_mutate, review_validate},
    },
};

use super::{Check, Fixture, Seen, topology};
use crate::corpus::repo_root;

/// The `objects` target's properties.
pub struct ObjectsFile {
    fixture: Arc<Fixture>,
    extender_requests: Vec<Vec<u8>>,
    reviews: Vec<Vec<u8>>,
}

impl ObjectsFile {
    /// The properties, checked against `fixture`'s seed cluster.
    pub fn new(fixture: Arc<Fixture>) -> anyhow::Result<Self> {
        let root = repo_root();
        let reviews = ["pod-with-driver-pvc.json", "pvc-restore-with-snapshot.json"]
            .iter()
            .map(|f| std::fs::read(root.join("tests/data/admission").join(f)))
            .collect::<Result<_, _>>()?;
        Ok(Self { fixture, extender_requests: topology::seed_requests()?, reviews })
    }
}

thread_local! {
    /// This worker's scratch file for `load_objects_file`.
    static SCRATCH: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

impl Check for ObjectsFile {
    fn run(&self, input: &[u8], seen: &mut Seen) -> Result<(), String> {
        let text = String::from_utf8_lossy(input);
        let loaded = Objects::from_yaml(&text);
        if input.len().is_multiple_of(8) {
            from_file_agrees(&text, &loaded)?;
        }
        let Some(objects) = super::loaded(loaded, seen) else { return Ok(()) };
        let cached = objects.storage_classes.len() + objects.pvcs.len() + objects.pvs.len() + objects.nodes.len();
        seen.class(if cached + objects.snapshots.len() == 0 { "ok, nothing cached" } else { "ok, objects cached" });
        let (webhook, extender) = self.fixture.seed_cluster();
        let view = objects.into_view();
        let state = ExtenderState { cluster: view.clone(), ..extender.clone() };
        topology::decisions_answer(&state, &self.extender_requests, input.len())?;
        let state = WebhookState { cluster: view, ..webhook.clone() };
        let review = &self.reviews[input.len() % self.reviews.len()];
        if let Err((_, e)) = review_mutate(&state, review) {
            return Err(format!("a loadable file made the seed /mutate review fail: {e}"));
        }
        if let Err((_, e)) = review_validate(&state, review) {
            return Err(format!("a loadable file made the seed /validate review fail: {e}"));
        }
        Ok(())
    }
}

/// `load_objects_file` on the same text: loads exactly when `from_yaml` does, caching the same.
fn from_file_agrees(text: &str, loaded: &Result<Objects, String>) -> Result<(), String> {
    let path = SCRATCH.with(|s| {
        s.borrow_mut()
            .get_or_insert_with(|| {
                let dir = crate::engine::out_dir().join("tmp");
                let _ = std::fs::create_dir_all(&dir);
                dir.join(format!("objects-{:?}.yaml", std::thread::current().id()).replace(['(', ')'], ""))
            })
            .clone()
    });
    std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    let from_file = load_objects_file(&path);
    match (loaded, from_file) {
        (Err(_), Err(_)) => Ok(()),
        (Ok(objects), Ok(view)) => {
            let expected = objects.clone().into_view();
            if counts(&view) == counts(&expected) {
                Ok(())
            } else {
                Err(format!("load_objects_file cached {:?}, from_yaml {:?}", counts(&view), counts(&expected)))
            }
        }
        (Ok(_), Err(e)) => Err(format!("from_yaml loads what load_objects_file rejects: {e}")),
        (Err(e), Ok(_)) => Err(format!("load_objects_file loads what from_yaml rejects: {e}")),
    }
}

fn counts(view: &ClusterView) -> Vec<usize> {
    view.counts().iter().map(|(_, n)| *n).collect()
}
