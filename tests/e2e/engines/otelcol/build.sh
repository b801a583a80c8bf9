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

tag="otelcol/build.sh"
# shellcheck source=../gobuild.sh
source "$here/../gobuild.sh"

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

use_go "the collector"
mkdir -p "$bin_dir"
log "downloading modules"
download_modules "$here" "the collector's Go modules"
start=$(date +%s)
log "building otelcol $otelcol_version with the file exporter $file_version (a cold build takes a few minutes)"
build_binary "$here" "$binary" "the collector" -ldflags="-s -w -X main.version=${otelcol_version#v}" .
log "built in $(($(date +%s) - start))s: $binary"
echo "$bin_dir"
