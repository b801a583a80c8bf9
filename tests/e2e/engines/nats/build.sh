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

tag="nats build.sh"
# shellcheck source=../gobuild.sh
source "$here/../gobuild.sh"

module=github.com/nats-io/nats-server/v2
version=$(required_version "$here/go.mod" "$module")
[ -n "$version" ] || die "cannot read the $module version from $here/go.mod"

cache_root=${KEW_NATS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-event-watcher/nats-server}
bin_dir="$cache_root/$version"
binary="$bin_dir/nats-server"

if [ -x "$binary" ]; then
	log "nats-server $version already built in $bin_dir"
	echo "$bin_dir"
	exit 0
fi

use_go nats-server
mkdir -p "$bin_dir"
download_modules "$here" "the Go modules of $here"
start=$(date +%s)
log "building $module $version"
build_binary "$here" "$binary" "$module" -ldflags="-s -w" "$module"
log "built in $(($(date +%s) - start))s: $("$binary" --version)"
echo "$bin_dir"
