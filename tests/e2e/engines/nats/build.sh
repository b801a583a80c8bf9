#!/usr/bin/env bash
# Build nats-server (github.com/nats-io/nats-server/v2, pinned in ./go.mod) from the Go module
# proxy for the NATS JetStream receiver tests.
#
# The binary goes to a per-user cache dir keyed by version:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/kube-event-watcher/nats-server/<version>/nats-server
# and the build is skipped when it is already there. The last line printed on stdout is that
# directory; everything else (progress, go output) goes to stderr.
#
# Environment: KEW_NATS_CACHE overrides the cache root (the part before <version>).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { printf '[nats build.sh %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf '[nats build.sh %s] ERROR: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; exit 1; }

module=github.com/nats-io/nats-server/v2
version=$(awk -v m="$module" '$1 == m && $2 ~ /^v/ { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$here/go.mod")
[ -n "$version" ] || die "cannot read the $module version from $here/go.mod"

cache_root=${KEW_NATS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-event-watcher/nats-server}
bin_dir="$cache_root/$version"
binary="$bin_dir/nats-server"

if [ -x "$binary" ]; then
	log "nats-server $version already built in $bin_dir"
	echo "$bin_dir"
	exit 0
fi

# The official Go tarball installs to /usr/local/go, which is not always on PATH.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null 2>&1 || die "'go' is not on PATH: install Go >= 1.26 to build nats-server"
log "using $(go version) at $(command -v go)"
mkdir -p "$bin_dir"

if ! out=$(cd "$here" && go mod download 2>&1); then
	printf '%s\n' "$out" | tail -n 20 >&2
	die "could not download the Go modules of $here: is the Go module proxy ($(go env GOPROXY)) reachable?"
fi

# A half-written binary never keeps its final name; also remove it when interrupted.
tmp=$(mktemp "$bin_dir/.nats-server.XXXXXX")
trap 'rm -f "$tmp"' EXIT
start=$(date +%s)
log "building $module $version"
(cd "$here" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags="-s -w" -o "$tmp" "$module") ||
	die "go build of $module failed"
chmod 0755 "$tmp"
mv -f "$tmp" "$binary"
log "built in $(($(date +%s) - start))s: $("$binary" --version)"
echo "$bin_dir"
