#!/usr/bin/env bash
# Builds the OpenStorage SDK server harness for stork's end-to-end tests:
#   integration/.cache/bin/osd-harness   real openstorage SDK gRPC server + fake driver
#                                        + node-list / replica-set shims (see README.md)
# from the Go module proxy (no Docker, no prebuilt binaries).
#
# Cached like the control plane (integration/go-build.sh, shared with
# integration/cluster/build.sh): rebuilt only when go.mod, go.sum, the non-test *.go of this
# directory, the scripts, the Go version or the ldflags change.
#
# Usage: integration/osd/build.sh [--force]   (environment: see integration/go-build.sh)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
force=0
[[ "${1:-}" == "--force" ]] && force=1
log() { printf '[osd-build] %s\n' "$*" >&2; }
# shellcheck source=../go-build.sh
source "$here/../go-build.sh"

# -checklinkname=0: Go >= 1.23 refuses the old golang.org/x/net's //go:linkname to
# syscall.recvmsg (pulled in by openstorage's pinned grpc 1.29.1) without it.
ldflags="-s -w -checklinkname=0"

take_build_lock
mapfile -t srcs < <(go_sources "$here")
go_build_cached osd-harness "$here" . "$ldflags" "" \
  "building osd-harness (openstorage SDK server; first time takes a few minutes)…" \
  "$here/go.mod" "$here/go.sum" "${srcs[@]}"
