#!/bin/sh
# Prints the struct offsets nginx_link reads from nginx's memory, measured
# with offsetof() against the nginx source headers of the installed build,
# in the format of the probe's offsets file (docs/nginx_link.md):
#
#   scripts/nginx-offsets.sh [SRC_DIR] > nginx-offsets.conf
#
# SRC_DIR is an nginx source tree of the same version as the binary
# (default: /usr/share/nginx/src, Debian's nginx-dev). When it has no
# objs/ngx_auto_config.h (nginx-dev does not ship one), the script runs
# nginx's ./configure in a temporary copy, with the build's own flags from
# SRC_DIR/conf_flags (nginx-dev) or from `nginx -V` ($NGINX, default
# /usr/sbin/nginx), so that build flags that move fields (NGX_SSL,
# NGX_COMPAT) are those of the binary. Needs a C compiler and the headers
# nginx's configure wants (openssl, pcre2, zlib -dev). Writes only to a
# temporary directory, removed at exit.
set -eu

SRC=${1:-/usr/share/nginx/src}
NGINX=${NGINX:-/usr/sbin/nginx}
CC=${CC:-cc}

die() { echo "nginx-offsets.sh: $*" >&2; exit 1; }

[ -d "$SRC/src/core" ] || die "$SRC is not an nginx source tree (no src/core; install nginx-dev or pass a source dir)"
command -v "$CC" >/dev/null 2>&1 || die "no C compiler ($CC)"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT INT TERM

TREE=$SRC
if [ ! -f "$SRC/objs/ngx_auto_config.h" ]; then
    cp -r "$SRC/." "$TMP/src"
    TREE=$TMP/src
    if [ -f "$TREE/conf_flags" ]; then
        FLAGS=$(bash -c '. "$1/conf_flags" && printf "%s\n" "${NGX_CONF_FLAGS[@]}"' _ "$TREE")
    elif [ -x "$NGINX" ]; then
        FLAGS=$("$NGINX" -V 2>&1 | sed -n 's/^configure arguments: //p' | tr ' ' '\n')
    else
        die "no conf_flags in $SRC and no nginx binary at $NGINX to read the build flags from"
    fi
    # Only the flags that change headers matter; dynamic modules of other
    # trees (--add-dynamic-module=...) are left out.
    FLAGS=$(printf '%s\n' "$FLAGS" | grep -v -e '^--add-module' -e '^--add-dynamic-module' -e "^--with-cc-opt" -e "^--with-ld-opt" || true)
    (cd "$TREE" && printf '%s\n' "$FLAGS" | tr '\n' '\0' | xargs -0 ./configure --with-stream >"$TMP/configure.log" 2>&1) \
        || { tail -20 "$TMP/configure.log" >&2; die "nginx's ./configure failed in a copy of $SRC (log above)"; }
fi

cat >"$TMP/offsets.c" <<'C'
#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_http.h>
#include <ngx_stream.h>
#include <stddef.h>
#include <stdio.h>

int main(void)
{
    printf("version = %s\n", NGINX_VERSION);
    printf("peer_connection.log = %zu\n", offsetof(ngx_peer_connection_t, log));
    printf("log.data = %zu\n", offsetof(ngx_log_t, data));
    printf("connection.fd = %zu\n", offsetof(ngx_connection_t, fd));
    printf("http_log_ctx.connection = %zu\n", offsetof(ngx_http_log_ctx_t, connection));
    printf("stream_session.signature = %zu\n", offsetof(ngx_stream_session_t, signature));
    printf("stream_session.connection = %zu\n", offsetof(ngx_stream_session_t, connection));
    return 0;
}
C

INC=""
for d in objs src/core src/event src/event/modules src/os/unix src/http src/http/modules src/http/v2 src/stream; do
    INC="$INC -I$TREE/$d"
done
# shellcheck disable=SC2086
"$CC" $INC -w -o "$TMP/offsets" "$TMP/offsets.c" 2>"$TMP/cc.log" \
    || { tail -20 "$TMP/cc.log" >&2; die "cannot compile against the headers of $TREE (errors above)"; }
echo "# nginx_link offsets, measured by scripts/nginx-offsets.sh from $SRC"
"$TMP/offsets"
