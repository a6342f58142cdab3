//! Change notification for a handful of files (TLS cert/key, the mock driver topology).
//!
//! Kubernetes projects Secrets and ConfigMaps into a pod through an "atomic writer": the visible
//! `tls.crt` is a symlink to `..data/tls.crt`, and `..data` is itself a symlink that is swapped to a
//! new timestamped directory on update. The inode behind `tls.crt` never changes, so watching the
//! file itself misses every update. [`FileWatch`] therefore watches the *parent directories* and
//! filters events by name, and also polls `(mtime, len, canonical path)` as a fallback for cases
//! notify cannot see (network filesystems, a symlink pointing outside the watched directory, a
//! dropped inotify queue).

use std::{
    collections::BTreeSet,
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::{sync::mpsc, time::Instant};
use tracing::{debug, warn};

/// Quiet period after the first event before [`FileWatch::changed`] resolves, so a cert and key
/// written one after the other produce a single wake-up.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Upper bound on debouncing, so a file that is rewritten continuously still wakes us up.
const MAX_DEBOUNCE: Duration = Duration::from_secs(1);

/// Errors from setting up a [`FileWatch`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `FileWatch::new` was called with an empty list of paths.
    #[error("failed to watch files: no paths given")]
    NoPaths,
    /// The platform notification backend (inotify, `FSEvents`, ...) could not be created.
    #[error("failed to start the file watcher")]
    Start(#[source] notify::Error),
    /// A parent directory could not be watched: it is missing, unreadable, or the inotify watch
    /// limit is exhausted.
    #[error("failed to watch directory {dir}")]
    WatchDir {
        /// The directory that could not be watched.
        dir: PathBuf,
        /// The underlying notify error.
        #[source]
        source: notify::Error,
    },
}

/// What the poll fallback compares. The canonical path catches a `..data` symlink swap even when
/// the new file has the same size and an identical mtime.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    mtime: Option<SystemTime>,
    len: u64,
    canonical: PathBuf,
}

/// Watches a set of files and reports when any of them may have changed.
///
/// Wake-ups are a hint, not a guarantee that content differs: callers re-read the files and
/// decide for themselves (for example, `tls::ReloadingCertResolver::reload` returns `Ok(false)`
/// when nothing changed).
pub struct FileWatch {
    files: Vec<PathBuf>,
    poll: Duration,
    next_poll: Instant,
    stamps: Vec<Option<Stamp>>,
    rx: mpsc::Receiver<()>,
    // Dropping the watcher stops event delivery, so it lives as long as the receiver.
    _watcher: RecommendedWatcher,
}

impl std::fmt::Debug for FileWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWatch").field("files", &self.files).field("poll", &self.poll).finish_non_exhaustive()
    }
}

impl FileWatch {
    /// Watch the given files.
    ///
    /// Watches their PARENT DIRECTORIES (a Kubernetes Secret/ConfigMap volume swaps a `..data`
    /// symlink, so the file inode never changes), plus a poll fallback every `poll` that compares
    /// (mtime, len, canonical path) of each file; `poll` is raised to at least 100ms. The files
    /// themselves need not exist yet, but their parent directories must.
    pub fn new(paths: &[PathBuf], poll: Duration) -> Result<Self, Error> {
        if paths.is_empty() {
            return Err(Error::NoPaths);
        }
        // A zero interval would turn the poll fallback into a busy loop.
        let poll = poll.max(DEBOUNCE);
        let files = paths.to_vec();
        let names: BTreeSet<OsString> = files.iter().filter_map(|p| p.file_name().map(OsString::from)).collect();

        // Capacity 1 is enough: a pending message already means "something changed", and the
        // notify thread must never block on us.
        let (tx, rx) = mpsc::channel(1);
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let relevant = match res {
                Ok(event) => is_relevant(&event, &names),
                Err(err) => {
                    // An error may mean lost events (e.g. queue overflow); waking up costs one
                    // re-read, missing a rotation costs an expired certificate.
                    warn!(error = %err, "file watcher reported an error; treating it as a change");
                    true
                }
            };
            if relevant {
                let _ = tx.try_send(());
            }
        })
        .map_err(Error::Start)?;

        let dirs: BTreeSet<PathBuf> = files.iter().map(|p| parent_dir(p)).collect();
        for dir in dirs {
            watcher
                .watch(&dir, RecursiveMode::NonRecursive)
                .map_err(|source| Error::WatchDir { dir: dir.clone(), source })?;
            debug!(dir = %dir.display(), "watching directory");
        }

        let stamps = files.iter().map(|p| stamp(p)).collect();
        Ok(Self { files, poll, next_poll: Instant::now() + poll, stamps, rx, _watcher: watcher })
    }

    /// Resolves after something changed (debounced ~100ms so a cert+key pair written in two steps
    /// gives one wake-up). Returns false only if the watcher is gone.
    pub async fn changed(&mut self) -> bool {
        loop {
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(()) => break,
                    None => return false,
                },
                () = tokio::time::sleep_until(self.next_poll) => {
                    self.next_poll = Instant::now() + self.poll;
                    if self.current_stamps() != self.stamps {
                        debug!("poll fallback detected a change");
                        break;
                    }
                }
            }
        }

        let deadline = Instant::now() + MAX_DEBOUNCE;
        // Each further event restarts the quiet period. A closed channel ends it too: this change
        // is still reported, and the next call returns false.
        while Instant::now() < deadline {
            if !matches!(tokio::time::timeout(DEBOUNCE, self.rx.recv()).await, Ok(Some(()))) {
                break;
            }
        }
        self.stamps = self.current_stamps();
        true
    }

    fn current_stamps(&self) -> Vec<Option<Stamp>> {
        self.files.iter().map(|p| stamp(p)).collect()
    }
}

/// `Path::new("tls.crt").parent()` is `Some("")`, which notify cannot watch.
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Keeps unrelated churn in a shared directory (say `/etc`) from waking us up. Names starting
/// with `..` are the atomic writer's `..data` symlink and timestamped directories.
fn is_relevant(event: &notify::Event, names: &BTreeSet<OsString>) -> bool {
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    event
        .paths
        .iter()
        .any(|p| p.file_name().is_some_and(|n| names.contains(n) || n.to_string_lossy().starts_with("..")))
}

/// `None` while the file is missing or unreadable; a later `Some` then counts as a change.
fn stamp(path: &Path) -> Option<Stamp> {
    let meta = fs::metadata(path).ok()?;
    Some(Stamp { mtime: meta.modified().ok(), len: meta.len(), canonical: fs::canonicalize(path).ok()? })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG_POLL: Duration = Duration::from_secs(3600);

    async fn wakes_within(watch: &mut FileWatch, limit: Duration) -> bool {
        tokio::time::timeout(limit, watch.changed()).await.unwrap_or(false)
    }

    #[tokio::test]
    async fn rewriting_a_watched_file_wakes_the_watcher_once() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        fs::write(&cert, "a").unwrap();
        fs::write(&key, "a").unwrap();
        let mut watch = FileWatch::new(&[cert.clone(), key.clone()], LONG_POLL).unwrap();

        fs::write(&cert, "bb").unwrap();
        fs::write(&key, "bb").unwrap();

        assert!(wakes_within(&mut watch, Duration::from_secs(5)).await);
        // Both writes fell inside one debounce window, so there is nothing left to report.
        assert!(!wakes_within(&mut watch, Duration::from_millis(300)).await);
    }

    #[tokio::test]
    async fn swapping_the_data_symlink_wakes_the_watcher() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (ts, body) in [("..ts1", "one"), ("..ts2", "two")] {
            fs::create_dir(root.join(ts)).unwrap();
            fs::write(root.join(ts).join("topology.yaml"), body).unwrap();
        }
        std::os::unix::fs::symlink("..ts1", root.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/topology.yaml", root.join("topology.yaml")).unwrap();
        let mut watch = FileWatch::new(&[root.join("topology.yaml")], LONG_POLL).unwrap();

        std::os::unix::fs::symlink("..ts2", root.join("..data_tmp")).unwrap();
        fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();

        assert!(wakes_within(&mut watch, Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn unrelated_files_in_the_same_directory_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let watched = dir.path().join("tls.crt");
        fs::write(&watched, "a").unwrap();
        let mut watch = FileWatch::new(std::slice::from_ref(&watched), LONG_POLL).unwrap();

        fs::write(dir.path().join("other.txt"), "noise").unwrap();

        assert!(!wakes_within(&mut watch, Duration::from_millis(300)).await);
    }

    #[tokio::test]
    async fn poll_catches_an_edit_behind_a_symlink_outside_the_watched_directory() {
        let (watched_dir, target_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let target = target_dir.path().join("real.crt");
        fs::write(&target, "a").unwrap();
        let link = watched_dir.path().join("tls.crt");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let mut watch = FileWatch::new(&[link], Duration::from_millis(50)).unwrap();

        fs::write(&target, "changed length").unwrap();

        assert!(wakes_within(&mut watch, Duration::from_secs(5)).await);
    }

    #[test]
    fn an_empty_path_list_is_rejected() {
        assert!(matches!(FileWatch::new(&[], LONG_POLL), Err(Error::NoPaths)));
    }

    #[test]
    fn a_missing_parent_directory_is_rejected_with_its_path() {
        let err = FileWatch::new(&[PathBuf::from("/nonexistent/stork/tls.crt")], LONG_POLL).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/stork"), "{err}");
    }
}
