//! The module boundaries, checked on the source: surfaces (extender, webhook, monitor,
//! snapshot) read the shared model (`model`, `cluster`, the `driver` trait) and never each
//! other or a driver implementation; the shared model imports no surface.
//!
//! Test code is exempt (fakes and fixtures are fine there): files whose name contains `test`,
//! and everything after a file's first `#[cfg(test)]`.

use std::path::{Path, PathBuf};

const SURFACES: &[&str] = &["extender", "webhook", "monitor", "snapshot"];
const SHARED: &[&str] = &["model", "cluster", "driver", "rule"];
/// Driver implementations: only `app` (and tests) may name them.
const DRIVER_IMPLS: &[&str] = &["mock", "csi"];

#[test]
fn no_surface_imports_another_surface_or_a_driver_implementation() {
    let mut violations = Vec::new();
    for surface in SURFACES {
        for (file, path) in crate_paths(surface) {
            let forbidden = match path.as_slice() {
                [top, ..] if top != surface && SURFACES.contains(&top.as_str()) => true,
                [driver, imp, ..] if driver == "driver" && DRIVER_IMPLS.contains(&imp.as_str()) => true,
                _ => false,
            };
            if forbidden {
                violations.push(format!("{}: crate::{}", file.display(), path.join("::")));
            }
        }
    }
    assert!(violations.is_empty(), "surfaces reach into each other:\n{}", violations.join("\n"));
}

#[test]
fn the_shared_model_imports_no_surface() {
    let mut violations = Vec::new();
    for shared in SHARED {
        for (file, path) in crate_paths(shared) {
            if path.first().is_some_and(|top| SURFACES.contains(&top.as_str())) {
                violations.push(format!("{}: crate::{}", file.display(), path.join("::")));
            }
        }
    }
    assert!(violations.is_empty(), "the shared model imports a surface:\n{}", violations.join("\n"));
}

#[test]
fn the_path_reader_expands_nested_use_groups() {
    let paths = paths_in("use crate::{a::{b, c::D}, e}; fn f() { crate::g::h(); }");
    assert_eq!(paths, [vec!["a", "b"], vec!["a", "c", "D"], vec!["e"], vec!["g", "h"]]);
}

/// Every `crate::…` path named by the non-test code of `src/<module>` (a directory or a file).
fn crate_paths(module: &str) -> Vec<(PathBuf, Vec<String>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let dir = root.join(module);
    if dir.is_dir() {
        collect(&dir, &mut files);
    } else {
        files.push(root.join(format!("{module}.rs")));
    }
    assert!(!files.is_empty(), "no source found for module {module} under {}", root.display());
    let mut out = Vec::new();
    for file in files.into_iter().filter(|f| !f.file_name().unwrap().to_string_lossy().contains("test")) {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        out.extend(paths_in(code).into_iter().map(|p| (file.clone(), p.into_iter().map(String::from).collect())));
    }
    out
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The paths after each `crate::` in `code`, with `use` groups (`{a, b::{c}}`) expanded.
/// Comments are not stripped: a doc comment naming `crate::x` counts, which errs on the strict side.
fn paths_in(code: &str) -> Vec<Vec<&str>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        rest = tree(rest, Vec::new(), &mut out);
    }
    out
}

/// Reads one use-tree at the start of `s` under `prefix`; returns what follows it.
fn tree<'a>(mut s: &'a str, mut prefix: Vec<&'a str>, out: &mut Vec<Vec<&'a str>>) -> &'a str {
    loop {
        s = s.trim_start();
        if let Some(group) = s.strip_prefix('{') {
            s = group;
            loop {
                s = tree(s, prefix.clone(), out).trim_start();
                match s.chars().next() {
                    Some(',') => s = &s[1..],
                    Some('}') => return &s[1..],
                    _ => return s,
                }
            }
        }
        let len = s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
        if len == 0 {
            if !prefix.is_empty() {
                out.push(prefix);
            }
            return s;
        }
        prefix.push(&s[..len]);
        s = &s[len..];
        match s.strip_prefix("::") {
            Some(next) => s = next,
            None => {
                out.push(prefix);
                return s;
            }
        }
    }
}
