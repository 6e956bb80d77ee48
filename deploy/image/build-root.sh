#!/usr/bin/env bash
# Lays out the root file system of the gala-gopher container image.
#
#   deploy/image/build-root.sh <gala-gopher rpm, or a directory holding it> <root dir>
#
# The one place that decides what the image holds: deploy/Containerfile runs
# it in its build stage and copies <root dir> into an empty (`FROM scratch`)
# image, and the tests run it directly into a temporary directory and start
# the agent from there, with the capabilities and mounts of the DaemonSet in
# deploy/k8s.
#
# The root gets:
#   - everything the gala-gopher rpm holds, unpacked with rpm2cpio | cpio:
#     /usr/bin/gala-gopher, libgopher.so.1 (in the rpm's %{_libdir}, for C
#     probes built against gala-gopher-devel), the tables in
#     /opt/gala-gopher/meta, the default /etc/gala-gopher/gala-gopher.toml
#     (Kubernetes mounts a ConfigMap over /etc/gala-gopher), the log and state
#     directories, the docs and the license. The systemd unit comes along and
#     is unused;
#   - the shared libraries the agent, libgopher.so.1 and the Kafka exporter's
#     libgopher_kafka.so (when the rpm holds it: OpenSSL, loaded only when a
#     channel uses Kafka) link (as `ldd` finds
#     them on the machine that runs this script), with the dynamic loader, at
#     the paths where `ldd` found them, and the loader's cache listing
#     libgopher.so.1's directory;
#   - empty mount points: /proc, /sys, /dev, /tmp, /run, and /run/gala-gopher
#     (the control socket's volume).
# Nothing else: no shell, no package manager. The probes read the host's
# /proc and /sys, which the container runtime mounts (see deploy/k8s).
#
# With a directory, the rpm is the gala-gopher-<version>-<release>.<arch>.rpm
# in it (or a subdirectory, as in target/rpm/RPMS/<arch>/) whose arch is this
# machine's; when there are several, the one built last is taken and the
# others are named.
#
# Needs: rpm2cpio, cpio, ldd, ldconfig, find, install. Run as root so that owners and
# modes come out as packaged. <root dir> must not exist or be empty.
set -euo pipefail

usage() {
    echo "usage: $0 <gala-gopher rpm, or a directory holding it> <root dir>" >&2
    exit 2
}
[ $# -eq 2 ] || usage
src=$1
root=$2

ldconfig=$(command -v ldconfig || echo /sbin/ldconfig)
[ -x "$ldconfig" ] || {
    echo "build-root: ldconfig is missing (glibc)" >&2
    exit 1
}
for tool in rpm2cpio cpio ldd find install; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "build-root: $tool is missing (rpm2cpio: package rpm; cpio: cpio; ldd: glibc)" >&2
        exit 1
    }
done

# The rpm.
arch=$(uname -m)
if [ -d "$src" ]; then
    mapfile -t rpms < <(find "$src" -maxdepth 2 -type f -name "gala-gopher-[0-9]*.$arch.rpm" | sort)
    case ${#rpms[@]} in
        0)
            echo "build-root: no gala-gopher-<version>-<release>.$arch.rpm in $src (build it with \`make rpm\`)" >&2
            exit 1
            ;;
        1) rpm=${rpms[0]} ;;
        *)
            # The one built last (rpm's BUILDTIME), so that a fresh `make rpm`
            # wins over older releases left in the same directory.
            rpm=
            best=-1
            for r in "${rpms[@]}"; do
                t=$(rpm -qp --queryformat '%{BUILDTIME}' "$r" 2>/dev/null || echo 0)
                if [ "$t" -gt "$best" ]; then
                    best=$t
                    rpm=$r
                fi
            done
            echo "build-root: several rpms in $src; taking the one built last: $rpm" >&2
            printf 'build-root:   (not taken: %s)\n' "${rpms[@]}" | grep -vF "$rpm" >&2 || true
            ;;
    esac
elif [ -f "$src" ]; then
    rpm=$src
else
    echo "build-root: $src is neither an rpm nor a directory" >&2
    exit 1
fi
rpm=$(cd "$(dirname "$rpm")" && pwd)/$(basename "$rpm")

mkdir -p "$root"
if [ -n "$(ls -A "$root")" ]; then
    echo "build-root: $root is not empty" >&2
    exit 1
fi
root=$(cd "$root" && pwd)
echo "build-root: $rpm -> $root" >&2

# 1. The package, as rpm would install it (modes and owners from the payload).
(cd "$root" && rpm2cpio "$rpm" | cpio -idm --quiet --no-absolute-filenames)
[ -x "$root/usr/bin/gala-gopher" ] || {
    echo "build-root: $rpm holds no /usr/bin/gala-gopher" >&2
    exit 1
}
mapfile -t libgopher < <(find "$root" -name 'libgopher.so.1' \( -type f -o -type l \))
[ ${#libgopher[@]} -eq 1 ] || {
    echo "build-root: $rpm holds no libgopher.so.1" >&2
    exit 1
}

# 2. The shared libraries and the loader, where ldd finds them here. Each is
# copied as a file (symlinks followed) to the path ldd printed, creating the
# directories on the way: the loader searches the same paths in the image.
# The Kafka exporter's library, in a build with Kafka.
mapfile -t libkafka < <(find "$root" -name 'libgopher_kafka.so' -type f)
libs=$(
    for elf in "$root/usr/bin/gala-gopher" "${libgopher[0]}" "${libkafka[@]}"; do
        out=$(ldd "$elf") || {
            echo "build-root: ldd $elf failed: $out" >&2
            exit 1
        }
        if grep -q 'not found' <<<"$out"; then
            echo "build-root: libraries of $elf are missing here:" >&2
            grep 'not found' <<<"$out" >&2
            exit 1
        fi
        # "libx.so.1 => /lib/.../libx.so.1 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)";
        # linux-vdso.so.1 is the kernel's and has no file.
        awk '$2 == "=>" && $3 ~ /^\// { print $3; next } $1 ~ /^\// { print $1 }' <<<"$out"
    done | sort -u
)
[ -n "$libs" ] || {
    echo "build-root: ldd found no libraries (a static build needs none: nothing to do)" >&2
}
while IFS= read -r lib; do
    [ -n "$lib" ] || continue
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
done <<<"$libs"

# 3. The loader's cache (/etc/ld.so.cache), with libgopher.so.1's directory
# in it: a C probe linked with -lgopher finds the library wherever the rpm's
# %{_libdir} is, even where that is not a default path of this glibc.
dirname "${libgopher[0]#"$root"}" >"$root/etc/ld.so.conf"
"$ldconfig" -X -r "$root"

# 4. Mount points that a container runtime fills in.
for d in proc sys dev run run/gala-gopher; do
    install -d -m 0755 "$root/$d"
done
install -d -m 1777 "$root/tmp"

echo "build-root: $(find "$root" -type f | wc -l) files, $(du -sh "$root" | cut -f1)" >&2
