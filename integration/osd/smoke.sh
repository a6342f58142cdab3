#!/usr/bin/env bash
# Smoke test of osd-harness (built by build.sh): starts it three times and drives it with
# the Go client in smoke/ (real openstorage api package over gRPC + the control API):
#   plain         no auth: node list shim, status changes, volume replica sets,
#                 snapshot create/enumerate/restore/delete, clone from snapshot
#   auth          --jwt-shared-secret: tokens from GET /token, expired/bad/untrusted tokens,
#                 guest (no token) access as upstream allows it, then everything above
#   auth-noguest  --jwt-shared-secret --disable-guest-access: no token is rejected
#   tls           --tls-cert/--tls-key (CA + server cert for 127.0.0.1 and localhost, made
#                 with openssl): TLS trusting the CA works, plaintext / untrusted / wrong
#                 name fail, ALPN h2, the REST gateway over HTTPS, then nodes and volumes
# Each run checks the ready line and a clean exit on SIGTERM. The command lines are the
# reference for the Rust e2e harness (see README.md).
#
# Usage: integration/osd/smoke.sh [--keep]   (--keep: leave the run dir for inspection)
# Env:   STORK_K8S_BIN_DIR (default integration/.cache/bin), GO (default go)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${STORK_K8S_BIN_DIR:-$(dirname "$here")/.cache/bin}"
GO="${GO:-go}"
keep=0; [[ "${1:-}" == "--keep" ]] && keep=1

"$here/build.sh"
HARNESS="$bin/osd-harness"

run="$(mktemp -d "${TMPDIR:-/tmp}/osd-smoke.XXXXXX")"
pid=""
cleanup() {
  local rc=$?
  if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if [[ $rc != 0 ]]; then
    for f in "$run"/*/harness.err; do [[ -f "$f" ]] && { echo "== $f" >&2; tail -n 20 "$f" >&2; }; done
  fi
  if [[ $keep == 1 || $rc != 0 ]]; then echo "run dir kept: $run" >&2; else rm -rf "$run"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The smoke client: same module and flags as the harness, so it reuses its build cache.
echo "[smoke] building the smoke client"
( cd "$here" && GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" \
    "$GO" build -trimpath -ldflags "-s -w -checklinkname=0" -o "$run/osd-smoke" ./smoke )

# If root, drop to nobody: openstorage's config package creates /var/lib/osd/{mounts,graphdriver}
# in an init() before main runs, and cannot be told otherwise (see README.md).
as_user=()
if [[ $(id -u) == 0 ]] && command -v setpriv >/dev/null; then
  as_user=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
  chmod 711 "$run"   # mktemp -d made it 0700; nobody must reach the state dirs below it
fi

# start_harness <name> <flags...>: starts it with its state dir as cwd, waits for the
# ready line and sets SDK / CONTROL.
start_harness() {
  local name="$1"; shift
  local dir="$run/$name"
  mkdir -p "$dir/state"
  [[ ${#as_user[@]} == 0 ]] || chown -R nobody:nogroup "$dir"
  echo "[smoke] start $name: $HARNESS --sdk-port 0 --control-addr 127.0.0.1:0 --state-dir $dir/state $*"
  # GOPATH set: otherwise packr's dependency envy runs `go env GOPATH` in an init().
  ( cd "$dir/state" && exec env GOPATH=/nonexistent "${as_user[@]}" "$HARNESS" --sdk-port 0 \
      --control-addr 127.0.0.1:0 --state-dir "$dir/state" "$@" >"$dir/harness.out" 2>"$dir/harness.err" ) &
  pid=$!
  local deadline=$((SECONDS + 60)) line=""
  until line="$(grep -m1 '^osd-harness ready ' "$dir/harness.out" 2>/dev/null)"; do
    kill -0 "$pid" 2>/dev/null || { echo "[smoke] $name exited before it was ready" >&2; return 1; }
    (( SECONDS < deadline )) || { echo "[smoke] $name not ready after 60s" >&2; return 1; }
    sleep 0.2
  done
  echo "[smoke] $line"
  [[ $line =~ ^osd-harness\ ready\ sdk=(127\.0\.0\.1:[0-9]+)\ control=(127\.0\.0\.1:[0-9]+)$ ]] \
    || { echo "[smoke] unexpected ready line" >&2; return 1; }
  SDK="${BASH_REMATCH[1]}"; CONTROL="http://${BASH_REMATCH[2]}"
}

# stop_harness <name>: SIGTERM, expect exit 0 within 10s, and only the ready line on stdout.
stop_harness() {
  local name="$1" n=0 rc=0
  kill -TERM "$pid"
  while kill -0 "$pid" 2>/dev/null && (( n++ < 100 )); do sleep 0.1; done
  wait "$pid" || rc=$?
  pid=""
  [[ $rc == 0 ]] || { echo "[smoke] $name exited with $rc after SIGTERM" >&2; return 1; }
  [[ $(wc -l <"$run/$name/harness.out") == 1 ]] || { echo "[smoke] $name: stdout is not just the ready line" >&2; return 1; }
  echo "[smoke] $name stopped cleanly; state dir: $(cd "$run/$name/state" && ls | tr '\n' ' ')"
}

secret="smoke-secret-$RANDOM$RANDOM"

start_harness plain
"$run/osd-smoke" --sdk "$SDK" --control "$CONTROL" --mode plain
stop_harness plain

start_harness auth --jwt-shared-secret "$secret"
"$run/osd-smoke" --sdk "$SDK" --control "$CONTROL" --mode auth
stop_harness auth

start_harness auth-noguest --jwt-shared-secret "$secret" --disable-guest-access
"$run/osd-smoke" --sdk "$SDK" --control "$CONTROL" --mode auth-noguest
stop_harness auth-noguest

# make_certs <dir>: a CA and a server certificate signed by it (EC P-256, X.509 v3, SAN
# IP:127.0.0.1 + DNS:localhost, serverAuth), as rustls/webpki and Go both accept them.
make_certs() {
  local d="$1"
  mkdir -p "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=osd-harness smoke CA" -keyout "$d/ca.key" -out "$d/ca.pem" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=localhost" -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
  printf '%s\n' 'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature' \
    'extendedKeyUsage=serverAuth' 'subjectAltName=IP:127.0.0.1,DNS:localhost' >"$d/server.ext"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
    -days 2 -extfile "$d/server.ext" -out "$d/server.pem" 2>/dev/null
  [[ ${#as_user[@]} == 0 ]] || chown -R nobody:nogroup "$d"
}

command -v openssl >/dev/null || { echo "[smoke] openssl is needed for the tls run" >&2; exit 1; }
make_certs "$run/certs"
gateway_port="$("$run/osd-smoke" --free-port)"
start_harness tls --tls-cert "$run/certs/server.pem" --tls-key "$run/certs/server.key" --gateway-port "$gateway_port"
"$run/osd-smoke" --sdk "$SDK" --control "$CONTROL" --mode tls --ca "$run/certs/ca.pem" --gateway "127.0.0.1:$gateway_port"
stop_harness tls

echo "[smoke] all runs passed"
