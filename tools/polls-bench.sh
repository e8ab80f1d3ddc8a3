#!/usr/bin/env bash
# `make bench-polls`: VOTERS voters on one live poll, voting within SPREAD seconds (evenly spread),
# on one node with its SQLite file, then on NODES nodes on PostgreSQL and Redis
# (docs/benchmarks.md, "Live polls"). For each: the time from the last vote's acknowledgement
# until every voter has the final tally, the server's CPU per vote (with PostgreSQL's and
# Redis's on several nodes), and the store's share: the same votes made straight into a store
# of the same engine, measured in the same run.
# Settings (environment): VOTERS=10000 SPREAD=10 NODES=3 ROUNDS=1 OUT=target/bench-polls.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
VOTERS="${VOTERS:-10000}"
SPREAD="${SPREAD:-10}"
NODES="${NODES:-3}"
ROUNDS="${ROUNDS:-1}"
SERVER_BIN="${SERVER_BIN:-target/release/switchboard}"
BENCH_BIN="${BENCH_BIN:-target/release/switchboard-bench-polls}"
OUT="${OUT:-target/bench-polls}"
PORT=7600

# shellcheck source=tools/nodes.sh
source tools/nodes.sh
bench_setup
PIDS=()
NODE_ARGS=()
bench_run polls

# run label args...: one generator run, its JSON tagged with the label.
run() {
  local label="$1"
  shift
  "$BENCH_BIN" --json --voters "$VOTERS" --seconds "$SPREAD" "$@" 2>>"$OUT/bench.log" \
    | python3 -c 'import json,sys; label=sys.argv[1]
for line in sys.stdin:
    if line.startswith("{"):
        d=json.loads(line); d["label"]=label; print(json.dumps(d))' "$label" | tee -a "$RESULTS"
}

for round in $(seq "$ROUNDS"); do
  echo "== round $round: $VOTERS voters within ${SPREAD}s, one node on SQLite"
  rm -rf "$OUT/sqlite" && mkdir -p "$OUT/sqlite"
  start_node $((PORT + 1)) any "sqlite://$OUT/sqlite/s.db" ""
  run one-node-sqlite --addr "127.0.0.1:$((PORT + 1))" --server-pid "$NODE_PID" \
    --store-url "sqlite://$OUT/sqlite/store-only.db" --sources 2
  stop_nodes

  echo "== round $round: $VOTERS voters within ${SPREAD}s, $NODES nodes on PostgreSQL and Redis"
  new_database "nodes$round"
  DATABASE_URL="$DB_URL"
  new_database "store$round"
  STORE_URL="$DB_URL"
  addrs=()
  pids=()
  for i in $(seq "$NODES"); do
    start_node $((PORT + 10 + i)) any
    addrs+=("127.0.0.1:$((PORT + 10 + i))")
    pids+=("$NODE_PID")
  done
  run "$NODES-nodes-postgres-redis" --addr "$(IFS=,; echo "${addrs[*]}")" \
    --server-pid "$(IFS=,; echo "${pids[*]}"),$(engine_pids)" --store-url "$STORE_URL" --sources 2
  stop_nodes
done

python3 - "$RESULTS" <<'PY' | tee "$OUT/table.md"
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
print("| run | nodes | voters | votes over | final tally after the last ack: p50 / p99 / max | server CPU per vote | store-only CPU per vote | store's share |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    store = r.get("store_cpu_us_per_vote")
    share = r.get("store_share")
    print(f"| {r['label']} | {r['nodes']} | {r['voters']:,} | {r['votes_over_s']:.1f} s | "
          f"{r['final_after_last_ack_ms_p50']:.0f} / {r['final_after_last_ack_ms_p99']:.0f} / {r['final_after_last_ack_ms_max']:.0f} ms | "
          f"{r['server_cpu_us_per_vote']:.0f} µs | {store:.0f} µs | {share:.2f} |" if store is not None else
          f"| {r['label']} | {r['nodes']} | {r['voters']:,} | {r['votes_over_s']:.1f} s | "
          f"{r['final_after_last_ack_ms_p50']:.0f} / {r['final_after_last_ack_ms_p99']:.0f} / {r['final_after_last_ack_ms_max']:.0f} ms | "
          f"{r['server_cpu_us_per_vote']:.0f} µs | | |")
PY
