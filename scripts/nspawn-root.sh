#!/usr/bin/env bash
# Prints the path of a Debian 12 root file system for booting a real systemd
# under systemd-nspawn (the service tests: rpm install, Type=notify, reload,
# journal, hardening). It is built once with debootstrap (about 75 s, from
# the Debian mirror this machine's apt uses) and cached under
# ${XDG_CACHE_HOME:-~/.cache}/gala-gopher/, keyed by the package list below,
# so later runs print the cached path at once. The tests boot it with
# --volatile=overlay: every write goes to a throwaway layer and the cached
# root stays clean.
# Usage: scripts/nspawn-root.sh   (as root; installs debootstrap and
# systemd-container when missing, through scripts/deps.sh)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

# What the container needs: systemd as PID 1 and its journal; rpm to install
# our packages; a C compiler and pkg-config to build a probe against the
# devel package; curl to read :8888 from inside (the container has no
# network of its own); python3 for the modules of the Ansible deployment
# test (ansible/, tests/integration/ansible.rs).
packages=systemd,systemd-sysv,dbus,rpm,gcc,libc6-dev,pkg-config,curl,procps,iproute2,python3
suite=bookworm

"$here/deps.sh" nspawn >&2

if [ "$(id -u)" != 0 ]; then
    echo "nspawn-root: debootstrap and systemd-nspawn need root" >&2
    exit 1
fi

# The key changes with the packages and with what is done to the root
# after debootstrap (layout), so an older cached root is not reused.
layout=3
key=$(printf '%s %s %s\n' "$suite" "$packages" "$layout" | sha256sum | cut -c1-12)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/gala-gopher
root=$cache/nspawn-$suite-$key
# Tests ask for the root concurrently: one builds it, the others wait.
mkdir -p "$cache"
exec 9>"$cache/.nspawn-root.lock"
flock 9
if [ -x "$root/lib/systemd/systemd" ] && [ -f "$root/.complete" ]; then
    echo "$root"
    exit 0
fi

# The mirror apt uses here (deb822 sources or the classic list).
mirror=$(grep -hoE '^URIs: *[^ ]+' /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | head -1 | sed 's/^URIs: *//')
if [ -z "$mirror" ]; then
    mirror=$(grep -hoE '^deb +[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | head -1 | awk '{print $2}')
fi
mirror=${mirror:-http://deb.debian.org/debian}

tmp=$(mktemp -d "$cache/.build-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "nspawn-root: debootstrap $suite from $mirror into $root (about 75 s, once)" >&2
debootstrap --variant=minbase --include="$packages" "$suite" "$tmp/root" "$mirror" >"$tmp/debootstrap.log" 2>&1 || {
    tail -20 "$tmp/debootstrap.log" >&2
    echo "nspawn-root: debootstrap failed (log above)" >&2
    exit 1
}
# A quiet, quick boot: no getty on the console, no network wait, no
# periodic jobs; journald keeps everything in memory.
chroot "$tmp/root" systemctl mask console-getty.service getty@tty1.service \
    systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer \
    e2scrub_all.timer fstrim.timer >/dev/null 2>&1 || true
echo "gala-test" >"$tmp/root/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$tmp/root/etc/hosts"
touch "$tmp/root/.complete"
rm -rf "$root"
mv "$tmp/root" "$root"
echo "$root"
