//! The container image archive `just image` writes, `dist/stork-<version>.oci.tar`: an OCI
//! layout that also carries Docker's manifest.json, holding one static stork that runs as
//! 65532:65532. `just image` runs this file (`cargo test -p stork-e2e --test image`); so does
//! `cargo test -p stork-e2e`, which therefore needs the archive.
//!
//! A missing archive fails every test with a pointer to `just image`: a skipped image test would
//! let CI pass without ever having checked the image. `STORK_IMAGE_ARCHIVE` names another archive
//! (relative paths from the repository root).
//!
//! Needs `tar`, `gzip` and `sha256sum` on PATH; no container runtime (the binary is run from the
//! unpacked layer).

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use serde_json::Value;
use stork_e2e::repo_root;

/// The repository the image is published to; the tag is the Cargo version.
const REPOSITORY: &str = "ghcr.io/stork-rs/stork";
/// Budget for the whole archive: a static stork is about a third of this, gzipped.
const MAX_ARCHIVE_BYTES: u64 = 30_000_000;

#[test]
fn the_image_archive_is_an_oci_layout_that_docker_load_reads_too() {
    let image = image();
    let layout: Value = read_json(&image.layout.join("oci-layout"));
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");

    // index.json: one image, named the way `docker save` names it, so containerd (`ctr images
    // import`, `kind load image-archive`) and OCI tools find the tag.
    let manifests = image.index["manifests"].as_array().expect("index.json manifests");
    assert_eq!(manifests.len(), 1, "{:#}", image.index);
    let entry = &manifests[0];
    assert_eq!(entry["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(entry["annotations"]["io.containerd.image.name"], image.tag.as_str(), "{entry:#}");
    assert_eq!(entry["annotations"]["org.opencontainers.image.ref.name"], image.version.as_str(), "{entry:#}");

    // Every blob the manifest names is there, with its digest and size.
    assert_eq!(image.manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(image.manifest["config"]["mediaType"], "application/vnd.oci.image.config.v1+json");
    let layers = image.manifest["layers"].as_array().expect("manifest layers");
    for descriptor in [entry, &image.manifest["config"]].into_iter().chain(layers) {
        image.blob(descriptor);
    }

    // manifest.json (Docker before 25, podman's docker-archive reader): the same config and
    // layer blobs, under the tag.
    let docker = image.docker_manifest.as_array().expect("manifest.json is an array");
    assert_eq!(docker.len(), 1, "{:#}", image.docker_manifest);
    assert_eq!(docker[0]["RepoTags"], serde_json::json!([image.tag]), "{:#}", docker[0]);
    assert_eq!(docker[0]["Config"], blob_path(&image.manifest["config"]));
    let docker_layers: Vec<Value> = layers.iter().map(blob_path).collect();
    assert_eq!(docker[0]["Layers"], Value::from(docker_layers));
    for path in docker[0]["Layers"].as_array().unwrap().iter().chain([&docker[0]["Config"]]) {
        assert!(image.layout.join(path.as_str().unwrap()).is_file(), "manifest.json names a missing {path}");
    }

    assert!(
        image.archive_bytes < MAX_ARCHIVE_BYTES,
        "{} is {} bytes, over the {MAX_ARCHIVE_BYTES}-byte budget",
        image.archive.display(),
        image.archive_bytes
    );
}

#[test]
fn the_image_archive_runs_stork_as_uid_65532_from_a_single_static_layer() {
    let image = image();
    let config = &image.config;
    assert_eq!((config["architecture"].as_str(), config["os"].as_str()), (Some("amd64"), Some("linux")));
    let run = &config["config"];
    assert_eq!(run["Entrypoint"], serde_json::json!(["/stork"]), "{run:#}");
    assert_eq!(run["User"], "65532:65532", "{run:#}");
    assert!(run["Cmd"].is_null() || run["Cmd"] == serde_json::json!(["--help"]), "{run:#}");

    // One layer, holding only /stork: root-owned, executable by anyone (the image runs it as
    // 65532). Docker checks the layer against the config's diff_id on load, so check it here.
    let layers = image.manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{:#}", image.manifest);
    assert_eq!(layers[0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
    let layer = image.blob(&layers[0]);
    let diff_id = format!("sha256:{}", sha256_hex(&run_ok(Command::new("gzip").arg("-dc").arg(&layer)).stdout));
    assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!([diff_id]));
    let listing = String::from_utf8(run_ok(Command::new("tar").args(["--numeric-owner", "-tvzf"]).arg(&layer)).stdout)
        .expect("tar listing");
    let entries: Vec<Vec<&str>> = listing.lines().map(|line| line.split_whitespace().collect()).collect();
    assert_eq!(entries.len(), 1, "the layer should hold only stork:\n{listing}");
    let entry = &entries[0];
    assert_eq!((entry[0], entry[1], *entry.last().unwrap()), ("-rwxr-xr-x", "0/0", "stork"), "{listing}");

    // The image has no /lib: the binary must not need a loader or shared libraries.
    let elf = std::fs::read(image.rootfs.join("stork")).expect("read the unpacked stork");
    let linking = elf_linking(&elf).unwrap_or_else(|e| panic!("/stork is not a 64-bit x86-64 ELF: {e}"));
    assert_eq!(linking, Linking { interpreter: false, needed: 0 }, "/stork is dynamically linked");

    assert_eq!(image.reported, format!("stork {} (rev {})", image.version, image.revision()));
    let demo = run_in_image(image, &["demo", "--once"], Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&demo.stdout);
    assert!(
        demo.status.success(),
        "stork demo --once failed ({}):\n{stdout}\n{}",
        demo.status,
        String::from_utf8_lossy(&demo.stderr)
    );
    assert!(stdout.contains("NODE") && stdout.contains("FILTER"), "no decision table:\n{stdout}");
}

#[test]
fn the_image_labels_name_the_cargo_version_and_the_revision_stork_reports() {
    let image = image();
    let labels = &image.config["config"]["Labels"];
    let label = |key: &str| labels[format!("org.opencontainers.image.{key}")].as_str().unwrap_or_default().to_owned();
    assert_eq!(label("version"), image.version, "{labels:#}");
    assert_eq!(label("revision"), image.revision(), "{labels:#}");
    assert_eq!(label("licenses"), cargo_package_field("license"), "{labels:#}");
    assert_eq!(label("title"), "stork", "{labels:#}");
    assert!(label("source").starts_with("https://"), "{labels:#}");
    assert!(!label("revision").is_empty(), "{labels:#}");
}

/// The unpacked archive, shared by the tests (unpacked once per test binary).
struct Image {
    archive: PathBuf,
    archive_bytes: u64,
    /// The archive's contents: oci-layout, index.json, manifest.json, blobs/.
    layout: PathBuf,
    /// The image's only layer, unpacked.
    rootfs: PathBuf,
    /// Scratch space for the binary's own files (`stork demo` writes to its temp dir).
    scratch: PathBuf,
    version: String,
    tag: String,
    index: Value,
    manifest: Value,
    config: Value,
    docker_manifest: Value,
    /// The first line `/stork --version` prints.
    reported: String,
}

impl Image {
    /// The revision inside `stork 0.1.0 (rev 1a2b3c4d5e6f)`.
    fn revision(&self) -> &str {
        let rev = self.reported.split_once("(rev ").and_then(|(_, rest)| rest.strip_suffix(')'));
        rev.unwrap_or_else(|| panic!("--version printed {:?}, not `stork <version> (rev <revision>)`", self.reported))
    }

    /// The blob a descriptor names, after checking its size and digest.
    fn blob(&self, descriptor: &Value) -> PathBuf {
        let digest = descriptor["digest"].as_str().unwrap_or_else(|| panic!("no digest in {descriptor}"));
        let hex = digest.strip_prefix("sha256:").unwrap_or_else(|| panic!("not a sha256 digest: {digest}"));
        let path = self.layout.join("blobs/sha256").join(hex);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("blob {digest} ({e})"));
        assert_eq!(Some(bytes.len() as u64), descriptor["size"].as_u64(), "size of {digest}");
        assert_eq!(sha256_hex(&bytes), hex, "contents of {digest}");
        path
    }
}

fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(unpack)
}

fn unpack() -> Image {
    let root = repo_root();
    let version = cargo_package_field("version");
    let archive = match std::env::var_os("STORK_IMAGE_ARCHIVE") {
        Some(path) => root.join(path),
        None => root.join(format!("dist/stork-{version}.oci.tar")),
    };
    let archive_bytes = std::fs::metadata(&archive).map(|m| m.len()).unwrap_or_else(|e| {
        panic!(
            "no image archive at {} ({e}): build it with `just image` first \
             (or set STORK_IMAGE_ARCHIVE to an archive's path)",
            archive.display()
        )
    });

    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    remove_stale_unpacks(tmp);
    let dir = tmp.join(format!("image-test-{}", std::process::id()));
    let (layout, rootfs, scratch) = (dir.join("layout"), dir.join("rootfs"), dir.join("tmp"));
    for d in [&layout, &rootfs, &scratch] {
        std::fs::create_dir_all(d).expect("create the unpack directories");
    }
    run_ok(Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(&layout));

    let index: Value = read_json(&layout.join("index.json"));
    let blob = |digest: &Value| {
        let hex = digest.as_str().and_then(|d| d.strip_prefix("sha256:")).expect("a sha256 digest");
        layout.join("blobs/sha256").join(hex)
    };
    let manifest: Value = read_json(&blob(&index["manifests"][0]["digest"]));
    let config: Value = read_json(&blob(&manifest["config"]["digest"]));
    let docker_manifest: Value = read_json(&layout.join("manifest.json"));
    for layer in manifest["layers"].as_array().expect("manifest layers") {
        run_ok(Command::new("tar").arg("-xzf").arg(blob(&layer["digest"])).arg("-C").arg(&rootfs));
    }

    let mut image = Image {
        archive,
        archive_bytes,
        layout,
        rootfs,
        scratch,
        tag: format!("{REPOSITORY}:{version}"),
        version,
        index,
        manifest,
        config,
        docker_manifest,
        reported: String::new(),
    };
    let out = run_in_image(&image, &["--version"], Duration::from_secs(30));
    assert!(out.status.success(), "/stork --version failed: {}", String::from_utf8_lossy(&out.stderr));
    image.reported = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().trim().to_owned();
    image
}

/// Removes what earlier runs unpacked (a static cannot clean up after itself), except the
/// directories of test processes still running.
fn remove_stale_unpacks(tmp: &Path) {
    for entry in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("image-test-")) else { continue };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Runs the unpacked `/stork` as the image would: no environment (the image sets none) but a
/// temp dir, since the image has no /tmp and `stork demo` writes its scenario files there.
fn run_in_image(image: &Image, args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(image.rootfs.join("stork"))
        .args(args)
        .env_clear()
        .env("TMPDIR", &image.scratch)
        .current_dir(&image.scratch)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the image's /stork ({e})"));
    // Drain the pipes while waiting, so a chatty child cannot block on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stdout.read_to_end(&mut buf).map(|_| buf)
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stderr.read_to_end(&mut buf).map(|_| buf)
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for /stork") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("/stork {} did not finish within {limit:?}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(50)); // poll until the deadline
    };
    let stdout = out_reader.join().unwrap().expect("read stdout");
    let stderr = err_reader.join().unwrap().expect("read stderr");
    Output { status, stdout, stderr }
}

/// A field of the root Cargo.toml's `[package]` table (a plain string such as `version`).
fn cargo_package_field(key: &str) -> String {
    let path = repo_root().join("Cargo.toml");
    let text = std::fs::read_to_string(&path).expect("read Cargo.toml");
    let mut in_package = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package
            && let Some((name, value)) = line.split_once('=')
            && name.trim() == key
        {
            return value.trim().trim_matches('"').to_owned();
        }
    }
    panic!("no {key} in the [package] table of {}", path.display())
}

/// What a linker left for the loader: an interpreter (PT_INTERP) and shared libraries
/// (DT_NEEDED). A static-pie binary has a dynamic section too, but only for relocating itself.
#[derive(Debug, PartialEq, Eq)]
struct Linking {
    interpreter: bool,
    needed: usize,
}

/// Reads the program headers of a little-endian ELF64 x86-64 executable.
fn elf_linking(elf: &[u8]) -> Result<Linking, String> {
    const PT_DYNAMIC: u32 = 2;
    const PT_INTERP: u32 = 3;
    const DT_NEEDED: u64 = 1;
    const EM_X86_64: u16 = 62;
    let bytes = |at: usize, len: usize| elf.get(at..at + len).ok_or_else(|| format!("truncated at {at}"));
    let u16_at = |at| bytes(at, 2).map(|b| u16::from_le_bytes(b.try_into().unwrap()));
    let u32_at = |at| bytes(at, 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()));
    let u64_at = |at| bytes(at, 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()));
    if bytes(0, 6)? != b"\x7fELF\x02\x01" {
        return Err("not a little-endian ELF64 file".into());
    }
    if u16_at(0x12)? != EM_X86_64 {
        return Err(format!("machine {} is not x86-64", u16_at(0x12)?));
    }
    let (phoff, phentsize, phnum) = (u64_at(0x20)? as usize, u16_at(0x36)? as usize, u16_at(0x38)? as usize);
    let mut linking = Linking { interpreter: false, needed: 0 };
    for header in (0..phnum).map(|i| phoff + i * phentsize) {
        match u32_at(header)? {
            PT_INTERP => linking.interpreter = true,
            PT_DYNAMIC => {
                let (offset, size) = (u64_at(header + 8)? as usize, u64_at(header + 32)? as usize);
                for entry in (offset..offset + size).step_by(16) {
                    match u64_at(entry)? {
                        0 => break, // DT_NULL ends the table
                        DT_NEEDED => linking.needed += 1,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(linking)
}

fn blob_path(descriptor: &Value) -> Value {
    let digest = descriptor["digest"].as_str().expect("descriptor digest");
    Value::from(format!("blobs/{}", digest.replacen(':', "/", 1)))
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("read {} ({e})", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{} is not JSON ({e})", path.display()))
}

fn sha256_hex(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("sha256sum not runnable ({e})"));
    let mut stdin = child.stdin.take().unwrap();
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("sha256sum");
    writer.join().unwrap().expect("feed sha256sum");
    assert!(out.status.success(), "sha256sum failed");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_owned()
}

/// Runs a tool the test needs and insists it succeeded.
fn run_ok(command: &mut Command) -> Output {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?} not runnable ({e})"));
    assert!(out.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}
