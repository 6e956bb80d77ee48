#!/usr/bin/env bash
# Builds the rpms of rpm/gala-gopher.spec (gala-gopher, gala-gopher-devel,
# gala-spider) and their source rpm, all under target/rpm. `make rpm` runs it.
#
#   Source0  gala-gopher-<version>.tar.gz: the working tree as git sees it,
#            i.e. the tracked files (with their uncommitted edits) and the new
#            files that .gitignore does not exclude; what `git add -A` would
#            commit. Build outputs (target/) are ignored, so never packaged.
#   Source1  gala-gopher-<version>-vendor.tar.xz: `cargo vendor` of Cargo.lock,
#            so that rpmbuild (and `rpmbuild --rebuild` of the source rpm)
#            needs no network. Cached in target/rpm/cache by Cargo.lock's hash.
#
# The version is the workspace's ([workspace.package] in Cargo.toml); it is
# written into the spec copied to target/rpm/SPECS, which the source rpm
# carries. Environment: RPM_RELEASE (default 1) the package release;
# RPM_FORCE=1 builds even when nothing changed since the last build;
# TAIL=<tail.conf> builds gala-gopher with only what that legacy tail.conf
# leaves in (scripts/tail-features.sh): the spec's gopher_features, written
# into the spec like the version.
# Prints the paths of the rpms it wrote; target/rpm/built.txt lists them.
set -euo pipefail
# TAIL may be relative to the directory this was started in.
if [ -n "${TAIL:-}" ]; then TAIL=$(readlink -f -- "$TAIL"); fi
cd "$(dirname "$0")/.."
repo=$PWD

scripts/deps.sh rpm

version=$(awk '
    /^\[/ { in_pkg = ($0 == "[workspace.package]"); next }
    in_pkg && $1 == "version" && $2 == "=" { gsub(/"/, "", $3); print $3; exit }
' Cargo.toml)
case "$version" in
    [0-9]*) ;;
    *) echo "rpm: no version in [workspace.package] of Cargo.toml" >&2; exit 1 ;;
esac
release=${RPM_RELEASE:-1}
case "$release" in
    [0-9]*) ;;
    *) echo "rpm: RPM_RELEASE must start with a digit (got '$release')" >&2; exit 2 ;;
esac
features=
if [ -n "${TAIL:-}" ]; then
    features=$(scripts/tail-features.sh --list "$TAIL")
    echo "rpm: TAIL=$TAIL: gala-gopher with the features: ${features:-(none)}"
fi
name=gala-gopher-$version
top=$repo/target/rpm
mkdir -p "$top"/{SOURCES,SPECS,BUILD,RPMS,SRPMS,cache}

# One build at a time in target/rpm (tests may ask for it concurrently).
exec 9>"$top/.lock"
flock 9

# Source0, reproducible: fixed order, owner and time (HEAD's commit time).
list=$top/cache/files.list
git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do
        # A tracked file deleted in the working tree is not packaged.
        if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
    done >"$list"
# The topology page's layout library is not tracked (.gitignore) but the
# offline build embeds it: scripts/deps.sh above ran scripts/web-vendor.sh.
if [ ! -s spider/web/vendor/.lock-sha256 ]; then
    echo "rpm: spider/web/vendor is missing: run scripts/web-vendor.sh" >&2
    exit 1
fi
find spider/web/vendor -type f -print0 >>"$list"
epoch=$(git log -1 --format=%ct 2>/dev/null || echo 0)
src=$top/SOURCES/$name.tar.gz
tar --null -T "$list" --transform "flags=rh;s,^,$name/," --sort=name \
    --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -cf - | gzip -n -6 >"$src.tmp"
mv -f "$src.tmp" "$src"
rm -f "$list"

# Source1: vendored crates, made again only when Cargo.lock changes.
key=$(sha256sum Cargo.lock | cut -c1-16)
vendor=$top/cache/vendor-$key.tar.xz
if [ -f "$vendor" ]; then
    echo "rpm: vendored crates: $vendor (cached for this Cargo.lock)"
else
    echo "rpm: vendoring the crates of Cargo.lock"
    work=$top/cache/vendor-work
    rm -rf "$work"
    mkdir -p "$work"
    cargo vendor --locked --versioned-dirs -q "$work/vendor" >/dev/null
    tar -C "$work" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - vendor |
        xz -T0 -6 >"$vendor.tmp"
    mv -f "$vendor.tmp" "$vendor"
    rm -rf "$work"
    # Only the tarball of the current Cargo.lock is kept.
    find "$top/cache" -maxdepth 1 -name 'vendor-*.tar.xz' ! -name "vendor-$key.tar.xz" -delete
    echo "rpm: vendored crates: $vendor"
fi
ln -f "$vendor" "$top/SOURCES/$name-vendor.tar.xz" 2>/dev/null ||
    cp -f "$vendor" "$top/SOURCES/$name-vendor.tar.xz"

# The spec the source rpm carries: the version and release written in.
spec=$top/SPECS/gala-gopher.spec
{
    echo "# Written by scripts/rpm.sh from rpm/gala-gopher.spec: the version is"
    echo "# [workspace.package] version of Cargo.toml."
    echo "%global gopher_version $version"
    echo "%{!?gopher_release:%global gopher_release $release}"
    if [ -n "${TAIL:-}" ]; then
        echo "# TAIL=$(basename "$TAIL"): the features of gala-gopher it leaves in."
        echo "%{!?gopher_features:%global gopher_features ${features:-%{nil\}}}"
    fi
    cat rpm/gala-gopher.spec
} >"$spec.tmp"
mv -f "$spec.tmp" "$spec"

# Nothing changed since the last build: the rpms are those it wrote.
stamp=$(cat "$src" "$spec" | sha256sum | cut -c1-16)-$key
built=$top/built.txt
if [ "${RPM_FORCE:-0}" != 1 ] && [ -f "$built" ] && [ "$(head -n1 "$built")" = "# $stamp" ] &&
    tail -n +2 "$built" | while read -r f; do [ -f "$f" ] || exit 1; done; then
    echo "rpm: up to date (sources and spec as at the last build)"
else
    # An rpm database that does not know rpm itself is not an rpm-based
    # system's (Debian): BuildRequires cannot be checked there.
    nodeps=()
    rpm -q --quiet rpm 2>/dev/null || nodeps=(--nodeps)
    log=$top/rpmbuild.log
    echo "rpm: rpmbuild -ba $name-$release (log: $log)"
    # The crates are compiled in target/rpm/cargo-target, kept between
    # builds; `rpmbuild --rebuild` of the source rpm builds in its own tree.
    if ! rpmbuild -ba "${nodeps[@]}" \
        --define "_topdir $top" \
        --define "_gopher_cargo_target_dir $top/cargo-target" \
        "$spec" >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "rpm: rpmbuild failed; the whole log is $log" >&2
        exit 1
    fi
    {
        echo "# $stamp"
        sed -n 's/^Wrote: //p' "$log"
    } >"$built.tmp"
    mv -f "$built.tmp" "$built"
fi

tail -n +2 "$built" | while read -r f; do
    echo "rpm: $f ($(du -h "$f" | cut -f1))"
done
