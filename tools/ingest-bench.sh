#!/usr/bin/env bash
# Sensor ingest benchmark: starts a throwaway release server (temporary database, free port),
# runs `switchboard-bench-ingest` against it, stops it, and checks the database file holds
# every acknowledged reading. With taskset and two or more CPUs, the server is pinned to CPU 0
# and the load generator to CPU 1, so that they do not take turns on the same core.
#
#   SWITCHBOARD_BIN   the server (default ./target/release/switchboard)
#   INGEST_BIN        the benchmark (default ./target/release/switchboard-bench-ingest)
#   SECONDS_PER_RUN   measured seconds per scenario (default 5)
#   SCENARIOS         BATCHxCONNECTIONS,... (default 1x1,100x4,1000x4,1x32; the first is the baseline)
#   NO_PIN=1          do not pin with taskset
# Further arguments go to `switchboard-bench-ingest` (see its --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SWITCHBOARD_BIN:-./target/release/switchboard}
[ -x "$bin" ] || { echo "no server binary at $bin: build it (make target/release/switchboard) or set SWITCHBOARD_BIN" >&2; exit 1; }
ingest=${INGEST_BIN:-./target/release/switchboard-bench-ingest}
[ -x "$ingest" ] || { echo "no benchmark at $ingest: build it (make bench-ingest builds it) or set INGEST_BIN" >&2; exit 1; }

dir=$(mktemp -d)
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port

pin_server=() pin_load=() pinning="not pinned"
if [ -z "${NO_PIN:-}" ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  pin_server=(taskset -c 0) pin_load=(taskset -c 1) pinning="server on CPU 0, load on CPU 1"
fi

"${pin_server[@]}" "$bin" --addr "127.0.0.1:$port" --database-url "sqlite://$dir/bench.db" \
  --sensor-request-rate 1e9 --sensor-request-burst 1e9 >"$dir/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do curl -sf "$url/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "$url/healthz" >/dev/null || { echo "the server did not start:" >&2; cat "$dir/server.log" >&2; exit 1; }

echo "machine: $(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $pinning; $(uname -sr); database on $(df -T "$dir" | awk 'NR == 2 {print $2}')"
status=0
"${pin_load[@]}" "$ingest" --url "$url" --server-pid "$server" --clock-ticks "$(getconf CLK_TCK)" \
  --seconds "${SECONDS_PER_RUN:-5}" --scenarios "${SCENARIOS:-1x1,100x4,1000x4,1x32}" "$@" | tee "$dir/bench.out" || status=$?

# A graceful stop, then the file itself: every acknowledged reading must be in it.
kill -TERM "$server"
wait "$server" || true
server=
acknowledged=$(sed -n 's/^total acknowledged: //p' "$dir/bench.out")
if command -v sqlite3 >/dev/null && [ -n "$acknowledged" ]; then
  on_disk=$(sqlite3 "$dir/bench.db" 'SELECT COUNT(*) FROM sensor_readings')
  if [ "$on_disk" = "$acknowledged" ]; then
    echo "after the server stopped, the database file holds $on_disk readings: every acknowledged one"
  else
    echo "MISMATCH: the database file holds $on_disk readings, $acknowledged were acknowledged" >&2
    status=1
  fi
fi
exit "$status"
