#!/usr/bin/env bash
# A/B of two server binaries on the same machine in one run: fan-out CPU per delivery and p99
# (N=1,000 subscribers, 50 messages/s, 15 s) and idle memory per connection (5,000), each binary
# three times, alternated, the server on core 0 and the generator on core 1.
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
  taskset -c 1 "$BENCH" --target switchboard-web --addr 127.0.0.1:7499 --server-pid $pid --json fanout --subscribers 1000 --rate 50 --duration 15 | sed "s/^/{\"bin\":\"$1\",\"r\":/; s/\$/}/" >> "$OUT/results.jsonl"
  taskset -c 1 "$BENCH" --target switchboard-web --addr 127.0.0.1:7499 --server-pid $pid --json idle --connections 5000 --broadcast-timeout 0 | sed "s/^/{\"bin\":\"$1\",\"r\":/; s/\$/}/" >> "$OUT/results.jsonl"
  kill $pid; wait $pid 2>/dev/null
}
for round in 1 2 3; do
  run old "$OLD"
  run new "$NEW"
done
python3 - "$OUT/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
for workload, key in [("fanout", "server_us_per_delivery"), ("fanout", "p99_ms"), ("idle", "server_bytes_per_connection")]:
    runs = {}
    for row in rows:
        if row["r"]["workload"] == workload:
            runs.setdefault(row["bin"], []).append(row["r"][key])
    ratio = statistics.mean(runs["new"]) / statistics.mean(runs["old"])
    print(f"{workload} {key}: old {runs['old']} new {runs['new']} new/old {ratio:.3f}")
PY
