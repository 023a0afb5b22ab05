#!/usr/bin/env bash
# Starts build.sh in the background for the newest Kubernetes version and
# then for each version given (e.g. 1.34), one after the other, and returns
# at once. `make test` calls it first, so the Go builds overlap with cargo's
# compilation instead of following it. A test that needs a control plane
# later runs build.sh itself, which waits on the build's lock and then finds
# the binaries (or, if the background build failed, builds again and reports
# the error), so nothing depends on this script having succeeded.
#
# Usage: background.sh [MAJOR.MINOR...]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log="${TMPDIR:-/tmp}/collibra-oauth-operator-control-plane-build.log"

# Serial, newest first: the newest is needed first, and two concurrent Go
# builds on a small machine only slow each other down.
(
	for v in "" "$@"; do
		bash "$here/build.sh" ${v:+"$v"} || echo "background.sh: build.sh $v failed" >&2
	done
) </dev/null >"$log" 2>&1 &
echo "background.sh: building the control planes (newest${*:+ and $*}) in the background; log: $log"
