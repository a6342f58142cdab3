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
force=0
[[ "${1:-}" == "--force" ]] && force=1
log() { printf '[k8s-build] %s\n' "$*" >&2; }
# shellcheck source=../go-build.sh
source "$here/../go-build.sh"
kwok_dir="$integration/kwok"

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

take_build_lock

mapfile -t k8s_srcs < <(go_sources "$here")
mapfile -t kwok_srcs < <(go_sources "$kwok_dir")

go_build_cached k8s-local "$here" . "$k8s_ldflags" "$build_tags" \
  "building kube components $k8s_version + etcd (first time takes several minutes)…" \
  "$here/go.mod" "$here/go.sum" "${k8s_srcs[@]}"
go_build_cached kwok "$kwok_dir" sigs.k8s.io/kwok/cmd/kwok "$kwok_ldflags" "$build_tags" \
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
