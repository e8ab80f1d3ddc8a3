#!/usr/bin/env bash
# A/B of two server binaries on the same machine in one run: fan-out CPU per delivery and p99
# at N=1,000 subscribers (50 messages/s) and N=100 (500 messages/s), 15 s each, and idle memory
# per connection (5,000), each binary ROUNDS times (default 3), alternated (which goes first, too),
# the server on core 0 and the generator on core 1.
#   tools/ab-server.sh OLD_BINARY NEW_BINARY        (results in target/ab/results.jsonl)
set -u
OLD="$1"; NEW="$2"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="$ROOT/target/release/switchboard-bench"
OUT="$ROOT/target/ab"; mkdir -p "$OUT"; : > "$OUT/results.jsonl"
ulimit -n "$(ulimit -Hn)"
run() { # label bin
  rm -rf "$OUT/db" && mkdir -p "$OUT/db"
  taskset -c 0 "$2" --addr 127.0.0.1:7499 --database-url sqlite://"$OUT/db/s.db" --guest-access --message-rate 1e9 --message-burst 1e9 > "$OUT/server.log" 2>&1 &
  pid=$!
  for i in $(seq 50); do curl -sf http://127.0.0.1:7499/healthz >/dev/null && break; sleep 0.2; done
  for nr in "1000 50" "100 500"; do
    set -- "$1" "$2" $nr
    taskset -c 1 "$BENCH" --target switchboard-web --addr 127.0.0.1:7499 --server-pid $pid --json fanout --subscribers "$3" --rate "$4" --duration 15 | sed "s/^/{\"bin\":\"$1\",\"n\":$3,\"r\":/; s/\$/}/" >> "$OUT/results.jsonl"
  done
  taskset -c 1 "$BENCH" --target switchboard-web --addr 127.0.0.1:7499 --server-pid $pid --json idle --connections 5000 --broadcast-timeout 0 | sed "s/^/{\"bin\":\"$1\",\"r\":/; s/\$/}/" >> "$OUT/results.jsonl"
  kill $pid; wait $pid 2>/dev/null
}
# The order alternates: a server run right after another (its thousands of closed connections
# still in TIME_WAIT) measured slower in the same session, whichever binary it was.
for round in $(seq "${ROUNDS:-3}"); do
  if [ $((round % 2)) = 1 ]; then
    run old "$OLD"; run new "$NEW"
  else
    run new "$NEW"; run old "$OLD"
  fi
done
python3 - "$OUT/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
for workload, n, key in [
    ("fanout", 1000, "server_us_per_delivery"), ("fanout", 1000, "p99_ms"),
    ("fanout", 100, "server_us_per_delivery"), ("fanout", 100, "p99_ms"),
    ("idle", None, "server_bytes_per_connection"),
]:
    runs = {}
    for row in rows:
        if row["r"]["workload"] == workload and row.get("n") == n:
            runs.setdefault(row["bin"], []).append(row["r"][key])
    ratio = statistics.mean(runs["new"]) / statistics.mean(runs["old"])
    label = f"{workload} N={n}" if n else workload
    print(f"{label} {key}: old {runs['old']} new {runs['new']} new/old {ratio:.3f}")
PY
