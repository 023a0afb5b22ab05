#!/usr/bin/env bash
# Builds the node binaries (kubelet, kube-proxy, kube-scheduler) from the same
# Go module as the control plane (hack/control-plane: one k8s.io/kubernetes
# pin for every component) into a cache directory keyed by that module's
# files, and prints the directory as the last line of stdout. Does nothing
# when the binaries are already there.
#
# It also builds the node's sandbox image (./pause, a static Go program on an
# empty base, saved as pause.tar for importing into containerd), so that no
# image is pulled from a registry.
#
# Environment:
#   NODE_BIN_DIR    use this directory instead of the hashed cache dir
#   XDG_CACHE_HOME  parent of the default cache (default ~/.cache)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
module="$here/../control-plane"
# shellcheck source-path=SCRIPTDIR source=../lib/go-build.sh
source "$here/../lib/go-build.sh"

die() {
	echo "node build.sh: $*" >&2
	exit 1
}

key="$(go_build_key "$module/go.mod" "$module/go.sum" "$module/tools.go" \
	"$here/pause/go.mod" "$here/pause/main.go" "$here/pause/Containerfile" -- version-ldflags-v1)"
out="${NODE_BIN_DIR:-$(go_build_dir node "$key")}"

if ! go_build_present "$out" kubelet kube-proxy kube-scheduler; then
	# The control plane's version stamp (the kubelet reports it as the
	# node's kubeletVersion), and its flags, so the Go build cache is shared.
	ldflags="$(go_build_kube_ldflags "$module")" || die "cannot stamp the Kubernetes version (see above)"
	# shellcheck disable=SC2034 # read by go_build_cached
	GO_BUILD_FLAGS=("-ldflags=$ldflags")
	go_build_cached "node build.sh" "$module" "$out" \
		kubelet=k8s.io/kubernetes/cmd/kubelet \
		kube-proxy=k8s.io/kubernetes/cmd/kube-proxy \
		kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler
fi

if [[ ! -s "$out/pause.tar" ]]; then
	# shellcheck disable=SC2034 # read by go_build_cached
	GO_BUILD_ENV=(CGO_ENABLED=0)
	# shellcheck disable=SC2034
	GO_BUILD_FLAGS=(-ldflags='-s -w')
	go_build_cached "node build.sh" "$here/pause" "$out" pause=.
	command -v podman >/dev/null || die "podman is not installed (make image-deps); it builds the pause image"
	exec 9>"$out/.image.lock"
	flock 9
	if [[ ! -s "$out/pause.tar" ]]; then
		ctx="$(mktemp -d)"
		trap 'rm -rf "$ctx"' EXIT
		cp "$here/pause/Containerfile" "$out/pause" "$ctx/"
		ref="localhost/coo-test-pause:$key"
		CONTAINERS_CONF="$here/../image/containers.conf" podman build --quiet -t "$ref" "$ctx" >&2 ||
			die "podman build of the pause image failed"
		CONTAINERS_CONF="$here/../image/containers.conf" podman save --quiet --format docker-archive \
			-o "$out/pause.tar.tmp" "$ref" >&2 || die "podman save of the pause image failed"
		echo "$ref" >"$out/pause.ref"
		mv -f "$out/pause.tar.tmp" "$out/pause.tar"
	fi
fi
echo "$out"
