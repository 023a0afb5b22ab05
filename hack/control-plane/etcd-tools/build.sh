#!/usr/bin/env bash
# Builds etcdctl and etcdutl from this Go module (the etcd version of the
# test control plane's server) into a cache directory keyed by the module's
# pins; the disaster recovery test takes a snapshot with
# `etcdctl snapshot save` and restores it with `etcdutl snapshot restore`.
#
# Prints the directory as the last line of stdout. Does nothing when both
# binaries are already there.
#
# Environment:
#   XDG_CACHE_HOME  parent of the cache (default ~/.cache)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../../lib/go-build.sh
source "$here/../../lib/go-build.sh"

key="$(go_build_key "$here/go.mod" "$here/go.sum")"
out="$(go_build_dir etcd-tools "$key")"
# shellcheck disable=SC2034 # read by go_build_cached
GO_BUILD_FLAGS=("-ldflags=-s -w")
go_build_cached "etcd-tools build.sh" "$here" "$out" \
	etcdctl=go.etcd.io/etcd/etcdctl/v3 \
	etcdutl=go.etcd.io/etcd/etcdutl/v3
echo "$out"
