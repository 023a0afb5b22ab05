#!/usr/bin/env bash
# Starts, in the background, the slow builds the tests need besides cargo's,
# in the order the tests need them, and returns at once: the newest control
# plane (the e2e suite), promtool (the monitoring suite), the previous
# release's operator (the upgrade test),
# the node's binaries (the node tests), then each older control plane given
# (e.g. 1.34, make e2e-oldest).
#
# `make test` calls it first, so these builds overlap with cargo's
# compilation instead of following it. Nothing depends on it: every test
# runs the same build scripts itself, which wait on the background build's
# lock and then find its result (or, if it failed, build again and report
# the error).
#
# Usage: background-builds.sh [MAJOR.MINOR...]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log="${TMPDIR:-/tmp}/collibra-oauth-operator-background-builds.log"

# One after the other: on a small machine concurrent builds only slow each
# other down, and the first is needed first.
(
	bash "$here/control-plane/build.sh" || echo "background-builds.sh: the newest control plane failed" >&2
	# promtool and promql-selectors (tests/monitoring: the chart's alerts).
	bash "$here/tools/promtool/build.sh" || echo "background-builds.sh: promtool failed" >&2
	bash "$here/previous-release/build.sh" || echo "background-builds.sh: the previous release failed" >&2
	# The node tests' kubelet, kube-proxy and kube-scheduler (same module as
	# the newest control plane, so mostly linking) and the pause image.
	bash "$here/node/build.sh" || echo "background-builds.sh: the node binaries failed" >&2
	for v in "$@"; do
		bash "$here/control-plane/build.sh" "$v" || echo "background-builds.sh: control plane $v failed" >&2
	done
) </dev/null >"$log" 2>&1 &
echo "background-builds.sh: building the control planes (newest${*:+, $*}) and the previous release in the background; log: $log"
