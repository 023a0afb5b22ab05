#!/usr/bin/env bash
# Builds actionlint (github.com/rhysd/actionlint, pinned in go.mod here) into
# a cache directory keyed by this module's files and prints the directory as
# the last line of stdout. Does nothing when it is already there.
#
# Environment:
#   XDG_CACHE_HOME  parent of the default cache (default ~/.cache)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../lib/go-build.sh
source "$here/../lib/go-build.sh"

key="$(go_build_key "$here/go.mod" "$here/go.sum" "$here/tools.go")"
out="$(go_build_dir actionlint "$key")"
# shellcheck disable=SC2034 # read by go_build_cached
GO_BUILD_ENV=(CGO_ENABLED=0)
# shellcheck disable=SC2034 # read by go_build_cached
GO_BUILD_FLAGS=(-ldflags='-s -w')
go_build_cached "actionlint build.sh" "$here" "$out" \
	actionlint=github.com/rhysd/actionlint/cmd/actionlint
echo "$out"
