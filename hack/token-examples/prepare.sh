#!/usr/bin/env bash
# Prepares what the token examples in examples/using-credentials need and
# prints its path as the last line of stdout:
#   prepare.sh python  a venv's python with requirements.txt installed (PyPI)
#   prepare.sh go      the Go example, built
# Both are cached under ~/.cache/collibra-oauth-operator/, keyed by their
# inputs, and built once when several callers race (flock).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
examples="$(cd "$here/../../examples/using-credentials" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../lib/go-build.sh
source "$here/../lib/go-build.sh"

die() {
	echo "token-examples prepare.sh: $*" >&2
	exit 1
}

python_env() {
	local python version key out
	python="$(command -v python3 || true)"
	[[ -n "$python" ]] || die "python3 is not on PATH (Debian: apt-get install python3 python3-venv)"
	version="$("$python" -c 'import sys; print(sys.version)')"
	key="$(go_build_key "$examples/requirements.txt" -- "$version")"
	out="$(go_build_dir python-venv "$key")"
	if [[ ! -e "$out/.complete" ]]; then
		mkdir -p "$out" || die "cannot create $out"
		exec 9>"$out/.build.lock"
		flock 9
		if [[ ! -e "$out/.complete" ]]; then
			rm -rf "$out/venv"
			"$python" -m venv "$out/venv" >&2 ||
				die "python3 -m venv failed (Debian: apt-get install python3-venv)"
			"$out/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
				-r "$examples/requirements.txt" >&2 ||
				die "pip install -r $examples/requirements.txt failed"
			touch "$out/.complete"
		fi
	fi
	echo "$out/venv/bin/python"
}

go_example() {
	local key out
	go_build_tool >/dev/null || die "go is not on PATH"
	key="$(go_build_key "$examples/go/go.mod" "$examples/go/go.sum" "$examples"/go/*.go)"
	out="$(go_build_dir token-example-go "$key")"
	go_build_cached "token-examples prepare.sh" "$examples/go" "$out" token-example=. >&2
	echo "$out/token-example"
}

case "${1:-}" in
python) python_env ;;
go) go_example ;;
*) die "usage: prepare.sh python|go" ;;
esac
