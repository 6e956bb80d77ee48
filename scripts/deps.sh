#!/usr/bin/env bash
# Installs what the build, `make run`, the tests or the benchmarks need, and
# only what is missing, so a second run is fast.
# Usage: scripts/deps.sh run|test|bench|rpm|nspawn|ansible
set -euo pipefail
what=${1:-test}

# One run at a time: tests call this concurrently (rpm, nspawn, ansible
# modes), and apt's lock and the policy-rc.d put aside below are shared.
exec 8>"${TMPDIR:-/tmp}/gala-gopher-deps.lock"
flock 8

need_apt=()
want() { # want <command> <debian package>
    command -v "$1" >/dev/null 2>&1 || need_apt+=("$2")
}

want cc gcc
want curl curl
want pkg-config pkg-config
# The bundled librdkafka (rdkafka crate) builds with make and links OpenSSL
# (TLS, SASL/SCRAM) and zlib (gzip).
want make make
[ -f /usr/include/openssl/ssl.h ] || need_apt+=(libssl-dev)
[ -f /usr/include/zlib.h ] || need_apt+=(zlib1g-dev)
# eBPF probes (probes-rs/build.rs): clang compiles the BPF C, libbpf (vendored)
# links against libelf.
want clang clang
pkg-config --exists libelf 2>/dev/null || need_apt+=(libelf-dev)
want_rpm() {
    # `make rpm` (scripts/rpm.sh): rpmbuild, rpm2cpio and rpm itself come
    # in Debian's rpm package; the tarballs are made with git and tar;
    # the rpm test unpacks with cpio, checks the units with
    # systemd-analyze and rebuilds offline in `unshare -n`.
    want rpmbuild rpm
    want git git
    want xz xz-utils
    want cpio cpio
    want readelf binutils
    want systemd-analyze systemd
    want unshare util-linux
}
want_nspawn() {
    # The service tests (scripts/nspawn-root.sh): a Debian root made with
    # debootstrap, booted with a real systemd under systemd-nspawn.
    want debootstrap debootstrap
    want systemd-nspawn systemd-container
    want nsenter util-linux
}
want_ansible() {
    # The deployment test (ansible/, tests/integration/ansible.rs):
    # Debian's ansible (ansible-core 2.14 and the collections, among
    # them community.docker's nsenter connection into the container)
    # and ansible-vault; the container itself comes from `nspawn`.
    want ansible-playbook ansible
    want nsenter util-linux
}

case "$what" in
    run) ;;
    test)
        want promtool prometheus
        # tcp_link integration tests: namespaces and veth pairs, loss by iptables.
        want ip iproute2
        want iptables iptables
        # gala-spider tests: its page in headless chromium; agents with their
        # own hostnames (unshare --uts); helper processes in python3.
        want chromium chromium
        want unshare util-linux
        # The packaging, service and deployment tests: installed here, once,
        # rather than by each test.
        want_rpm
        want_nspawn
        want_ansible
        # The LB and middleware probes' tests run the Debian servers
        # themselves (never the packages' services: see policy-rc.d below).
        want nginx nginx
        [ -f /usr/lib/nginx/modules/ngx_stream_module.so ] || need_apt+=(libnginx-mod-stream)
        want haproxy haproxy
        want dnsmasq dnsmasq-base
        want dig bind9-dnsutils
        want redis-server redis-server
        want redis-cli redis-tools
        want rabbitmq-server rabbitmq-server
        # The topology page's layout library comes from the npm registry.
        want npm npm
        # The REST API fuzz: schemathesis in a venv (installed below).
        want python3 python3
        python3 -c 'import ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
        ;;
    bench)
        want promtool prometheus
        # The nginx_link/haproxy_link cost benchmark: wrk against the servers.
        want nginx nginx
        want haproxy haproxy
        want wrk wrk
        [ -x /usr/bin/prometheus-node-exporter ] || need_apt+=(prometheus-node-exporter)
        # The soak benchmark: its extend probe is a python3 script; its plot's
        # text is drawn in DejaVu Sans.
        want python3 python3
        [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_apt+=(fonts-dejavu-core)
        ;;
    rpm) want_rpm ;;
    nspawn) want_nspawn ;;
    ansible) want_ansible ;;
    *) echo "usage: $0 run|test|bench|rpm|nspawn|ansible" >&2; exit 2 ;;
esac

if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "deps: missing ${need_apt[*]} and not root: install them with apt-get" >&2
        exit 1
    fi
    echo "deps: installing ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Packages such as prometheus start their service when installed. We run
    # our own instances, and a user's machine keeps the services it has: a
    # policy-rc.d that refuses every start stands for the install (Debian's
    # way), and the one that was there before, if any, is put back after.
    policy=/usr/sbin/policy-rc.d
    saved=""
    if [ -e "$policy" ]; then
        saved=$(mktemp)
        cp -p "$policy" "$saved"
    fi
    restore_policy() {
        if [ -n "$saved" ]; then mv -f "$saved" "$policy"; else rm -f "$policy"; fi
    }
    trap restore_policy EXIT
    printf '#!/bin/sh\n# scripts/deps.sh of gala-gopher: no service starts during its install.\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    restore_policy
    trap - EXIT
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "deps: cargo is not on PATH; this machine kind ships a Rust toolchain (rustup) - source ~/.cargo/env" >&2
    exit 1
fi

# The Kafka tests and benchmark run a tansu broker (installed only if missing).
case "$what" in
    test|bench) "$(dirname "$0")/kafka.sh" ;;
esac

# gala-spider embeds the topology page's layout library, fetched from the
# npm registry into spider/web/vendor (pinned by package-lock.json; only if
# missing). Every build of the spider needs it.
"$(dirname "$0")/web-vendor.sh"

# The gala-spider tests write to littlegraph, a Neo4j Query API server
# (installed only if missing).
case "$what" in
    test) "$(dirname "$0")/littlegraph.sh" ;;
esac

# The REST API fuzz (tests/integration/rest.rs): schemathesis from PyPI, in a
# venv of its own under target/ (installed only if missing; nothing
# system-wide).
case "$what" in
    test)
        st_venv="${CARGO_TARGET_DIR:-$(dirname "$0")/../target}/schemathesis-venv"
        if [ ! -x "$st_venv/bin/st" ]; then
            echo "deps: installing schemathesis into $st_venv"
            python3 -m venv "$st_venv"
            "$st_venv/bin/pip" install -q schemathesis
        fi
        ;;
esac
