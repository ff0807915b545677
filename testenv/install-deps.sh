#!/usr/bin/env bash
# Installs the system tools that `make test`, `make demo` and `make bench` use, only the
# missing ones, from the distribution's packages (Debian/Ubuntu with apt, EL with yum/dnf).
set -euo pipefail

# tool -> Debian package
declare -A deb=(
  [ip]=iproute2 [nft]=nftables [conntrack]=conntrack [tcpdump]=tcpdump [ping]=iputils-ping
  [keepalived]=keepalived [wg]=wireguard-tools [iperf3]=iperf3 [haproxy]=haproxy
  [debootstrap]=debootstrap [systemd-nspawn]=systemd-container
  [rpmbuild]=rpm [createrepo_c]=createrepo-c [rpmlint]=rpmlint [file]=file
  [dbus-daemon]=dbus [protoc]=protobuf-compiler [runuser]=util-linux [pgrep]=procps
  [getpcaps]=libcap2-bin [socat]=socat [curl]=curl [iptables]=iptables [setpriv]=util-linux
  [nsenter]=util-linux [busctl]=systemd
)
# tool -> EL package (where the name differs)
declare -A el=(
  [ip]=iproute [ping]=iputils [wg]=wireguard-tools [systemd-nspawn]=systemd-container
  [rpmbuild]=rpm-build [createrepo_c]=createrepo_c [dbus-daemon]=dbus [protoc]=protobuf-compiler
  [runuser]=util-linux [pgrep]=procps-ng [getpcaps]=libcap
)

# The tunnel plugin runs unprivileged and opens /dev/net/tun, which udev's default rules
# make 0666 on every distribution; a machine booted without udev (some VMs and
# containers) leaves it 0600 root, and every userspace tunnel test would fail.
if [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ] && [ "$(id -u)" -eq 0 ]; then
  echo "install-deps: /dev/net/tun is mode $(stat -c %a /dev/net/tun); setting 0666 as udev's default rules do"
  chmod 0666 /dev/net/tun
fi

missing=()
for tool in "${!deb[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${missing[*]}; run as root to install them" >&2
  exit 1
fi
if command -v apt-get >/dev/null 2>&1; then
  pkgs=(); for t in "${missing[@]}"; do pkgs+=("${deb[$t]}"); done
  echo "install-deps: apt-get install ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
elif command -v dnf >/dev/null 2>&1 || command -v yum >/dev/null 2>&1; then
  pm=$(command -v dnf || command -v yum)
  pkgs=(); for t in "${missing[@]}"; do pkgs+=("${el[$t]:-${deb[$t]}}"); done
  echo "install-deps: $pm install ${pkgs[*]}"
  "$pm" install -y -q "${pkgs[@]}"
else
  echo "install-deps: no apt-get, dnf or yum: install ${missing[*]} by hand" >&2
  exit 1
fi
