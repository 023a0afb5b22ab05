#!/usr/bin/env bash
# Prepares what the token examples in examples/using-credentials need and
# prints its path as the last line of stdout:
#   prepare.sh python  a venv's python with requirements.txt installed (PyPI)
#   prepare.sh go      the Go example, built
#   prepare.sh spring  a launcher for the Spring Security example, compiled
#                      with its dependencies (Maven Central, ~/.m2)
# Each is cached under ~/.cache/collibra-oauth-operator/, keyed by their
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

spring_example() {
	local java javac mvn key out build start
	java="$(command -v java || true)"
	javac="$(command -v javac || true)"
	mvn="$(command -v mvn || true)"
	[[ -n "$java" && -n "$javac" ]] ||
		die "a JDK (java, javac) is not on PATH (Debian: apt-get install openjdk-17-jdk-headless)"
	[[ -n "$mvn" ]] || die "mvn is not on PATH (Debian: apt-get install maven)"
	key="$(go_build_key "$examples/spring/pom.xml" "$examples"/spring/src/main/java/example/*.java \
		-- "$("$javac" -version 2>&1)" "$java")"
	out="$(go_build_dir token-example-spring "$key")"
	if [[ ! -e "$out/.complete" ]]; then
		mkdir -p "$out" || die "cannot create $out"
		exec 9>"$out/.build.lock"
		flock 9
		if [[ ! -e "$out/.complete" ]]; then
			# Built in a copy, so no target/ lands in the source tree.
			rm -rf "$out/build" "$out/token-example"
			build="$out/build"
			mkdir -p "$build"
			cp -R "$examples/spring/pom.xml" "$examples/spring/src" "$build/"
			echo "token-examples prepare.sh: building the Spring example into $out" >&2
			start=$SECONDS
			"$mvn" --batch-mode --quiet -Dstyle.color=never -f "$build/pom.xml" \
				compile dependency:copy-dependencies -DoutputDirectory="$build/lib" >&2 ||
				die "mvn compile of examples/using-credentials/spring failed (see above)"
			echo "token-examples prepare.sh: built the Spring example in $((SECONDS - start))s" >&2
			# java expands the lib/* of the class path itself.
			printf '#!/bin/bash\nexec %q -cp %q example.TokenExample "$@"\n' "$java" \
				"$build/target/classes:$build/lib/*" >"$out/token-example.tmp"
			chmod +x "$out/token-example.tmp"
			mv -f "$out/token-example.tmp" "$out/token-example"
			touch "$out/.complete"
		fi
	fi
	echo "$out/token-example"
}

case "${1:-}" in
python) python_env ;;
go) go_example ;;
spring) spring_example ;;
*) die "usage: prepare.sh python|go|spring" ;;
esac
