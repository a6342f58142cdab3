//! A reflector store for objects kept in a compact form ([`super::compact`]): the same
//! watcher-event semantics as kube-runtime's `Writer`/`Store` (an initial list is buffered and
//! swapped in whole at `InitDone`), but events are taken by value, so an object is packed
//! without being cloned first.

use std::sync::{Arc, PoisonError, RwLock};

use kube::runtime::watcher;
use rustc_hash::FxHashMap;
use tokio::sync::watch;

use super::changes::{ClaimChanges, Kind};

/// A compact form of a Kubernetes object and the key the store files it under.
pub(crate) trait Packed: Send + Sync + 'static {
    /// The typed object.
    type Full;
    /// Trims and packs an object.
    fn pack(full: Self::Full) -> Self;
    /// The object's store key.
    fn key(full: &Self::Full) -> String;
}

type Map<T> = FxHashMap<Box<str>, Arc<T>>;

struct Shared<T> {
    map: RwLock<Map<T>>,
    ready: watch::Sender<bool>,
}

/// Read side; clones share the objects.
pub(crate) struct Cache<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Cache<T> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

/// Write side, fed watcher events.
pub(crate) struct CacheWriter<T> {
    shared: Arc<Shared<T>>,
    buffer: Option<Map<T>>,
    /// Where written keys are reported, for indexes derived from this store.
    log: Option<(Arc<ClaimChanges>, Kind)>,
}

/// An empty cache and its writer.
pub(crate) fn cache<T>() -> (Cache<T>, CacheWriter<T>) {
    let shared = Arc::new(Shared { map: RwLock::new(Map::default()), ready: watch::Sender::new(false) });
    (Cache { shared: shared.clone() }, CacheWriter { shared, buffer: None, log: None })
}

impl<T> Cache<T> {
    /// The object under `key`.
    pub(crate) fn get(&self, key: &str) -> Option<Arc<T>> {
        self.shared.map.read().unwrap_or_else(PoisonError::into_inner).get(key).cloned()
    }

    /// Number of objects.
    pub(crate) fn len(&self) -> usize {
        self.shared.map.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Every (key, object) pair, copied out so the lock is not held while they are used.
    pub(crate) fn entries(&self) -> Vec<(Box<str>, Arc<T>)> {
        let map = self.shared.map.read().unwrap_or_else(PoisonError::into_inner);
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Resolves once the first complete list is in (as kube-runtime's `wait_until_ready`).
    pub(crate) async fn wait_until_ready(&self) -> Result<(), watch::error::RecvError> {
        self.shared.ready.subscribe().wait_for(|ready| *ready).await.map(|_| ())
    }
}

impl<T: Packed> CacheWriter<T> {
    /// Reports every write to `log` as a change of `kind` (after the write).
    pub(crate) fn with_log(mut self, log: Arc<ClaimChanges>, kind: Kind) -> Self {
        self.log = Some((log, kind));
        self
    }

    fn changed(&self, key: Option<&str>) {
        if let Some((log, kind)) = &self.log {
            log.record(*kind, key);
        }
    }

    /// Applies one watcher event.
    pub(crate) fn apply(&mut self, event: watcher::Event<T::Full>) {
        match event {
            watcher::Event::Init => self.buffer = Some(Map::default()),
            watcher::Event::InitApply(obj) => {
                let key = T::key(&obj).into_boxed_str();
                let packed = Arc::new(T::pack(obj));
                match self.buffer.as_mut() {
                    Some(buffer) => {
                        buffer.insert(key, packed);
                    }
                    None => {
                        self.write().insert(key.clone(), packed);
                        self.changed(Some(&key));
                    }
                }
            }
            watcher::Event::InitDone => {
                if let Some(mut buffer) = self.buffer.take() {
                    buffer.shrink_to_fit();
                    *self.write() = buffer;
                }
                // Every object was replaced by a new version, changed or not.
                self.changed(None);
                self.shared.ready.send_replace(true);
            }
            watcher::Event::Apply(obj) => {
                let key = T::key(&obj).into_boxed_str();
                let packed = Arc::new(T::pack(obj));
                self.write().insert(key.clone(), packed);
                self.changed(Some(&key));
            }
            watcher::Event::Delete(obj) => {
                let key = T::key(&obj);
                self.write().remove(key.as_str());
                self.changed(Some(&key));
            }
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Map<T>> {
        self.shared.map.write().unwrap_or_else(PoisonError::into_inner)
    }
}
