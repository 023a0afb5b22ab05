# shellcheck shell=bash
# Shared by the scripts that build Go binaries for the tests
# (hack/control-plane/build.sh, hack/tools/build.sh, ...): a cache directory
# keyed by the inputs, a lock so concurrent callers compile once, and binaries
# renamed into place only when complete. Source it; it defines functions only.

# go_build_key FILE... : a short hash of the files' contents (and of any extra
# words given after `--`), for naming the cache directory.
go_build_key() {
	local files=() extra=()
	while (($#)); do
		if [[ $1 == -- ]]; then
			shift
			extra=("$@")
			break
		fi
		files+=("$1")
		shift
	done
	{
		cat "${files[@]}"
		((${#extra[@]} == 0)) || printf '%s\n' "${extra[@]}"
	} | sha256sum | cut -c1-16
}

# go_build_dir KIND KEY : the cache directory for one kind of build
# (${XDG_CACHE_HOME:-~/.cache}/collibra-oauth-operator/KIND/KEY).
go_build_dir() {
	echo "${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/collibra-oauth-operator/$1/$2"
}

# go_build_present DIR NAME... : true when every NAME is an executable in DIR.
go_build_present() {
	local dir=$1 b
	shift
	for b in "$@"; do
		[[ -x "$dir/$b" ]] || return 1
	done
}

# go_build_tool : prints the path of the Go toolchain, or fails naming it.
go_build_tool() {
	local go_bin
	go_bin="$(command -v go || true)"
	if [[ -z "$go_bin" && -x /usr/local/go/bin/go ]]; then
		go_bin=/usr/local/go/bin/go
	fi
	[[ -n "$go_bin" ]] || return 1
	echo "$go_bin"
}

# go_build_cached LABEL MODULE_DIR OUT_DIR NAME=PACKAGE...
# Builds every NAME that is not yet in OUT_DIR from PACKAGE (resolved in the Go
# module MODULE_DIR) with the flags in the array GO_BUILD_FLAGS (may be unset)
# and the environment in GO_BUILD_ENV (e.g. CGO_ENABLED=0). LABEL prefixes
# messages. Runs in a subshell: the caller's traps and descriptors are kept.
go_build_cached() (
	set -euo pipefail
	label=$1 module=$2 out=$3
	shift 3
	die() {
		echo "$label: $*" >&2
		exit 1
	}
	names=()
	pkgs=()
	for spec in "$@"; do
		names+=("${spec%%=*}")
		pkgs+=("${spec#*=}")
	done
	go_build_present "$out" "${names[@]}" && exit 0

	mkdir -p "$out" || die "cannot create $out"
	# Serialise concurrent callers (two test binaries started together, or two
	# worktrees) so only one compiles; the others find the finished binaries.
	exec 9>"$out/.build.lock"
	flock 9
	# Leftovers of a build that was killed (its EXIT trap never ran); safe to
	# remove while holding the lock.
	rm -rf "$out"/.build.??????

	missing=()
	missing_pkgs=()
	for i in "${!names[@]}"; do
		if [[ ! -x "$out/${names[$i]}" ]]; then
			missing+=("${names[$i]}")
			missing_pkgs+=("${pkgs[$i]}")
		fi
	done
	((${#missing[@]} > 0)) || exit 0

	go_bin="$(go_build_tool)" ||
		die "the Go toolchain ('go') is not installed or not on PATH; it is needed to build ${missing[*]}"

	# Build into a private temp dir inside $out and rename each binary into
	# place, so an interrupted build never leaves a half-written binary under
	# its final name.
	tmp="$(mktemp -d "$out/.build.XXXXXX")"
	trap 'rm -rf "$tmp"' EXIT
	echo "$label: building ${missing[*]} into $out (a first build takes minutes)" >&2
	start=$SECONDS
	if ! (cd "$module" && env ${GO_BUILD_ENV[@]+"${GO_BUILD_ENV[@]}"} "$go_bin" build \
		${GO_BUILD_FLAGS[@]+"${GO_BUILD_FLAGS[@]}"} -o "$tmp/" "${missing_pkgs[@]}") >&2; then
		die "go build of ${missing[*]} failed (see the compiler output above)"
	fi
	for b in "${missing[@]}"; do
		[[ -x "$tmp/$b" ]] || die "go build did not produce $b"
		mv -f "$tmp/$b" "$out/$b"
	done
	echo "$label: built ${missing[*]} in $((SECONDS - start))s" >&2
)

# go_build_kube_ldflags MODULE_DIR : prints the -ldflags value that stamps the
# k8s.io/kubernetes version MODULE_DIR's go.mod requires into the binaries, as
# Kubernetes' hack/lib/version.sh does (gitVersion, gitMajor, gitMinor and the
# release's time as buildDate, in both packages that report it). The module
# proxy does not say which commit a version is, so gitCommit stays empty
# rather than the placeholder the sources carry.
go_build_kube_ldflags() (
	set -euo pipefail
	module=$1
	go_bin="$(go_build_tool)" || {
		echo "the Go toolchain ('go') is not installed or not on PATH" >&2
		exit 1
	}
	version="$(cd "$module" && "$go_bin" list -m -f '{{.Version}}' k8s.io/kubernetes)"
	[[ "$version" =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+$ ]] || {
		echo "$module/go.mod: k8s.io/kubernetes version '$version' is not a release vX.Y.Z" >&2
		exit 1
	}
	major="${BASH_REMATCH[1]}" minor="${BASH_REMATCH[2]}"
	# The release's own time, so the stamp is the same on every machine.
	build_date="$(cd "$module" && "$go_bin" list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)"
	ldflags="-s -w"
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
		ldflags+=" -X $pkg.gitCommit= -X $pkg.gitTreeState= -X $pkg.buildDate=$build_date"
	done
	echo "$ldflags"
)
