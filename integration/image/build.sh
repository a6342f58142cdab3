#!/usr/bin/env bash
# Builds the image assembler integration/.cache/bin/stork-image (main.go here, on
# go-containerregistry) from the Go module proxy. `just image` runs it before the long Rust
# build, so a missing Go or an unreachable proxy is reported at once, in one line.
#
# Cached like integration/cluster/build.sh: rebuilt only when the sha256 of its inputs (go.mod,
# go.sum, non-test *.go, this script, the Go version) differs from the stamp next to the binary.
#
# Usage: integration/image/build.sh [--force]
# Env:   STORK_K8S_BIN_DIR  output directory (default integration/.cache/bin), as for the cluster
#        GO                 go command (default: go)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="$(dirname "$here")/.cache"
bin_dir="${STORK_K8S_BIN_DIR:-$cache/bin}"
GO="${GO:-go}"
force=0
[[ "${1:-}" == "--force" ]] && force=1

log() { printf '[image-build] %s\n' "$*" >&2; }
# The Containerfile builds the same image with only Docker or Podman: name it in every dead end.
containerfile="use the Containerfile: docker build -f Containerfile ."

command -v "$GO" >/dev/null || {
  echo "just image needs Go (https://go.dev/dl) to assemble the image; without Go $containerfile" >&2
  exit 1
}

# The same hermetic-ish settings as the control-plane build.
export GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0
export GOFLAGS="-mod=readonly -buildvcs=false"
gocache="$("$GO" env GOCACHE 2>/dev/null || true)"
if [[ -z "$gocache" || "$gocache" == off ]]; then export GOCACHE="$cache/go-build"; fi
if [[ -z "$("$GO" env GOMODCACHE 2>/dev/null || true)" ]]; then export GOMODCACHE="$cache/go-mod"; fi

mkdir -p "$bin_dir"
exec 9>"$bin_dir/.stork-image.lock"   # two `just image` at once: the second waits
flock 9
out="$bin_dir/stork-image" stamp="$bin_dir/.stork-image.stamp"
want="$(
  { "$GO" env GOVERSION GOOS GOARCH; cat "$here/build.sh" "$here/go.mod" "$here/go.sum"
    for f in "$here"/*.go; do [[ "$f" == *_test.go ]] || { echo "== ${f##*/}"; cat "$f"; }; done
  } | sha256sum | cut -d' ' -f1
)"
if [[ $force == 0 && -x "$out" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  log "stork-image is up to date ($out)"
  exit 0
fi

# Fetch the modules first, on their own: a proxy that cannot be reached then gets one line
# naming it instead of go's per-module errors (kept in the log). Offline with a warm module
# cache this succeeds without the network.
download_log="$cache/stork-image-download.log"
if ! (cd "$here" && "$GO" mod download) >"$download_log" 2>&1; then
  echo "just image: cannot download the assembler's Go modules from GOPROXY=$("$GO" env GOPROXY) (details: $download_log); without the module proxy $containerfile" >&2
  exit 1
fi

log "building stork-image…"
start=$SECONDS
(cd "$here" && "$GO" build -trimpath -ldflags "-s -w" -o "$out.tmp" .) || { rm -f "$out.tmp"; exit 1; }
mv -f "$out.tmp" "$out"
echo "$want" >"$stamp"
log "built stork-image in $((SECONDS - start))s: $out ($(du -h "$out" | cut -f1))"
