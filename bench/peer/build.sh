#!/usr/bin/env bash
# Build kubernetes-event-exporter (resmoio), at the version pinned in go.mod, into a cache dir.
# Its code comes from the Go module proxy into the module cache; none of it is committed.
# Prints the binary's path on the last stdout line; skips the build when it is already there.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export PATH="$PATH:/usr/local/go/bin"
version="$(awk '$1 == "require" && $2 == "github.com/resmoio/kubernetes-event-exporter" {print $3}' "$here/go.mod")"
out="${KEW_PEER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-event-watcher/peer}/$version"
binary="$out/kubernetes-event-exporter"
if [[ ! -x "$binary" ]]; then
  mkdir -p "$out"
  tmp="$binary.tmp.$$"
  trap 'rm -f "$tmp"' EXIT INT TERM
  (cd "$here" && CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags='-s -w' -o "$tmp" \
    github.com/resmoio/kubernetes-event-exporter)
  mv "$tmp" "$binary"
fi
echo "$binary"
