#!/usr/bin/env bash
# Installs tansu, the Kafka-protocol broker the Kafka tests and benchmark
# start on 127.0.0.1 (in memory), only when it is missing: there is no Apache
# Kafka package here, and Debian's librdkafka/kcat cannot talk to tansu.
# `cargo install tansu --locked --features dynostore` takes about 10 minutes
# and leaves a ~56 MB binary in ~/.cargo/bin. Usage: scripts/kafka.sh
set -euo pipefail

if command -v tansu >/dev/null 2>&1; then
    exit 0
fi
if [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]; then
    exit 0
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "kafka: tansu is missing and cargo is not on PATH to install it (source ~/.cargo/env)" >&2
    exit 1
fi
echo "kafka: installing tansu (cargo install tansu --locked --features dynostore, about 10 min)"
cargo install tansu --locked --features dynostore
