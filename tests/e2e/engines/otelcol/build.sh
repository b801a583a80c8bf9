#!/usr/bin/env bash
# Build a minimal OpenTelemetry Collector for the `otlp` receiver's tests: the core
# otelcol + OTLP receiver and the contrib file exporter, from the pinned modules of go.mod
# (main.go lists the components, as the collector builder `ocb` would generate them).
#
# The binary goes to a per-user cache dir keyed by version:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/kube-event-watcher/otelcol/<otelcol>-file-<fileexporter>/
# and the build is skipped when it is already there. The last line printed on stdout is that
# directory; everything else (progress, go output) goes to stderr.
#
# Environment: KEW_OTELCOL_CACHE overrides the cache root (the part before <versions>).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { printf '[otelcol/build.sh %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf '[otelcol/build.sh %s] ERROR: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; exit 1; }

required_version() { # <go.mod> <module path>
	awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$1"
}

otelcol_version=$(required_version "$here/go.mod" go.opentelemetry.io/collector/otelcol)
file_version=$(required_version "$here/go.mod" github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter)
[ -n "$otelcol_version" ] || die "cannot read the go.opentelemetry.io/collector/otelcol version from $here/go.mod"
[ -n "$file_version" ] || die "cannot read the fileexporter version from $here/go.mod"

cache_root=${KEW_OTELCOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-event-watcher/otelcol}
bin_dir="$cache_root/$otelcol_version-file-$file_version"
binary="$bin_dir/otelcol"

if [ -x "$binary" ]; then
	log "otelcol $otelcol_version (file exporter $file_version) already built in $bin_dir"
	echo "$bin_dir"
	exit 0
fi

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null 2>&1 || die "'go' is not on PATH: install Go >= 1.26 to build the collector"
log "using $(go version) at $(command -v go)"
mkdir -p "$bin_dir"

log "downloading modules"
if ! out=$(cd "$here" && go mod download 2>&1); then
	printf '%s\n' "$out" | tail -n 20 >&2
	die "could not download the collector's Go modules: is the Go module proxy ($(go env GOPROXY)) reachable?"
fi

tmp=$(mktemp "$bin_dir/.otelcol.XXXXXX")
trap 'rm -f "$tmp"' EXIT
start=$(date +%s)
log "building otelcol $otelcol_version with the file exporter $file_version (a cold build takes a few minutes)"
if ! (cd "$here" && CGO_ENABLED=0 go build -trimpath -buildvcs=false \
	-ldflags="-s -w -X main.version=${otelcol_version#v}" -o "$tmp" .); then
	die "go build of the collector failed"
fi
chmod 0755 "$tmp"
mv -f "$tmp" "$binary"
log "built in $(($(date +%s) - start))s: $binary"
echo "$bin_dir"
