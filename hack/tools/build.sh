#!/usr/bin/env bash
# Builds the tools the packaging tests use from the Go module in this
# directory: helm (helm.sh/helm/v3/cmd/helm) and kstatus (./kstatus, ours, on
# sigs.k8s.io/cli-utils/pkg/kstatus/status). The binaries go into a cache
# directory keyed by the module's pins and sources.
#
# Prints the directory as the last line of stdout. Does nothing when the
# binaries are already there, so callers may run it before every test run.
#
# Environment:
#   TOOLS_BIN_DIR   use this directory instead of the hashed cache dir
#   XDG_CACHE_HOME  parent of the default cache (default ~/.cache)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../lib/go-build.sh
source "$here/../lib/go-build.sh"

die() {
	echo "tools build.sh: $*" >&2
	exit 1
}

# The version stamp below is part of what gets built, so it is in the key.
key="$(go_build_key "$here/go.mod" "$here/go.sum" "$here"/*.go "$here"/kstatus/*.go -- helm-ldflags-v1)"
out="${TOOLS_BIN_DIR:-$(go_build_dir tools "$key")}"

if ! go_build_present "$out" helm kstatus; then
	go_bin="$(go_build_tool)" || die "the Go toolchain ('go') is not installed or not on PATH; it is needed to build helm and kstatus"
	# helm reports the version it was built from (`helm version`).
	helm_version="$(cd "$here" && "$go_bin" list -m -f '{{.Version}}' helm.sh/helm/v3)" ||
		die "cannot resolve helm.sh/helm/v3 in go.mod"
	# As helm's own Makefile does: the Kubernetes version `helm template` and
	# `helm lint` assume is the one of the client-go it is built with
	# (v0.X.Y is Kubernetes 1.X).
	client_go="$(cd "$here" && "$go_bin" list -m -f '{{.Version}}' k8s.io/client-go)" ||
		die "cannot resolve k8s.io/client-go in go.mod"
	kube_minor="$(echo "$client_go" | cut -d. -f2)"
	ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
	for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
		ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$kube_minor"
	done
	# shellcheck disable=SC2034 # read by go_build_cached
	GO_BUILD_ENV=(CGO_ENABLED=0)
	# shellcheck disable=SC2034 # read by go_build_cached
	GO_BUILD_FLAGS=(-buildvcs=false "-ldflags=$ldflags")
	go_build_cached "tools build.sh" "$here" "$out" \
		helm=helm.sh/helm/v3/cmd/helm \
		kstatus=./kstatus
	go_build_present "$out" helm kstatus || die "binaries missing in $out after the build"
fi
echo "$out"
