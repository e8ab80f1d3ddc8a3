#!/usr/bin/env bash
# Runs a browser benchmark (end2end/bench/<script>) against a throwaway server on port 3200.
# Usage: tools/page-bench.sh map.js|chart.js [args for the script after the URL]
set -euo pipefail
cd "$(dirname "$0")/.."
script=$1
shift
dir=$(mktemp -d)
./target/release/switchboard --addr 127.0.0.1:3200 --database-url "sqlite://$dir/bench.db" >"$dir/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 50); do curl -sf http://127.0.0.1:3200/healthz >/dev/null && break; sleep 0.2; done
cd end2end && node "bench/$script" http://127.0.0.1:3200 "$@"
