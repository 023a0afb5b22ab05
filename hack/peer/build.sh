#!/usr/bin/env bash
# Builds the peer of the side-by-side benchmark (`make bench-peer`):
#   - Ory Hydra v2.3.0 (Go module github.com/ory/hydra/v2, from the module
#     proxy), with the sqlite tag so that DSN=memory works;
#   - ory/hydra-maester at a pinned commit, from a git clone the caller
#     provides (the module proxy does not serve it, and this repository keeps
#     no copy of its code), and its CRD from the same commit.
# Everything goes into a cache directory keyed by this script (which holds
# the pins), so a second run returns at once.
#
# Usage: hack/peer/build.sh [HYDRA_MAESTER_GIT_DIR]
#   HYDRA_MAESTER_GIT_DIR  a clone of github.com/ory/hydra-maester (work tree
#                          or bare) that contains the pinned commit; the build
#                          uses that commit whatever is checked out. Needed
#                          only when hydra-maester is not cached yet.
# Prints the directory as the last line of stdout.
#
# Environment:
#   PEER_BIN_DIR    use this directory instead of the hashed cache dir
#   XDG_CACHE_HOME  parent of the default cache (default ~/.cache)
set -euo pipefail

HYDRA_VERSION=v2.3.0
# hydra-maester's master on 2026-06-09 (Go 1.26, controller-runtime v0.24.1).
HYDRA_MAESTER_COMMIT=0493362896d5269d513f259580055931edca0147

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../lib/go-build.sh
source "$here/../lib/go-build.sh"

die() {
	echo "peer build.sh: $*" >&2
	exit 1
}

out="${PEER_BIN_DIR:-$(go_build_dir peer "$(go_build_key "$here/build.sh")")}"
crd="hydra-maester-crd.yaml"

if go_build_present "$out" hydra hydra-maester && [[ -s "$out/$crd" ]]; then
	echo "$out"
	exit 0
fi

go_bin="$(go_build_tool)" || die "the Go toolchain ('go') is not installed or not on PATH; it builds Hydra and hydra-maester"
mkdir -p "$out" || die "cannot create $out"
work="$(mktemp -d)"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

if ! go_build_present "$out" hydra-maester || [[ ! -s "$out/$crd" ]]; then
	src="${1:-}"
	[[ -n "$src" ]] ||
		die "hydra-maester is not cached: pass a clone of github.com/ory/hydra-maester that contains commit $HYDRA_MAESTER_COMMIT (make bench-peer HYDRA_MAESTER_SRC=DIR)"
	[[ -d "$src" ]] || die "$src is not a directory (expected a clone of github.com/ory/hydra-maester)"
	git -C "$src" cat-file -e "$HYDRA_MAESTER_COMMIT^{commit}" 2>/dev/null ||
		die "$src has no commit $HYDRA_MAESTER_COMMIT of hydra-maester (git fetch it, or clone github.com/ory/hydra-maester)"
	mkdir "$work/maester"
	git -C "$src" archive "$HYDRA_MAESTER_COMMIT" | tar -x -C "$work/maester" ||
		die "cannot export commit $HYDRA_MAESTER_COMMIT from $src"
	# shellcheck disable=SC2034 # read by go_build_cached
	GO_BUILD_ENV=(CGO_ENABLED=0)
	# shellcheck disable=SC2034 # read by go_build_cached
	GO_BUILD_FLAGS=(-buildvcs=false "-ldflags=-s -w")
	go_build_cached "peer build.sh" "$work/maester" "$out" hydra-maester=.
	cp "$work/maester/config/crd/bases/hydra.ory.sh_oauth2clients.yaml" "$out/.$crd.tmp"
	mv -f "$out/.$crd.tmp" "$out/$crd"
fi

if ! go_build_present "$out" hydra; then
	# Built as a dependency, Hydra does not compile: a dependency's replace
	# directives are ignored, and it needs them. Inside a copy of its own
	# module they apply, except the one that points at a directory the
	# module zip does not ship (its generated HTTP client): dropping it makes
	# Go use the published module of that path.
	dir="$("$go_bin" mod download -json "github.com/ory/hydra/v2@$HYDRA_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
	[[ -n "$dir" && -d "$dir" ]] || die "go mod download github.com/ory/hydra/v2@$HYDRA_VERSION failed"
	cp -r "$dir" "$work/hydra"
	chmod -R u+w "$work/hydra"
	sed -i '/hydra-client-go\/v2 => \.\/internal\/httpclient/d' "$work/hydra/go.mod"
	command -v gcc >/dev/null || die "gcc is needed: Hydra's sqlite driver (DSN=memory) is built with CGO"
	# shellcheck disable=SC2034 # read by go_build_cached
	GO_BUILD_ENV=(CGO_ENABLED=1)
	# shellcheck disable=SC2034 # read by go_build_cached
	GO_BUILD_FLAGS=(-mod=mod -buildvcs=false "-tags=sqlite,sqlite_omit_load_extension" "-ldflags=-s -w")
	go_build_cached "peer build.sh" "$work/hydra" "$out" hydra=.
fi

if ! go_build_present "$out" hydra hydra-maester || [[ ! -s "$out/$crd" ]]; then
	die "files missing in $out after the build"
fi
echo "$out"
