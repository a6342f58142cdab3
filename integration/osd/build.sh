#!/usr/bin/env bash
# Builds the OpenStorage SDK server harness for stork's end-to-end tests:
#   integration/.cache/bin/osd-harness   real openstorage SDK gRPC server + fake driver
#                                        + node-list / replica-set shims (see README.md)
# from the Go module proxy (no Docker, no prebuilt binaries).
#
# Cached like integration/cluster/build.sh: the binary is rebuilt only when the sha256 of
# its inputs (go.mod, go.sum, non-test *.go of this directory, this script, the Go version,
# the ldflags) differs from the stamp written next to it. Compilation uses the normal Go
# build cache (`go env GOCACHE`; falls back to integration/.cache/go-build when Go has none
# or it is "off", e.g. HOME unset).
#
# Usage: integration/osd/build.sh [--force]
# Env:   STORK_K8S_BIN_DIR  output directory (default integration/.cache/bin)
#        GO                 go command (default: go)
#        BUILD_NICE         niceness for the compiler (default 15; 0 disables)
#        BUILD_PARALLEL     go build -p (default: number of CPUs)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
integration="$(dirname "$here")"
cache="$integration/.cache"
bin_dir="${STORK_K8S_BIN_DIR:-$cache/bin}"
GO="${GO:-go}"
force=0
[[ "${1:-}" == "--force" ]] && force=1

log() { printf '[osd-build] %s\n' "$*" >&2; }

command -v "$GO" >/dev/null || {
  log "error: '$GO' not found; install Go >= 1.24 (https://go.dev/dl/, or your distribution's golang package) and put it on PATH, or set GO=/path/to/go"
  exit 1
}

# Hermetic-ish Go environment for this module only.
export GOWORK=off          # never pick up a go.work from a parent directory
export GOTOOLCHAIN=local   # no toolchain downloads; go.mod only needs go >= 1.24.0
export CGO_ENABLED=0       # static binary
export GOFLAGS="-mod=readonly -buildvcs=false"  # go.sum is authoritative; never edited by a build
gocache="$("$GO" env GOCACHE 2>/dev/null || true)"
if [[ -z "$gocache" || "$gocache" == off ]]; then export GOCACHE="$cache/go-build"; fi
if [[ -z "$("$GO" env GOMODCACHE 2>/dev/null || true)" ]]; then export GOMODCACHE="$cache/go-mod"; fi

nice_cmd=()
if [[ "${BUILD_NICE:-15}" != 0 ]] && command -v nice >/dev/null; then nice_cmd=(nice -n "${BUILD_NICE:-15}"); fi
ncpu="$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)"
parallel="${BUILD_PARALLEL:-$ncpu}"

go_version="$("$GO" env GOVERSION) $("$GO" env GOOS)/$("$GO" env GOARCH)"
# -checklinkname=0: Go >= 1.23 refuses the old golang.org/x/net's //go:linkname to
# syscall.recvmsg (pulled in by openstorage's pinned grpc 1.29.1) without it.
ldflags="-s -w -checklinkname=0"

name=osd-harness
out="$bin_dir/$name"
stamp="$bin_dir/.$name.stamp"

mkdir -p "$bin_dir"
# Same lock as integration/cluster/build.sh: two Go builds at once only slow each other down.
exec 9>"$bin_dir/.build.lock"
if ! flock -n 9; then
  log "another build is running; waiting for it"
  flock 9
fi

# The non-test .go files of this module's main package (sorted by the glob).
srcs=()
for f in "$here"/*.go; do [[ -f "$f" && "$f" != *_test.go ]] && srcs+=("$f"); done

want="$({ echo "$go_version"; echo "ldflags=$ldflags"; cat "$here/build.sh"
  for f in "$here/go.mod" "$here/go.sum" "${srcs[@]}"; do echo "== ${f##*/}"; cat "$f"; done; } \
  | sha256sum | cut -d' ' -f1)"

if [[ $force == 0 && -x "$out" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  log "$name is up to date ($out)"
  exit 0
fi

log "building $name (openstorage SDK server; first time takes a few minutes)…"
start=$SECONDS
# Progress ticker. It must not keep the lock (fd 9) or the caller's pipes open after it
# is killed, so its sleep is killed with it and fd 9 is closed.
(
  exec 9>&-
  s=""; trap '[[ -n $s ]] && kill $s 2>/dev/null; exit 0' TERM
  while :; do
    sleep 30 </dev/null >/dev/null 2>&1 & s=$!; wait $s
    log "  ... still building $name ($(( (SECONDS - start) / 60 ))m$(( (SECONDS - start) % 60 ))s elapsed)"
  done
) &
ticker=$!
trap 'kill "$ticker" 2>/dev/null; rm -f "$out.tmp"' EXIT   # if we are interrupted
rc=0
( cd "$here" && "${nice_cmd[@]}" "$GO" build -p "$parallel" -trimpath -ldflags "$ldflags" -o "$out.tmp" . ) || rc=$?
kill "$ticker" 2>/dev/null || true
wait "$ticker" 2>/dev/null || true
trap - EXIT
if [[ $rc != 0 ]]; then
  rm -f "$out.tmp"
  log "error: building $name failed (exit $rc)"
  exit "$rc"
fi
mv -f "$out.tmp" "$out"
echo "$want" > "$stamp"
log "built $name in $(( SECONDS - start ))s: $out ($(du -h "$out" | cut -f1))"
