#!/usr/bin/env bash
# Installs what `make image` and the node tests need beyond Rust and Go,
# when it is missing: Debian's podman (builds the images), containerd, runc,
# the CNI plugins and iptables (the node, kube-proxy). The static operator
# binary needs nothing more: it is linked against glibc's static libraries
# (libc6-dev, which gcc already pulls in).
set -euo pipefail

die() {
	echo "node deps.sh: $*" >&2
	exit 1
}

# command -> Debian package
declare -A needed=(
	[podman]=podman
	[containerd]=containerd
	[containerd-shim-runc-v2]=containerd
	[ctr]=containerd
	[runc]=runc
	[iptables]=iptables
	[ip]=iproute2
	[nsenter]=util-linux
)
missing=()
for cmd in "${!needed[@]}"; do
	PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null || missing+=("${needed[$cmd]}")
done
for plugin in bridge host-local loopback; do
	[[ -x /usr/lib/cni/$plugin ]] || missing+=(containernetworking-plugins)
done
[[ -s /etc/ssl/certs/ca-certificates.crt ]] || missing+=(ca-certificates)
if ((${#missing[@]} > 0)); then
	mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
	command -v apt-get >/dev/null ||
		die "missing ${missing[*]} and no apt-get to install them; install these packages"
	echo "node deps.sh: installing ${missing[*]}" >&2
	(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		"${missing[@]}") >&2 || die "apt-get install ${missing[*]} failed"
fi
