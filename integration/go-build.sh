# Shared by integration/cluster/build.sh and integration/osd/build.sh (sourced, not run): the
# Go environment, the build lock, and `go_build_cached`, which rebuilds a binary only when the
# sha256 of its inputs differs from the stamp written next to it.
#
# The sourcing script sets before sourcing: `log` (a function), `here` (its directory) and
# `force` (1 to rebuild regardless). It gets: $GO, $bin_dir, $go_version, and the functions
# below. Compilation uses the normal Go build cache (`go env GOCACHE`; falls back to
# integration/.cache/go-build when Go has none or it is "off", e.g. HOME unset).
#
# Env: STORK_K8S_BIN_DIR  output directory (default integration/.cache/bin)
#      GO                 go command (default: go)
#      BUILD_NICE         niceness for the compiler (default 15; 0 disables)
#      BUILD_PARALLEL     go build -p (default: number of CPUs)

go_build_lib="${BASH_SOURCE[0]}"
integration="$(cd "$(dirname "$go_build_lib")" && pwd)"
cache="$integration/.cache"
bin_dir="${STORK_K8S_BIN_DIR:-$cache/bin}"
GO="${GO:-go}"

command -v "$GO" >/dev/null || {
  log "error: '$GO' not found; install Go >= 1.24 (https://go.dev/dl/, or your distribution's golang package) and put it on PATH, or set GO=/path/to/go"
  exit 1
}

# Hermetic-ish Go environment for the modules under integration/ only.
export GOWORK=off          # never pick up a go.work from a parent directory
export GOTOOLCHAIN=local   # no toolchain downloads; the go.mod files only need go >= 1.24.0
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

# take_build_lock: one Go build at a time (two at once only slow each other down); held by
# fd 9 until the script exits.
take_build_lock() {
  mkdir -p "$bin_dir"
  exec 9>"$bin_dir/.build.lock"
  if ! flock -n 9; then
    log "another build is running; waiting for it"
    flock 9
  fi
}

# go_sources <dir>: the non-test .go files of a module directory (sorted by the glob).
go_sources() { local f; for f in "$1"/*.go; do [[ -f "$f" && "$f" != *_test.go ]] && echo "$f"; done; return 0; }

# go_build_cached <name> <module dir> <package> <ldflags> <tags> <message> <inputs...>: builds
# <package> into $bin_dir/<name> unless its stamp matches the sha256 over the Go version, the
# tags, the ldflags, the calling script, this library and the inputs.
go_build_cached() {
  local name="$1" dir="$2" pkg="$3" ldflags="$4" tags="$5" msg="$6"; shift 6
  local out="$bin_dir/$name" stamp="$bin_dir/.$name.stamp" want f
  want="$({ echo "$go_version"; echo "tags=$tags"; echo "ldflags=$ldflags"; cat "$here/build.sh" "$go_build_lib"
    for f in "$@"; do echo "== ${f##*/}"; cat "$f"; done; } | sha256sum | cut -d' ' -f1)"
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
  ( cd "$dir" && "${nice_cmd[@]}" "$GO" build -p "$parallel" -trimpath -tags "$tags" \
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
