#!/usr/bin/env bash
# Builds the real control-plane binaries (etcd, kube-apiserver,
# kube-controller-manager) from the Go module in this directory into a cache
# directory keyed by the module's pins, and links kubectl beside them so the
# directory is also a valid KUBEBUILDER_ASSETS directory.
#
# Prints the directory as the last line of stdout. Does nothing when all
# binaries are already there, so callers may run it before every test run.
#
# Environment:
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

# The key covers every input that changes what gets built, so bumping a pin
# (or the etcd wrapper) never reuses stale binaries.
key="$(go_build_key "$here/go.mod" "$here/go.sum" "$here"/etcd/*.go)"
out="${CONTROL_PLANE_BIN_DIR:-$(go_build_dir control-plane "$key")}"

if ! go_build_present "$out" etcd kube-apiserver kube-controller-manager kubectl; then
	# No -trimpath: it changes every compile action's cache key, and the Go
	# build cache is what makes a rebuild after a pin change cheap.
	# shellcheck disable=SC2034 # read by go_build_cached
	GO_BUILD_FLAGS=(-ldflags='-s -w')
	go_build_cached "control-plane build.sh" "$here" "$out" \
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
