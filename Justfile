# stork tasks. `just` lists them.

# The stork binary e2e and bench-smoke run: the debug build unless STORK_BIN names another (CI
# passes the static release binary `just image` built, so the suites test what ships).
stork_bin := env_var_or_default("STORK_BIN", "target/debug/stork")

[private]
default:
    @just --list --unsorted

# Run the embedded seed scenario and keep serving it (Ctrl-C stops)
demo:
    cargo run --release -- demo

# Unit, handler and TLS tests (the README's test command)
test:
    cargo test

# Formatting and lints as CI runs them
lint:
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings

# End-to-end suite on a real local control plane (builds the Go components once, then cached),
# with the deploy suite (`deploy::`: the manifests as rendered, run as their ServiceAccounts)
# and the Portworx driver's suite against the real OpenStorage SDK server (`openstorage::`).
# The image test runs in `just image`.
e2e:
    integration/cluster/build.sh
    integration/osd/build.sh
    cargo build --bin stork --bin kubectl-stork && cargo build -p stork-e2e --tests
    cargo test -p stork-e2e --lib --bins --test e2e -- --test-threads=1

# Start etcd, kube-apiserver, KCM, the default and `stork` schedulers, KWOK and stork; leave them running
cluster-up:
    #!/usr/bin/env bash
    set -euo pipefail
    integration/cluster/build.sh
    cargo build --bin stork && cargo build -p stork-e2e --bin stork-cluster
    mkdir -p integration/.cache
    log=integration/.cache/cluster-up.log pidfile=integration/.cache/cluster-up.pid
    if [[ -f $pidfile ]] && kill -0 "$(cat $pidfile)" 2>/dev/null; then
        echo "a cluster is already running (pid $(cat $pidfile)); run: just cluster-down" >&2; exit 1
    fi
    nohup target/debug/stork-cluster >"$log" 2>&1 &
    echo $! > "$pidfile"
    for _ in $(seq 600); do
        grep -q '^export STORK_MOCK_TOPOLOGY=' "$log" && break
        kill -0 "$(cat $pidfile)" 2>/dev/null || { echo "cluster failed to start:" >&2; tail -n 40 "$log" >&2; exit 1; }
        sleep 0.5
    done
    grep -q '^export STORK_MOCK_TOPOLOGY=' "$log" || { echo "cluster did not start within 5 minutes" >&2; tail -n 40 "$log" >&2; exit 1; }
    grep -v '^\[e2e' "$log"

# Stop everything `just cluster-up` started
cluster-down:
    #!/usr/bin/env bash
    set -euo pipefail
    pidfile=integration/.cache/cluster-up.pid
    [[ -f $pidfile ]] || { echo "no cluster is running"; exit 0; }
    pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidfile"
    echo "cluster stopped"

# The whole benchmark suite (about 25 minutes on two cores); rewrites BENCHMARKS.md
bench:
    integration/cluster/build.sh
    cargo build --release -p stork -p stork-bench -p stork-e2e --bin stork --bin stork-bench --bin stork-sched-bench
    rm -rf target/criterion
    cargo bench --bench extender -- --warm-up-time 1 --measurement-time 3
    STORK_BIN=target/release/stork target/release/stork-sched-bench --out target/bench/e2e.json
    target/release/stork-bench run --e2e-results target/bench/e2e.json

# What one read of the Portworx driver costs (nodes and every volume from the real OpenStorage
# SDK server, 1,000 and 5,000 volumes on 100 nodes; about 4 minutes, most of it creating volumes)
bench-osd:
    integration/osd/build.sh
    cargo build --release -p stork-e2e --bin stork-osd-bench
    target/release/stork-osd-bench --volumes 1000,5000

# CI-sized benchmark smoke (a minute or two): the same harnesses on 100 nodes (HTTP load) and
# 50 KWOK nodes (scheduling); every request must succeed; BENCHMARKS.md is left alone
bench-smoke:
    integration/cluster/build.sh
    cargo build --bin stork && cargo build -p stork-bench -p stork-e2e --bin stork-bench --bin stork-sched-bench
    target/debug/stork-bench run --smoke --stork {{stork_bin}}
    STORK_BIN={{stork_bin}} target/debug/stork-sched-bench --smoke

# Regenerate manifests/crds.yaml from the Rust types (a unit test fails when they drift)
crds:
    cargo run -q -- crds > manifests/crds.yaml

# Write a development CA and serving certificate into certs/
certs:
    cargo run -- certs --out certs --dns localhost --dns stork-service.kube-system.svc

# Container image without a container daemon, then its test: dist/stork-<version>.oci.tar (Go needed; else see Containerfile)
[no-exit-message]
image:
    #!/usr/bin/env bash
    # The archive loads with docker/podman load, kind load image-archive and ctr images import.
    # Without Go or the Go module proxy: docker build -f Containerfile .
    set -euo pipefail
    # Go and the module proxy first: finding either missing after the long Rust build wastes it.
    integration/image/build.sh
    package() { awk -F'"' -v key="$1" '/^\[/ { p = ($0 == "[package]") } p && $1 ~ "^"key" *= *$" { print $2; exit }' Cargo.toml; }
    version="$(package version)" licenses="$(package license)"
    tag="ghcr.io/stork-rs/stork:$version" out="dist/stork-$version.oci.tar" target=x86_64-unknown-linux-gnu
    # Static (glibc, jemalloc, rustls/ring all linked in): the image has no /lib. --target keeps
    # RUSTFLAGS off build scripts and proc macros, which must stay dynamic host binaries.
    RUSTFLAGS="-C target-feature=+crt-static" cargo build --locked --profile dist --target "$target" --bin stork
    bin="${CARGO_TARGET_DIR:-target}/$target/dist/stork"
    # The label takes the revision from the binary (build.rs stamped it), so the two always agree.
    reported="$("$bin" --version)"
    revision="${reported##*(rev }" revision="${revision%)}"
    # The commit time, not the clock: the same commit gives a byte-identical archive.
    SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}" \
        "${STORK_K8S_BIN_DIR:-integration/.cache/bin}/stork-image" --binary "$bin" --tag "$tag" --version "$version" --revision "$revision" \
        --source https://github.com/stork-rs/stork --licenses "$licenses" --out "$out"
    echo "$out: $(du -h "$out" | cut -f1) ($(stat -c %s "$out") bytes), $tag, $reported"
    STORK_IMAGE_ARCHIVE="$out" cargo test -p stork-e2e --test image

# Release files in dist/: the image archive, install.yaml, install-csi.yaml, install-mock-demo.yaml, SHA256SUMS
[no-exit-message]
release:
    #!/usr/bin/env bash
    set -euo pipefail
    # From an empty dist/, so SHA256SUMS lists this release and nothing an older build left.
    rm -rf dist
    {{just_executable()}} image
    kubectl kustomize manifests > dist/install.yaml
    kubectl kustomize examples/csi > dist/install-csi.yaml
    kubectl kustomize examples/mock-demo > dist/install-mock-demo.yaml
    version="$(awk -F'"' '/^\[/ { p = ($0 == "[package]") } p && $1 ~ /^version *= *$/ { print $2; exit }' Cargo.toml)"
    grep -q "image: ghcr.io/stork-rs/stork:$version\$" dist/install.yaml || {
        echo "dist/install.yaml does not deploy ghcr.io/stork-rs/stork:$version: set its newTag in manifests/kustomization.yaml" >&2
        exit 1
    }
    (cd dist && sha256sum -- * > SHA256SUMS)
    ls -l dist

# Prints a table of figures and writes target/abuse/results.json; flags go to stork-abuse
# (`just abuse --only h2`, `--keep-going`; `--help` lists them).
# Abuse suite: attack the release stork (STORK_BIN, else built here) on loopback, assert figures
abuse *flags:
    #!/usr/bin/env bash
    set -euo pipefail
    target="${CARGO_TARGET_DIR:-target}"
    [[ -n "${STORK_BIN:-}" ]] || cargo build --release --bin stork
    # The client's own loops (mutating and encoding 100k bodies) optimized; its dependencies stay
    # the debug build the other suites share.
    cargo build -p stork-abuse --config 'profile.dev.package.stork-abuse.opt-level=2'
    "$target/debug/stork-abuse" --stork "${STORK_BIN:-$target/release/stork}" {{flags}}

# CI-sized abuse suite (under four minutes): the same attacks, smaller where size is a knob
abuse-smoke: (abuse "--smoke")

# Flags go to stork-fuzz (`just fuzz --target review --inputs 1000000`; `--help` lists them).
# Failing inputs are saved in target/fuzz/crashes/, per-target figures in target/fuzz/summary.json.
# Fuzz stork's decoders in-process: 10M mutated inputs on every core (release build)
fuzz *flags:
    #!/usr/bin/env bash
    set -euo pipefail
    target="${CARGO_TARGET_DIR:-target}"
    if [[ "${STORK_FUZZ_PROFILE:-release}" == dist ]]; then
        # CI: the settings of `just image`, so the optimized build of stork it made is reused.
        RUSTFLAGS="-C target-feature=+crt-static" cargo build --locked --profile dist --target x86_64-unknown-linux-gnu -p stork-fuzz
        bin="$target/x86_64-unknown-linux-gnu/dist/stork-fuzz"
    else
        cargo build --release -p stork-fuzz
        bin="$target/release/stork-fuzz"
    fi
    "$bin" {{flags}}

# CI-sized fuzz pass: 200k inputs, the same targets and properties (seconds once built)
fuzz-smoke: (fuzz "--inputs 200000")

# Everything CI runs
ci:
    .ci/run
