#!/usr/bin/env bash
# The benchmarks (`make bench`): ingestion against a naive peer, and the
# daemon beside Prometheus node_exporter. Each prints ratios against its peer
# run in this same job; see bench/RESULTS.md.
# Outputs (scrapes, logs, the full text of both runs) go to target/bench/.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
out=${BENCH_OUT:-target/bench}
mkdir -p "$out"

$CARGO build --release -p gala-gopher -p gopher-bench -p gala-spider
target=${CARGO_TARGET_DIR:-target}/release

echo "== machine"
echo "nproc $(nproc); $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'); kernel $(uname -r); $(grep MemTotal /proc/meminfo | tr -s ' ')"

echo "== ingestion (one core): gala-gopher ingress vs a naive split + HashMap"
"$target/ingest" "$@" | tee "$out/ingest.txt"

echo "== gala-gopher beside node_exporter (127.0.0.1, 80 s to 2.5 min)"
"$target/peer" --gopher "$target/gala-gopher" --out-dir "$out" | tee "$out/peer.txt"

if command -v promtool >/dev/null 2>&1 && [ -s "$out/gala-gopher-scrape.txt" ]; then
    echo "== promtool check metrics on a gala-gopher scrape"
    rc=0
    promtool check metrics <"$out/gala-gopher-scrape.txt" || rc=$?
    case $rc in
        0) echo "promtool: clean" ;;
        3) echo "promtool: lint findings only (exit 3)" ;;
        *) echo "promtool: parse error (exit $rc)"; exit 1 ;;
    esac
fi

echo "== Kafka export: store -> local tansu broker, against the bare rdkafka producer"
$CARGO build --release -p gopher-kafka   # the exporter's libgopher_kafka.so, beside the binaries
"$target/kafka" | tee "$out/kafka.txt"

echo "== eBPF tcp_link: loopback workload with the probe attached and detached (root)"
"$target/tcp_link" --gopher "$target/gala-gopher" --secs 4 --rounds 5 | tee "$out/tcp_link.txt"

echo "== gala-spider: topology from 200k tcp_link records over 10k processes"
"$target/spider" | tee "$out/spider.txt"

echo "== eBPF nginx_link: wrk through the stock nginx, the probe attached and detached (root)"
"$target/nginx_link" --gopher "$target/gala-gopher" --secs 4 --rounds 5 | tee "$out/nginx_link.txt"

echo "== eBPF haproxy_link: wrk through the stock haproxy, the probe attached and detached (root)"
"$target/haproxy_link" --secs 3 --rounds 7 | tee "$out/haproxy_link.txt"

echo "== soak: one hour of 1k conn/s, 10k records/s of an extend probe, a scrape every 5 s (root; plot in $out/soak.png)"
"$target/soak" --gopher "$target/gala-gopher" --minutes 60 --out-dir "$out" | tee "$out/soak.txt"

echo "== gala-spider consumer group: 1000 simulated nodes through a 6-partition topic, 3 spiders against 1"
"$target/spider_cluster" --hosts 1000 --rounds 12 --period 5 | tee "$out/spider_cluster.txt"
