#!/usr/bin/env bash
# Runs the map frame-time benchmark against a throwaway server on port 3200.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
./target/release/switchboard --addr 127.0.0.1:3200 --database-url "sqlite://$dir/bench.db" >"$dir/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 50); do curl -sf http://127.0.0.1:3200/healthz >/dev/null && break; sleep 0.2; done
cd end2end && node bench/map.js http://127.0.0.1:3200 "${SECONDS_PER_RUN:-10}" ${MARKERS:-1000}
