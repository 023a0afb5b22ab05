#!/usr/bin/env bash
# Prepares the previous release for the upgrade test: its CRD, Helm chart and
# deploy/ taken from git history, and its operator binary built from the
# same commit, in a cache directory keyed by the commit.
#
# The previous release is the commit in ./ref (one line: a full commit id,
# optionally followed by a comment). Releases are not tagged yet, so the
# test reads the commit from git history: a shallow clone lacks it, and the
# script then fails saying how to fetch it.
#
# Prints the directory as the last line of stdout:
#   DIR/crds/  DIR/charts/collibra-oauth-operator/  DIR/deploy/  DIR/collibra-oauth-operator
# Does nothing when it is already complete.
#
# Environment:
#   PREVIOUS_RELEASE  a commit (or tag) to use instead of ./ref
#   XDG_CACHE_HOME    parent of the default cache (default ~/.cache)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

die() {
	echo "previous-release build.sh: $*" >&2
	exit 1
}

ref="${PREVIOUS_RELEASE:-$(awk 'NF && $1 !~ /^#/ { print $1; exit }' "$here/ref")}"
[[ -n "$ref" ]] || die "$here/ref names no commit"

command -v git >/dev/null || die "git is not installed; it is needed to read the previous release ($ref) from history"
git -C "$repo" rev-parse --git-dir >/dev/null 2>&1 ||
	die "$repo is not a git checkout, so the previous release ($ref) cannot be read from history; run the upgrade test from a git clone"
commit="$(git -C "$repo" rev-parse --verify --quiet "$ref^{commit}")" ||
	die "commit $ref (the previous release, hack/previous-release/ref) is not in this clone's history. \
A shallow clone lacks it: run 'git fetch --unshallow' (or clone without --depth), then run the test again."

out="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/collibra-oauth-operator/previous-release/$commit"
binary=collibra-oauth-operator

complete() {
	[[ -x "$out/$binary" && -f "$out/crds/oauthclients.yaml" && -f "$out/charts/collibra-oauth-operator/Chart.yaml" ]]
}

if complete; then
	echo "$out"
	exit 0
fi

mkdir -p "$out" || die "cannot create $out"
exec 9>"$out/.build.lock"
flock 9
if complete; then
	echo "$out"
	exit 0
fi
rm -rf "$out/src"
mkdir "$out/src"
git -C "$repo" archive "$commit" | tar -x -C "$out/src" ||
	die "cannot extract commit $commit"

# The release's own sources and lock file, in a target directory of its own
# (it must not replace the current binary in target/). --locked: exactly the
# dependencies that release was tested with. No debug info and no
# incremental state: the tree is thrown away after the build, and both
# would only cost time and about 1.5 GB of disk.
echo "previous-release build.sh: building the operator of ${commit:0:12} (a first build takes minutes)" >&2
start=$SECONDS
(cd "$out/src" && CARGO_TARGET_DIR="$out/target" CARGO_INCREMENTAL=0 CARGO_PROFILE_DEV_DEBUG=0 \
	cargo build --locked -p collibra-oauth-operator --bin "$binary") >&2 ||
	die "cargo build of the previous release's operator (${commit:0:12}) failed (see above)"
echo "previous-release build.sh: built in $((SECONDS - start))s" >&2

rm -rf "$out/crds" "$out/charts" "$out/deploy"
cp -r "$out/src/crds" "$out/src/charts" "$out/src/deploy" "$out/"
cp "$out/target/debug/$binary" "$out/$binary.tmp"
mv -f "$out/$binary.tmp" "$out/$binary"
# The sources and the build tree are not needed any more (about 2 GB).
rm -rf "$out/src" "$out/target"
complete || die "$out is incomplete after the build"
echo "$out"
