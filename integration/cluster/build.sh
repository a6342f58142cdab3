#!/usr/bin/env bash
# Builds the local control plane for stork's end-to-end tests:
#   integration/.cache/bin/k8s-local   kube-apiserver / kube-scheduler / kube-controller-manager / etcd
#   integration/.cache/bin/kwok        KWOK controller (fake nodes and pods)
#   integration/.cache/bin/kwok-stages.yaml  KWOK's default stages, partitionable (see below)
#   integration/.cache/bin/kwok-crds.yaml    KWOK's Exec and ClusterExec CRDs (exec into KWOK pods)
# from the Go module proxy (no Docker, no prebuilt binaries). See README.md.
#
# Cached: a binary is rebuilt only when the sha256 of its inputs (go.mod, go.sum,
# non-test *.go, this script, the Go version) differs from the stamp written next to it.
# Compilation itself uses the normal Go build cache (`go env GOCACHE`; falls back
# to integration/.cache/go-build when Go has none or it is "off", e.g. HOME unset).
#
# Usage: integration/cluster/build.sh [--force]
# Env:   STORK_K8S_BIN_DIR  output directory (default integration/.cache/bin)
#        GO                 go command (default: go)
#        BUILD_NICE         niceness for the compiler (default 15; 0 disables)
#        BUILD_PARALLEL     go build -p (default: number of CPUs)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
integration="$(dirname "$here")"
kwok_dir="$integration/kwok"
cache="$integration/.cache"
bin_dir="${STORK_K8S_BIN_DIR:-$cache/bin}"
GO="${GO:-go}"
force=0
[[ "${1:-}" == "--force" ]] && force=1

log() { printf '[k8s-build] %s\n' "$*" >&2; }

command -v "$GO" >/dev/null || { log "error: '$GO' not found; install Go >= 1.24"; exit 1; }

# Hermetic-ish Go environment for these two modules only.
export GOWORK=off          # never pick up a go.work from a parent directory
export GOTOOLCHAIN=local   # no toolchain downloads; go.mod only needs go >= 1.24.0
export CGO_ENABLED=0       # static binaries, as upstream builds the server components
export GOFLAGS="-mod=readonly -buildvcs=false"  # go.sum is authoritative; never edited by a build
gocache="$("$GO" env GOCACHE 2>/dev/null || true)"
if [[ -z "$gocache" || "$gocache" == off ]]; then export GOCACHE="$cache/go-build"; fi
if [[ -z "$("$GO" env GOMODCACHE 2>/dev/null || true)" ]]; then export GOMODCACHE="$cache/go-mod"; fi

nice_cmd=()
if [[ "${BUILD_NICE:-15}" != 0 ]] && command -v nice >/dev/null; then nice_cmd=(nice -n "${BUILD_NICE:-15}"); fi
ncpu="$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)"
parallel="${BUILD_PARALLEL:-$ncpu}"

go_version="$("$GO" env GOVERSION) $("$GO" env GOOS)/$("$GO" env GOARCH)"
k8s_version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v1\./ { print $2; exit }' "$here/go.mod")"
[[ -n "$k8s_version" ]] || { log "error: cannot read the k8s.io/kubernetes version from go.mod"; exit 1; }
k8s_minor="${k8s_version#v1.}"; k8s_minor="${k8s_minor%%.*}"

# ldflags: strip symbols; stamp the real Kubernetes version (it must be the real
# one: it drives the emulation/compatibility version).
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor -X $pkg.gitTreeState=clean"
done
kwok_ldflags="-s -w"
build_tags="grpcnotrace"

mkdir -p "$bin_dir"
exec 9>"$bin_dir/.build.lock"
if ! flock -n 9; then
  log "another build is running; waiting for it"
  flock 9
fi

# key <files...>: sha256 over the Go version, this script and the given files.
key() {
  { echo "$go_version"; echo "tags=$build_tags"; cat "$here/build.sh"; for f in "$@"; do echo "== ${f##*/}"; cat "$f"; done; } \
    | sha256sum | cut -d' ' -f1
}

# build <name> <module dir> <package> <ldflags> <message> <inputs...>
build() {
  local name="$1" dir="$2" pkg="$3" ldflags="$4" msg="$5"; shift 5
  local out="$bin_dir/$name" stamp="$bin_dir/.$name.stamp" want
  want="$(key "$@")"
  if [[ $force == 0 && -x "$out" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    log "$name is up to date ($out)"
    return 0
  fi
  log "$msg"
  local start=$SECONDS ticker
  # Progress ticker. It must not keep the lock (fd 9) or the caller's pipes open
  # after it is killed, so its sleep is killed with it and fd 9 is closed.
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
  local rc=0
  ( cd "$dir" && "${nice_cmd[@]}" "$GO" build -p "$parallel" -trimpath -tags "$build_tags" \
      -ldflags "$ldflags" -o "$out.tmp" "$pkg" ) || rc=$?
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
}

# go_sources <dir>: the non-test .go files of a module directory (sorted by the glob).
go_sources() { local f; for f in "$1"/*.go; do [[ -f "$f" && "$f" != *_test.go ]] && echo "$f"; done; return 0; }
mapfile -t k8s_srcs < <(go_sources "$here")
mapfile -t kwok_srcs < <(go_sources "$kwok_dir")

build k8s-local "$here" . "$k8s_ldflags" \
  "building kube components $k8s_version + etcd (first time takes several minutes)…" \
  "$here/go.mod" "$here/go.sum" "${k8s_srcs[@]}"
build kwok "$kwok_dir" sigs.k8s.io/kwok/cmd/kwok "$kwok_ldflags" \
  "building kwok (first time takes a few minutes)…" \
  "$kwok_dir/go.mod" "$kwok_dir/go.sum" "${kwok_srcs[@]}"

# KWOK's own default node and pod stages, taken from the module kwok was built from (not
# copied into this repository), with the node stages and the pod deletion stage narrowed to
# objects without the `stork-e2e/partitioned` annotation. A test cuts a node off by annotating
# it and its pods: KWOK then neither heartbeats the node nor confirms its pods' deletion, which
# is what the control plane sees of a node whose kubelet is unreachable.
write_stages() {
  local src out="$bin_dir/kwok-stages.yaml" f
  src="$(cd "$kwok_dir" && "$GO" list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
  local partition="    - key: '.metadata.annotations[\"stork-e2e/partitioned\"]'\n      operator: 'DoesNotExist'"
  for f in node/fast/node-initialize node/heartbeat/node-heartbeat pod/fast/pod-ready pod/fast/pod-complete \
    pod/fast/pod-delete; do
    echo "---"
    case "$f" in
      pod/fast/pod-ready | pod/fast/pod-complete) cat "$src/kustomize/stage/$f.yaml" ;;
      *) sed "/^    matchExpressions:\$/a\\$partition" "$src/kustomize/stage/$f.yaml" ;;
    esac
  done > "$out.tmp"
  local narrowed
  narrowed="$(grep -c 'stork-e2e/partitioned' "$out.tmp" || true)"
  if [[ "$narrowed" != 3 ]]; then
    rm -f "$out.tmp"
    log "error: expected to narrow 3 KWOK stages in $src, narrowed $narrowed (stage layout changed?)"
    exit 1
  fi
  mv -f "$out.tmp" "$out"
}
write_stages

# KWOK's own CRDs for exec into its pods (Exec per pod, ClusterExec per namespace or cluster),
# taken from the module kwok was built from: the harness installs them before it starts KWOK
# with --enable-crds=Exec,ClusterExec (see integration/e2e/src/exec.rs).
write_crds() {
  local src out="$bin_dir/kwok-crds.yaml" f
  src="$(cd "$kwok_dir" && "$GO" list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/crd/bases"
  for f in execs clusterexecs; do
    [[ -f "$src/kwok.x-k8s.io_$f.yaml" ]] || { log "error: no $f CRD in $src (layout changed?)"; exit 1; }
    echo "---"
    sed '/^---$/d' "$src/kwok.x-k8s.io_$f.yaml"
  done > "$out.tmp"
  mv -f "$out.tmp" "$out"
}
write_crds

log "binaries in $bin_dir: k8s-local, kwok, kwok-stages.yaml, kwok-crds.yaml"
