#!/usr/bin/env bash
# `make image`: builds the operator's OCI image for this host's architecture
# with podman from the repository's Dockerfile (no base image is pulled), and
# saves it as a docker-archive for loading into a node's container runtime.
#
# The result is cached in ${XDG_CACHE_HOME:-~/.cache}/collibra-oauth-operator/image/KEY/
# with KEY the hash of the Dockerfile and the assembled file tree, so an
# unchanged operator is not rebuilt; the directory holds image.tar (docker
# archive), ref (the image name) and size (bytes, uncompressed). Prints the
# directory as the last line of stdout.
#
# Environment:
#   IMAGE_REPOSITORY  image name without tag (default localhost/collibra-oauth-operator)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

die() {
	echo "image build.sh: $*" >&2
	exit 1
}

command -v podman >/dev/null || die "podman is not installed (make image-deps, or Debian: apt-get install podman)"

tree="$(bash "$here/rootfs.sh" | tail -n1)"
arch="${tree##*/linux-}"

# Key: the Dockerfile plus every file's path, mode and contents in the tree.
key="$({
	cat "$root/Dockerfile" "$root/.dockerignore"
	(cd "$tree" && find . -type f -printf '%p %m\n' | LC_ALL=C sort)
	(cd "$tree" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
} | sha256sum | cut -c1-16)"
repo="${IMAGE_REPOSITORY:-localhost/collibra-oauth-operator}"
ref="$repo:$key"
out="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/collibra-oauth-operator/image/$key"

if [[ ! -s "$out/image.tar" || ! -s "$out/ref" ]]; then
	mkdir -p "$out"
	exec 9>"$out/.build.lock"
	flock 9
	if [[ ! -s "$out/image.tar" || ! -s "$out/ref" ]]; then
		export CONTAINERS_CONF="$here/containers.conf"
		start=$SECONDS
		podman build --quiet --platform "linux/$arch" --build-arg "TARGETARCH=$arch" \
			-f "$root/Dockerfile" -t "$ref" -t "$repo:dev" "$root" >&2 ||
			die "podman build failed (see above)"
		rm -f "$out/image.tar.tmp"
		podman save --quiet --format docker-archive -o "$out/image.tar.tmp" "$ref" >&2 ||
			die "podman save failed"
		podman image inspect --format '{{.Size}}' "$ref" >"$out/size"
		mv -f "$out/image.tar.tmp" "$out/image.tar"
		echo "$ref" >"$out/ref"
		echo "image build.sh: built $ref ($(cat "$out/size") bytes) in $((SECONDS - start))s" >&2
	fi
fi
echo "$out"
