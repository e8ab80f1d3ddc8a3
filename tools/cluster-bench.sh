#!/usr/bin/env bash
# `make bench-cluster`: Switchboard as several nodes on PostgreSQL and Redis, measured against
# itself in the same run (docs/benchmarks.md, "Several nodes"):
#   1. latency added by crossing nodes: the same fan-out with the publisher and the subscribers
#      on one node, then the publisher on node A and the subscribers on node B, alternating;
#   2. throughput and CPU per delivery with PostgreSQL's and Redis's CPU counted in: one SQLite
#      node (the baseline), one node on PostgreSQL and Redis, two nodes with the subscribers
#      spread over both;
#   3. CONNECTIONS WebSocket connections held across NODES nodes (one generator process per
#      node, each under the per-process file limit, over several 127.0.0.x source addresses),
#      then one message to all of them: the time until the last has it, and memory per
#      connection.
# Settings (environment): SUBSCRIBERS=1000 RATE=10 DURATION=20 ROUNDS=2 (latency);
#   TP_SUBSCRIBERS=200 TP_RATE=250 TP_SENDERS=4 (throughput); CONNECTIONS=100000 NODES=6;
#   SKIP="latency throughput idle" to leave parts out; OUT=target/bench-cluster.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
SUBSCRIBERS="${SUBSCRIBERS:-1000}"
RATE="${RATE:-10}"
DURATION="${DURATION:-20}"
ROUNDS="${ROUNDS:-2}"
TP_SUBSCRIBERS="${TP_SUBSCRIBERS:-200}"
TP_RATE="${TP_RATE:-250}"
TP_SENDERS="${TP_SENDERS:-4}"
CONNECTIONS="${CONNECTIONS:-100000}"
NODES="${NODES:-6}"
SKIP="${SKIP:-}"
SERVER_BIN="${SERVER_BIN:-target/release/switchboard}"
BENCH_BIN="${BENCH_BIN:-target/release/switchboard-bench}"
OUT="${OUT:-target/bench-cluster}"
PORT=7500

# shellcheck source=tools/nodes.sh
source tools/nodes.sh
bench_setup
RUN="bench$(date +%s)$RANDOM"
DATABASE="switchboard_$RUN"
PREFIX="$RUN:"
DATABASE_URL="${ADMIN%/*}/$DATABASE"
psql "$ADMIN" -qc "CREATE DATABASE \"$DATABASE\""

PIDS=()
NODE_ARGS=()
cleanup() {
  [ ${#PIDS[@]} -gt 0 ] && kill "${PIDS[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  psql "$ADMIN" -qc "DROP DATABASE IF EXISTS \"$DATABASE\" WITH (FORCE)" || true
  redis-cli -u "$REDIS" --scan --pattern "$PREFIX*" | xargs -r redis-cli -u "$REDIS" DEL >/dev/null || true
}
trap cleanup EXIT

# bench label args...: one generator run pinned to core 1, its JSON tagged.
bench() {
  local label="$1"
  shift
  taskset -c 1 "$BENCH_BIN" --target switchboard-web --json "$@" 2>>"$OUT/bench.log" \
    | python3 -c 'import json,sys; label=sys.argv[1]
for line in sys.stdin:
    line=line.strip()
    if line.startswith("{"):
        d=json.loads(line); d["label"]=label; print(json.dumps(d))' "$label" | tee -a "$RESULTS"
}

if [[ " $SKIP " != *" latency "* ]]; then
  echo "== latency: $SUBSCRIBERS subscribers, $RATE messages/s, same node vs across nodes"
  start_node $((PORT + 1)) 0
  A=$NODE_PID
  start_node $((PORT + 2)) 0
  B=$NODE_PID
  for round in $(seq "$ROUNDS"); do
    # The order alternates: the second run of a pair measures on a warmer, busier machine.
    if [ $((round % 2)) = 1 ]; then order="same cross"; else order="cross same"; fi
    for kind in $order; do
      if [ "$kind" = same ]; then
        bench latency-same --addr "127.0.0.1:$((PORT + 1))" --server-pid "$A,$B" \
          fanout --subscribers "$SUBSCRIBERS" --senders 1 --rate "$RATE" --duration "$DURATION"
      else
        bench latency-cross --addr "127.0.0.1:$((PORT + 2))" --sender-addr "127.0.0.1:$((PORT + 1))" \
          --server-pid "$A,$B" fanout --subscribers "$SUBSCRIBERS" --senders 1 --rate "$RATE" --duration "$DURATION"
      fi
    done
  done
  stop_nodes
fi

if [[ " $SKIP " != *" throughput "* ]]; then
  echo "== throughput: $TP_SUBSCRIBERS subscribers, $TP_SENDERS senders, $TP_RATE messages/s"
  tp=(fanout --subscribers "$TP_SUBSCRIBERS" --senders "$TP_SENDERS" --rate "$TP_RATE" --duration 10)
  rm -rf "$OUT/sqlite" && mkdir -p "$OUT/sqlite"
  start_node $((PORT + 3)) 0 "sqlite://$OUT/sqlite/s.db" ""
  bench throughput-sqlite --addr "127.0.0.1:$((PORT + 3))" --server-pid "$NODE_PID" "${tp[@]}"
  stop_nodes
  start_node $((PORT + 4)) 0
  bench throughput-one-node --addr "127.0.0.1:$((PORT + 4))" --server-pid "$NODE_PID,$(engine_pids)" "${tp[@]}"
  first=$NODE_PID
  start_node $((PORT + 5)) 0
  bench throughput-two-nodes --addr "127.0.0.1:$((PORT + 4)),127.0.0.1:$((PORT + 5))" \
    --sender-addr "127.0.0.1:$((PORT + 4))" --server-pid "$first,$NODE_PID,$(engine_pids)" "${tp[@]}"
  stop_nodes
fi

if [[ " $SKIP " != *" idle "* ]]; then
  per=$(((CONNECTIONS + NODES - 1) / NODES))
  echo "== $CONNECTIONS connections over $NODES nodes ($per each), then one broadcast"
  # Mostly idle connections by the hundred thousand: a ping every 30 s rather than every 3 s
  # (33,000 pings a second would be most of what two cores do here).
  NODE_ARGS=(--heartbeat-secs 30 --idle-timeout-secs 90)
  nodes=()
  for i in $(seq "$NODES"); do
    start_node $((PORT + 10 + i)) any
    nodes+=("$NODE_PID")
  done
  epoch=$(( $(date +%s%N) - 1000000000 ))
  parts=()
  rm -f "$OUT"/ready-*
  # Every part but the last listens; the last connects, then broadcasts to all.
  for i in $(seq "$NODES"); do
    args=(--addr "127.0.0.1:$((PORT + 10 + i))" --server-pid "${nodes[$((i - 1))]}" --wall-epoch-ns "$epoch"
      --sources 4 --first-source $((1 + 4 * (i - 1))) --concurrency 32)
    if [ "$i" -lt "$NODES" ]; then
      "$BENCH_BIN" --target switchboard-web --json "${args[@]}" idle --connections "$per" --settle 2 \
        --broadcast-timeout 600 --listen-only --ready-file "$OUT/ready-$i" >"$OUT/idle-$i.json" 2>>"$OUT/bench.log" &
      parts+=($!)
      while [ ! -f "$OUT/ready-$i" ]; do
        kill -0 "${parts[-1]}" 2>/dev/null || { echo "part $i ended before it connected" >&2; exit 1; }
        sleep 0.5
      done
      echo "  part $i: $(cat "$OUT/ready-$i") connections held"
    else
      "$BENCH_BIN" --target switchboard-web --json "${args[@]}" idle --connections "$per" --settle 2 \
        --broadcast-timeout 60 >"$OUT/idle-$i.json" 2>>"$OUT/bench.log"
    fi
  done
  for part in "${parts[@]}"; do wait "$part"; done
  for i in $(seq "$NODES"); do sed "s/^{/{\"label\":\"idle-part-$i\",/" "$OUT/idle-$i.json" >>"$RESULTS"; done
  stop_nodes
fi

python3 tools/cluster-bench-table.py "$RESULTS" | tee "$OUT/table.md"
