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

die() {
	echo "control-plane build.sh: $*" >&2
	exit 1
}

# The key covers every input that changes what gets built, so bumping a pin
# (or the etcd wrapper) never reuses stale binaries.
key="$(cat "$here/go.mod" "$here/go.sum" "$here"/etcd/*.go | sha256sum | cut -c1-16)"
cache_root="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/collibra-oauth-operator/control-plane"
out="${CONTROL_PLANE_BIN_DIR:-$cache_root/$key}"
binaries=(etcd kube-apiserver kube-controller-manager)

all_present() {
	local b
	for b in "${binaries[@]}" kubectl; do
		[[ -x "$out/$b" ]] || return 1
	done
}

link_kubectl() {
	local kubectl
	kubectl="$(command -v kubectl || true)"
	[[ -n "$kubectl" ]] || die "kubectl is not on PATH; it is needed beside the built binaries"
	ln -sfn "$kubectl" "$out/kubectl"
}

# Fast path: nothing to do and no lock needed.
if all_present; then
	echo "$out"
	exit 0
fi

mkdir -p "$out" || die "cannot create $out"

# Serialise concurrent callers (e.g. two test binaries started together) so
# only one of them compiles; the others find the finished binaries.
exec 9>"$out/.build.lock"
flock 9
# Leftovers of a build that was killed (its EXIT trap never ran); safe to
# remove while holding the lock.
rm -rf "$out"/.build.??????

missing=()
for b in "${binaries[@]}"; do
	[[ -x "$out/$b" ]] || missing+=("$b")
done

if ((${#missing[@]} > 0)); then
	go_bin="$(command -v go || true)"
	if [[ -z "$go_bin" && -x /usr/local/go/bin/go ]]; then
		go_bin=/usr/local/go/bin/go
	fi
	[[ -n "$go_bin" ]] || die "the Go toolchain ('go') is not installed or not on PATH; it is needed to build ${missing[*]}"

	pkgs=()
	for b in "${missing[@]}"; do
		case "$b" in
		etcd) pkgs+=(./etcd) ;;
		*) pkgs+=("k8s.io/kubernetes/cmd/$b") ;;
		esac
	done

	# Build into a private temp dir inside $out and rename each binary into
	# place, so an interrupted build never leaves a half-written binary under
	# its final name.
	tmp="$(mktemp -d "$out/.build.XXXXXX")"
	trap 'rm -rf "$tmp"' EXIT
	echo "control-plane build.sh: building ${missing[*]} into $out (first build takes several minutes)" >&2
	start=$SECONDS
	# No -trimpath: it changes every compile action's cache key, and the Go
	# build cache is what makes a rebuild after a pin change cheap.
	if ! (cd "$here" && "$go_bin" build -ldflags='-s -w' -o "$tmp/" "${pkgs[@]}") >&2; then
		die "go build of ${missing[*]} failed (see the compiler output above)"
	fi
	for b in "${missing[@]}"; do
		[[ -x "$tmp/$b" ]] || die "go build did not produce $b"
		mv -f "$tmp/$b" "$out/$b"
	done
	echo "control-plane build.sh: built ${missing[*]} in $((SECONDS - start))s" >&2
fi

link_kubectl
all_present || die "binaries missing in $out after the build"
echo "$out"
