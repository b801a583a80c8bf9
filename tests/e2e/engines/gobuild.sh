# Sourced by the engines' build.sh (nats, otelcol): what building a Go binary from the
# module proxy into a per-version cache takes. Set `tag` (the log prefix) before sourcing.

log() { printf '[%s %s] %s\n' "$tag" "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf '[%s %s] ERROR: %s\n' "$tag" "$(date -u +%H:%M:%S)" "$*" >&2; exit 1; }

# The version of a module required in a go.mod, read from the file itself (no network).
required_version() { # <go.mod> <module path>
	awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$1"
}

# Go on PATH (the official tarball installs to /usr/local/go, not always on PATH), or die.
use_go() { # <what it builds, for the error>
	if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
		PATH="/usr/local/go/bin:$PATH"
	fi
	command -v go >/dev/null 2>&1 || die "'go' is not on PATH: install Go >= 1.26 to build $1"
	log "using $(go version) at $(command -v go)"
}

download_modules() { # <module dir> <what they are, for the error>
	local out
	if ! out=$(cd "$1" && go mod download 2>&1); then
		printf '%s\n' "$out" | tail -n 20 >&2
		die "could not download $2: is the Go module proxy ($(go env GOPROXY)) reachable?"
	fi
}

# `go build` in <module dir> to <binary>, static and stripped; a half-written binary never
# keeps its final name (it is built beside it, then moved), and is removed when interrupted.
build_binary() { # <module dir> <binary> <what, for the error> <go build arguments...>
	local dir=$1 binary=$2 what=$3
	shift 3
	_gobuild_tmp=$(mktemp "$(dirname "$binary")/.$(basename "$binary").XXXXXX")
	trap 'rm -f "$_gobuild_tmp"' EXIT
	(cd "$dir" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -o "$_gobuild_tmp" "$@") ||
		die "go build of $what failed"
	chmod 0755 "$_gobuild_tmp"
	mv -f "$_gobuild_tmp" "$binary"
}
