#!/usr/bin/env bash
# Builds the real control-plane binaries (etcd, kube-apiserver,
# kube-controller-manager) of one Kubernetes minor version from its Go module
# into a cache directory keyed by the module's pins, and links kubectl beside
# them so the directory is also a valid KUBEBUILDER_ASSETS directory.
#
# The newest version's module is this directory; older ones are in
# v<MAJOR.MINOR>/ below it (e.g. v1.34/). The binaries report the version
# they are built from (`kubectl version`, /version), set at link time as
# Kubernetes' own build does.
#
# Prints the directory as the last line of stdout. Does nothing when all
# binaries are already there, so callers may run it before every test run.
#
# Usage: build.sh [MAJOR.MINOR]   (default: $CONTROL_PLANE_VERSION, else the newest)
#
# Environment:
#   CONTROL_PLANE_VERSION  the Kubernetes minor to build, e.g. 1.34 (default newest)
#   CONTROL_PLANE_BIN_DIR  use this directory instead of the hashed cache dir
#   XDG_CACHE_HOME         parent of the default cache (default ~/.cache)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../lib/go-build.sh
source "$here/../lib/go-build.sh"

die() {
	echo "control-plane build.sh: $*" >&2
	exit 1
}

# The k8s.io/kubernetes version a module's go.mod requires (vX.Y.Z).
kube_version_of() {
	awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "$1/go.mod"
}

newest="$(kube_version_of "$here")"
[[ -n "$newest" ]] || die "$here/go.mod requires no k8s.io/kubernetes version"

want="${1:-${CONTROL_PLANE_VERSION:-}}"
want="${want#v}"
module="$here"
if [[ -n "$want" && "$newest" != "v$want".* ]]; then
	module="$here/v$want"
	if [[ ! -f "$module/go.mod" ]]; then
		known="${newest#v}"
		known="${known%.*} (hack/control-plane)"
		for d in "$here"/v*/; do
			d="$(basename "$d")"
			[[ -f "$here/$d/go.mod" ]] && known+=", ${d#v} (hack/control-plane/$d)"
		done
		die "no Go module for Kubernetes $want; known versions: $known"
	fi
fi
version="$(kube_version_of "$module")"
[[ "$version" =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+$ ]] ||
	die "$module/go.mod: k8s.io/kubernetes version '$version' is not a release vX.Y.Z"
major="${BASH_REMATCH[1]}"
minor="${BASH_REMATCH[2]}"

# The key covers every input that changes what gets built, so bumping a pin,
# the etcd wrapper or the way the version is stamped never reuses stale
# binaries.
key="$(go_build_key "$module/go.mod" "$module/go.sum" "$module"/etcd/*.go -- version-ldflags-v1)"
out="${CONTROL_PLANE_BIN_DIR:-$(go_build_dir control-plane "$key")}"

if ! go_build_present "$out" etcd kube-apiserver kube-controller-manager kubectl; then
	ldflags="$(go_build_kube_ldflags "$module")" ||
		die "cannot stamp the version of Kubernetes $version (see above)"
	# No -trimpath: it changes every compile action's cache key, and the Go
	# build cache is what makes a rebuild after a pin change cheap.
	# shellcheck disable=SC2034 # read by go_build_cached
	GO_BUILD_FLAGS=("-ldflags=$ldflags")
	go_build_cached "control-plane build.sh ($version)" "$module" "$out" \
		etcd=./etcd \
		kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
		kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager
	kubectl="$(command -v kubectl || true)"
	[[ -n "$kubectl" ]] || die "kubectl is not on PATH; it is needed beside the built binaries"
	ln -sfn "$kubectl" "$out/kubectl"
	go_build_present "$out" etcd kube-apiserver kube-controller-manager kubectl ||
		die "binaries missing in $out after the build"
fi
echo "$out"
