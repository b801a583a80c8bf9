#!/usr/bin/env bash
# Build the local cluster's binaries from source for the end-to-end tests: etcd,
# kube-apiserver, kube-scheduler, kube-controller-manager (one pinned k8s.io/kubernetes),
# kwok (fake nodes and kubelets), kubectl (the same k8s.io/kubernetes, for the kubeconfig
# parity tests) and helm (helm.sh/helm/v3, for the chart tests).
#
# Binaries go to a per-user cache dir keyed by version:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/kube-event-watcher/controlplane/<k8s-version>-<etcd-version>/
# and the build is skipped when every binary is already there (each one is skipped on its own
# when present; kwok and helm are rebuilt when their version is not the pinned one). The last line printed on
# stdout is that directory; everything else (progress, go output) goes to stderr.
#
# Environment: KEW_CONTROLPLANE_CACHE overrides the cache root (the part before <versions>).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { printf '[build.sh %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf '[build.sh %s] ERROR: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; exit 1; }

# The version of a module required in a go.mod, read from the file itself (no network).
required_version() { # <go.mod> <module path>
	awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$1"
}

k8s_version=$(required_version "$here/apiserver/go.mod" k8s.io/kubernetes)
etcd_version=$(required_version "$here/etcd/go.mod" go.etcd.io/etcd/server/v3)
kwok_version=$(required_version "$here/kwok/go.mod" sigs.k8s.io/kwok)
[ -n "$k8s_version" ] || die "cannot read the k8s.io/kubernetes version from $here/apiserver/go.mod"
[ -n "$etcd_version" ] || die "cannot read the go.etcd.io/etcd/server/v3 version from $here/etcd/go.mod"
kubectl_k8s=$(required_version "$here/kubectl/go.mod" k8s.io/kubernetes)
[ "$kubectl_k8s" = "$k8s_version" ] || die "$here/kubectl/go.mod pins k8s.io/kubernetes $kubectl_k8s, the control plane $k8s_version: keep them equal"
[ -n "$kwok_version" ] || die "cannot read the sigs.k8s.io/kwok version from $here/kwok/go.mod"
helm_version=$(required_version "$here/helm/go.mod" helm.sh/helm/v3)
[ -n "$helm_version" ] || die "cannot read the helm.sh/helm/v3 version from $here/helm/go.mod"
# The Kubernetes version helm assumes when it is not talking to a cluster (.Capabilities in
# `helm template`, the deprecation checks of `helm lint`): helm's own Makefile derives it from
# the client-go it is built with (v0.X.Y -> 1.X); do the same.
helm_client_go=$(required_version "$here/helm/go.mod" k8s.io/client-go)
[ -n "$helm_client_go" ] || die "cannot read the k8s.io/client-go version from $here/helm/go.mod"

cache_root=${KEW_CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-event-watcher/controlplane}
bin_dir="$cache_root/$k8s_version-$etcd_version"

k8s_binaries=(kube-apiserver kube-scheduler kube-controller-manager)

# kwok's version is not part of the dir's name: a kwok that reports another version is stale.
kwok_current() {
	[ -x "$bin_dir/kwok" ] && "$bin_dir/kwok" --version 2>/dev/null | grep -q -- "${kwok_version#v}"
}

# Nor is helm's: `helm version --short` prints v3.22.0 (+g<commit> when built with one).
helm_current() {
	[ -x "$bin_dir/helm" ] && "$bin_dir/helm" version --short 2>/dev/null | grep -qx -- "$helm_version\(+.*\)\?"
}

all_built() {
	local name
	for name in etcd "${k8s_binaries[@]}" kubectl; do
		[ -x "$bin_dir/$name" ] || return 1
	done
	kwok_current && helm_current
}

if all_built; then
	log "etcd $etcd_version, kubernetes $k8s_version (${k8s_binaries[*]} kubectl), kwok $kwok_version and helm $helm_version already built in $bin_dir"
	echo "$bin_dir"
	exit 0
fi

# The official Go tarball installs to /usr/local/go, which is not always on PATH.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null 2>&1 || die "'go' is not on PATH: install Go >= 1.26 to build kube-apiserver and etcd"
go_version=$(go env GOVERSION)
case "$go_version" in
go1.2[6-9]* | go1.[3-9][0-9]* | go[2-9]*) ;;
*) die "$(command -v go) is $go_version; kube-apiserver $k8s_version needs Go >= 1.26 (Debian's golang-go is too old)" ;;
esac
log "using $(go version) at $(command -v go)"
mkdir -p "$bin_dir"

# Fetch the modules first so that an unreachable module proxy gives one clear message
# rather than a compile error deep inside the build.
download() { # <module dir>
	local out
	if ! out=$(cd "$1" && go mod download 2>&1); then
		printf '%s\n' "$out" | tail -n 20 >&2
		die "could not download the Go modules of $1: is the Go module proxy ($(go env GOPROXY)) reachable?"
	fi
}

# Build one main package into $bin_dir/<name>, atomically (temp file in the same dir, then mv).
build() { # <module dir> <package> <name> [extra ldflags]
	local dir=$1 pkg=$2 name=$3 extra=${4:-}
	if [ -x "$bin_dir/$name" ]; then
		log "$name: already built"
		return
	fi
	log "$name: downloading modules"
	download "$dir"
	log "$name: building $pkg (a cold build takes several minutes)"
	local start
	tmp=$(mktemp "$bin_dir/.$name.XXXXXX")
	start=$(date +%s)
	if ! (cd "$dir" && CGO_ENABLED=0 go build -trimpath -buildvcs=false \
		-ldflags="-s -w $extra" -o "$tmp" "$pkg"); then
		rm -f "$tmp"
		die "go build of $pkg failed"
	fi
	chmod 0755 "$tmp"
	mv -f "$tmp" "$bin_dir/$name"
	tmp=""
	log "$name: built in $(($(date +%s) - start))s"
}

# A half-written binary never keeps its final name; also remove it when interrupted.
tmp=""
trap 'rm -f "$tmp"' EXIT
build "$here/etcd" go.etcd.io/etcd/server/v3 etcd
minor=$(echo "$k8s_version" | cut -d. -f2)
k8s_ldflags="-X k8s.io/component-base/version.gitVersion=$k8s_version \
-X k8s.io/component-base/version.gitMajor=1 \
-X k8s.io/component-base/version.gitMinor=$minor \
-X k8s.io/component-base/version.gitTreeState=clean"
# kube-apiserver first: the scheduler and controller-manager then reuse most of its build cache.
for name in "${k8s_binaries[@]}"; do
	build "$here/apiserver" "k8s.io/kubernetes/cmd/$name" "$name" "$k8s_ldflags"
done
# kubectl from a module of its own (its go.sum), at the same k8s.io/kubernetes version.
build "$here/kubectl" "k8s.io/kubernetes/cmd/kubectl" kubectl "$k8s_ldflags"
kwok_current || rm -f "$bin_dir/kwok"
build "$here/kwok" sigs.k8s.io/kwok/cmd/kwok kwok "-X sigs.k8s.io/kwok/pkg/consts.Version=${kwok_version#v}"
# helm's version and default Kubernetes version are set by its Makefile's ldflags; without
# them `helm version` says "v3.22" and `helm template` assumes Kubernetes v1.20.
helm_k8s_minor=$(echo "$helm_client_go" | cut -d. -f2)
helm_current || rm -f "$bin_dir/helm"
build "$here/helm" helm.sh/helm/v3/cmd/helm helm "-X helm.sh/helm/v3/internal/version.version=$helm_version \
-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$helm_k8s_minor \
-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$helm_k8s_minor"

log "done: etcd $etcd_version, kubernetes $k8s_version (${k8s_binaries[*]} kubectl), kwok $kwok_version and helm $helm_version in $bin_dir"
echo "$bin_dir"
