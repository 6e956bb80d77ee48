#!/usr/bin/env bash
# Installs littlegraph, the Neo4j Query API v2 (and Bolt) server the
# gala-spider tests write to on 127.0.0.1, only when it is missing: no Neo4j
# server can be installed here. `cargo install littlegraph --locked` takes
# about 3-5 minutes and leaves the binary in ~/.cargo/bin.
# Usage: scripts/littlegraph.sh
set -euo pipefail

if command -v littlegraph >/dev/null 2>&1; then
    exit 0
fi
if [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/littlegraph" ]; then
    exit 0
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "littlegraph: it is missing and cargo is not on PATH to install it (source ~/.cargo/env)" >&2
    exit 1
fi
echo "littlegraph: installing (cargo install littlegraph --locked, about 3-5 min)"
cargo install littlegraph --locked
