# stork tasks. `just` lists them.

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

# End-to-end suite on a real local control plane (builds the Go components once, then cached)
e2e:
    integration/cluster/build.sh
    cargo build --bin stork && cargo build -p stork-e2e --tests
    cargo test -p stork-e2e -- --test-threads=1

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

# CI-sized benchmark smoke (a minute or two): the same harnesses on 100 nodes (HTTP load) and
# 50 KWOK nodes (scheduling); every request must succeed; BENCHMARKS.md is left alone
bench-smoke:
    integration/cluster/build.sh
    cargo build --bin stork && cargo build -p stork-bench -p stork-e2e --bin stork-bench --bin stork-sched-bench
    target/debug/stork-bench run --smoke --stork target/debug/stork
    STORK_BIN=target/debug/stork target/debug/stork-sched-bench --smoke

# Regenerate manifests/crds.yaml from the Rust types (a unit test fails when they drift)
crds:
    cargo run -q -- crds > manifests/crds.yaml

# Write a development CA and serving certificate into certs/
certs:
    cargo run -- certs --out certs --dns localhost --dns stork-service.kube-system.svc

# Everything CI runs
ci:
    .ci/run
