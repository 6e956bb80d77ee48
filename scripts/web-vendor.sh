#!/usr/bin/env bash
# Vendors the topology page's layout library (elkjs, pinned by
# spider/web/package-lock.json) into spider/web/vendor/, which gala-spider
# embeds at build time (spider/build.rs). Nothing is fetched at run time.
#
# Runs `npm ci --ignore-scripts` only when the vendored files are missing or
# the lock file changed since they were made (the lock's hash is kept in
# spider/web/vendor/.lock-sha256). npm comes from apt-get when missing (root
# only). spider/web/node_modules and spider/web/vendor are not tracked by git;
# scripts/rpm.sh puts spider/web/vendor into the source tarball so that the
# rpm builds offline.
set -euo pipefail
web=$(cd "$(dirname "$0")/../spider/web" && pwd)
vendor=$web/vendor
files=(elkjs/lib/elk-api.js elkjs/lib/elk-worker.min.js elkjs/LICENSE.md)

want=$(sha256sum "$web/package-lock.json" | cut -d' ' -f1)
have=$(cat "$vendor/.lock-sha256" 2>/dev/null || true)
complete=1
for f in "${files[@]}"; do
    [ -s "$vendor/$(basename "$f")" ] || complete=0
done
if [ "$complete" = 1 ] && [ "$want" = "$have" ]; then
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        echo "web-vendor: installing npm (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q npm >/dev/null ||
            { apt-get update -q >/dev/null && apt-get install -y -q npm >/dev/null; }
    else
        echo "web-vendor: npm is missing; install it (apt-get install npm) or run scripts/deps.sh as root" >&2
        exit 1
    fi
fi

echo "web-vendor: npm ci in spider/web (package-lock.json $want)"
(cd "$web" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
tmp=$(mktemp -d "$web/.vendor.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
for f in "${files[@]}"; do
    if [ ! -s "$web/node_modules/$f" ]; then
        echo "web-vendor: npm ci did not install node_modules/$f (spider/web/package-lock.json)" >&2
        exit 1
    fi
    cp "$web/node_modules/$f" "$tmp/"
done
echo "$want" >"$tmp/.lock-sha256"
rm -rf "$vendor"
mv "$tmp" "$vendor"
chmod 755 "$vendor"
trap - EXIT
echo "web-vendor: $(cd "$web" && ls vendor | sed 's,^,spider/web/vendor/,' | tr '\n' ' ')"
