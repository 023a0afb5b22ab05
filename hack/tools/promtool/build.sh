#!/usr/bin/env bash
# Builds promtool (github.com/prometheus/prometheus/cmd/promtool) from the Go
# module in this directory, for the tests of the chart's PrometheusRule
# (`promtool check rules`, `promtool test rules`), and promql-selectors (ours,
# on Prometheus' PromQL parser: the metric names an expression selects). The
# binaries go into a cache directory keyed by the module's pins and sources,
# as ../build.sh does for helm.
#
# Prints the directory as the last line of stdout. Does nothing when the
# binary is already there, so callers may run it before every test run.
#
# Environment:
#   PROMTOOL_BIN_DIR  use this directory instead of the hashed cache dir
#   XDG_CACHE_HOME    parent of the default cache (default ~/.cache)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../../lib/go-build.sh
source "$here/../../lib/go-build.sh"

die() {
	echo "promtool build.sh: $*" >&2
	exit 1
}

# The build tags and the version stamp are part of what gets built, so they
# are in the key.
key="$(go_build_key "$here/go.mod" "$here/go.sum" "$here"/*.go "$here"/promql-selectors/*.go -- promtool-remove_all_sd-v1)"
out="${PROMTOOL_BIN_DIR:-$(go_build_dir promtool "$key")}"

if ! go_build_present "$out" promtool promql-selectors; then
	go_bin="$(go_build_tool)" || die "the Go toolchain ('go') is not installed or not on PATH; it is needed to build promtool"
	version="$(cd "$here" && "$go_bin" list -m -f '{{.Version}}' github.com/prometheus/prometheus)" ||
		die "cannot resolve github.com/prometheus/prometheus in go.mod"
	# The Go module's v0.3XX.Y is Prometheus' release 3.XX.Y.
	if [[ "$version" =~ ^v0\.3([0-9]{2})\.([0-9]+)$ ]]; then
		version="3.$((10#${BASH_REMATCH[1]})).${BASH_REMATCH[2]}"
	fi
	# `promtool --version` names the module version it was built from, as
	# Prometheus' own release build stamps it (common/version).
	ldflags="-s -w -X github.com/prometheus/common/version.Version=$version"
	# shellcheck disable=SC2034 # read by go_build_cached
	GO_BUILD_ENV=(CGO_ENABLED=0)
	# remove_all_sd: leave out the cloud service discoveries (AWS, Azure, GCE,
	# ...), which the rule commands never use and which are most of the build.
	# shellcheck disable=SC2034 # read by go_build_cached
	GO_BUILD_FLAGS=(-buildvcs=false -tags=remove_all_sd "-ldflags=$ldflags")
	go_build_cached "promtool build.sh" "$here" "$out" \
		promtool=github.com/prometheus/prometheus/cmd/promtool \
		promql-selectors=./promql-selectors
	go_build_present "$out" promtool promql-selectors || die "binaries missing in $out after the build"
fi
echo "$out"
