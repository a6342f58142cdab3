//! Each worker's current input, kept in a memory-mapped file. A stack overflow or an abort
//! kills the process before anything can be written, but the mapped pages are the file's: the
//! supervisor finds the input that was running there and replays it.
//!
//! Layout: `FZIN`, 4 bytes reserved, the target name (16 bytes, NUL-padded), the input's
//! length (u64, little-endian; 0 when the worker is idle), then the input.

use std::{
    fs::OpenOptions,
    path::{Path, PathBuf},
};

use anyhow::Context;
use memmap2::MmapMut;

use crate::mutate::MAX_INPUT;

const MAGIC: &[u8; 4] = b"FZIN";
const HEADER: usize = 32;
const SIZE: usize = HEADER + MAX_INPUT + (1 << 20);

/// One worker's slot.
pub struct Slot {
    map: MmapMut,
}

impl Slot {
    /// Creates (or reuses) slot file `index` in `dir` for `target`, idle.
    pub fn open(dir: &Path, index: usize, target: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("worker-{index}.bin"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.set_len(SIZE as u64)?;
        // SAFETY: the file is this worker's alone while it runs; the supervisor reads it only
        // after the process is gone.
        let mut map = unsafe { MmapMut::map_mut(&file) }.with_context(|| format!("mapping {}", path.display()))?;
        map[..4].copy_from_slice(MAGIC);
        let name = target.as_bytes();
        map[8..24].fill(0);
        map[8..8 + name.len().min(16)].copy_from_slice(&name[..name.len().min(16)]);
        let mut slot = Self { map };
        slot.clear();
        Ok(slot)
    }

    /// Notes `input` as running.
    pub fn record(&mut self, input: &[u8]) {
        let n = input.len().min(SIZE - HEADER);
        self.map[HEADER..HEADER + n].copy_from_slice(&input[..n]);
        self.map[24..32].copy_from_slice(&(n as u64).to_le_bytes());
    }

    /// Notes that nothing is running.
    pub fn clear(&mut self) {
        self.map[24..32].fill(0);
    }
}

/// The inputs that were running in `dir`'s slots: (slot path, target, input).
pub fn running(dir: &Path) -> Vec<(PathBuf, String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out = Vec::new();
    for path in entries.flatten().map(|e| e.path()) {
        if let Some((target, input)) = std::fs::read(&path).ok().as_deref().and_then(parse) {
            out.push((path, target, input));
        }
    }
    out.sort();
    out
}

/// The target and input of a slot file's bytes, if an input was running.
pub fn parse(bytes: &[u8]) -> Option<(String, Vec<u8>)> {
    if bytes.len() < HEADER || &bytes[..4] != MAGIC {
        return None;
    }
    let name = String::from_utf8_lossy(&bytes[8..24]).trim_end_matches('\0').to_string();
    let len = u64::from_le_bytes(bytes[24..32].try_into().ok()?) as usize;
    (len > 0 && HEADER + len <= bytes.len()).then(|| (name, bytes[HEADER..HEADER + len].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_input_is_found_until_cleared() {
        let dir = std::env::temp_dir().join(format!("stork-fuzz-inflight-{}", std::process::id()));
        let mut slot = Slot::open(&dir, 0, "review").unwrap();
        slot.record(b"{\"request\":1}");
        assert_eq!(running(&dir), vec![(dir.join("worker-0.bin"), "review".into(), b"{\"request\":1}".to_vec())]);
        slot.clear();
        assert!(running(&dir).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
