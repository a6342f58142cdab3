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

# Criterion micro-benchmarks of filter+prioritize (decode, decide, encode)
bench:
    cargo bench --bench extender

# Write a development CA and serving certificate into certs/
certs:
    cargo run -- certs --out certs --dns localhost --dns stork-service.kube-system.svc

# Everything CI runs
ci:
    .ci/run
