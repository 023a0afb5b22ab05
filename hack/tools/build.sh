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

die() {
	echo "tools build.sh: $*" >&2
	exit 1
}

key="$(cat "$here/build.sh" "$here/go.mod" "$here/go.sum" "$here"/*.go "$here"/kstatus/*.go | sha256sum | cut -c1-16)"
cache_root="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/collibra-oauth-operator/tools"
out="${TOOLS_BIN_DIR:-$cache_root/$key}"
binaries=(helm kstatus)

all_present() {
	local b
	for b in "${binaries[@]}"; do
		[[ -x "$out/$b" ]] || return 1
	done
}

if all_present; then
	echo "$out"
	exit 0
fi

mkdir -p "$out" || die "cannot create $out"

# Serialise concurrent callers so only one of them compiles.
exec 9>"$out/.build.lock"
flock 9
rm -rf "$out"/.build.??????

missing=()
for b in "${binaries[@]}"; do
	[[ -x "$out/$b" ]] || missing+=("$b")
done

if ((${#missing[@]} > 0)); then
	go_bin="$(command -v go || true)"
	if [[ -z "$go_bin" && -x /usr/local/go/bin/go ]]; then
		go_bin=/usr/local/go/bin/go
	fi
	[[ -n "$go_bin" ]] || die "the Go toolchain ('go') is not installed or not on PATH; it is needed to build ${missing[*]}"

	pkgs=()
	for b in "${missing[@]}"; do
		case "$b" in
		helm) pkgs+=(helm.sh/helm/v3/cmd/helm) ;;
		kstatus) pkgs+=(./kstatus) ;;
		esac
	done

	tmp="$(mktemp -d "$out/.build.XXXXXX")"
	trap 'rm -rf "$tmp"' EXIT
	echo "tools build.sh: building ${missing[*]} into $out (first build takes a few minutes)" >&2
	start=$SECONDS
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
	if ! (cd "$here" && CGO_ENABLED=0 "$go_bin" build -buildvcs=false -ldflags="$ldflags" -o "$tmp/" "${pkgs[@]}") >&2; then
		die "go build of ${missing[*]} failed (see the compiler output above)"
	fi
	for b in "${missing[@]}"; do
		[[ -x "$tmp/$b" ]] || die "go build did not produce $b"
		mv -f "$tmp/$b" "$out/$b"
	done
	echo "tools build.sh: built ${missing[*]} in $((SECONDS - start))s" >&2
fi

all_present || die "binaries missing in $out after the build"
echo "$out"
