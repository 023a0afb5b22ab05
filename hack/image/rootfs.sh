#!/usr/bin/env bash
# Assembles the image's file tree for one architecture in
# dist/image/linux-ARCH/ (what the Dockerfile copies): the operator built as
# a static binary (glibc, linked with crt-static), the CA roots and
# passwd/group entries for uid 65532.
#
#   hack/image/rootfs.sh [ARCH]     ARCH: amd64 or arm64 (default: this host's)
#
# Environment:
#   CA_BUNDLE   PEM bundle of trusted roots (default: Debian's
#               /etc/ssl/certs/ca-certificates.crt, package ca-certificates)
#   CARGO       cargo to use (default: cargo); cross-compiling arm64 needs a
#               linker and glibc for aarch64-unknown-linux-gnu (the release
#               workflow builds each architecture on its own runner instead)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

die() {
	echo "image rootfs.sh: $*" >&2
	exit 1
}

host_arch() {
	case "$(uname -m)" in
	x86_64) echo amd64 ;;
	aarch64 | arm64) echo arm64 ;;
	*) die "unsupported host architecture $(uname -m) (amd64 and arm64 are supported)" ;;
	esac
}

arch="${1:-$(host_arch)}"
case "$arch" in
amd64) triple=x86_64-unknown-linux-gnu ;;
arm64) triple=aarch64-unknown-linux-gnu ;;
*) die "unknown architecture '$arch' (amd64 or arm64)" ;;
esac

ca_bundle="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
[[ -s "$ca_bundle" ]] || die "no CA bundle at $ca_bundle (Debian: apt-get install ca-certificates; or set CA_BUNDLE)"

# Static glibc (crt-static) rather than musl: the gnu target's standard
# library comes with every Rust toolchain, while the musl one must be
# downloaded by rustup, which a machine that reaches only package registries
# cannot do. glibc 2.34+ has its files and dns name services built in, so
# name lookups work without any shared library in the image. The flag is
# scoped to the target, so build scripts and proc-macros stay dynamic; the
# strip keeps the image small. Both are set through the environment so the
# workspace's own release profile stays as it is.
triple_env="$(echo "$triple" | tr 'a-z-' 'A-Z_')"
(cd "$root" && env "CARGO_TARGET_${triple_env}_RUSTFLAGS=-C target-feature=+crt-static" \
	CARGO_PROFILE_RELEASE_STRIP=symbols "${CARGO:-cargo}" build --release --locked \
	--target "$triple" --bin collibra-oauth-operator) >&2 ||
	die "cargo build for $triple failed (see the compiler output above)"

bin="${CARGO_TARGET_DIR:-$root/target}/$triple/release/collibra-oauth-operator"
# The image has no libraries to load: refuse a binary that needs any.
if ldd "$bin" 2>/dev/null | grep -q '=>'; then
	die "$bin is dynamically linked; the image needs a static binary"
fi
out="$root/dist/image/linux-$arch"
rm -rf "$out"
mkdir -p "$out/usr/local/bin" "$out/etc/ssl/certs"
install -m 0755 "$bin" "$out/usr/local/bin/collibra-oauth-operator"
install -m 0644 "$ca_bundle" "$out/etc/ssl/certs/ca-certificates.crt"
# The operator's user; a named entry keeps tools that map uids to names
# (ps, debugging sidecars) from failing on an unknown uid.
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
	>"$out/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$out/etc/group"
# Name lookups: /etc/hosts first, then DNS (glibc's built-in services).
printf 'hosts: files dns\n' >"$out/etc/nsswitch.conf"
chmod 0644 "$out/etc/passwd" "$out/etc/group" "$out/etc/nsswitch.conf"
# Fixed timestamps, so the tree's hash (the image cache key) depends only on
# the contents.
find "$out" -exec touch -h -d @0 {} +
echo "$out"
