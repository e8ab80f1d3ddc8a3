#!/usr/bin/env bash
# `make bench-docs`: shared documents (issue 19; docs/benchmarks.md), on one node with its SQLite
# file, then on NODES nodes on PostgreSQL and Redis. For each setup, every measurement on nodes
# started fresh for it (generator `switchboard-bench-docs`, bench/src/docs/main.rs):
# - typing: EDITORS editors open one new document (spread over the nodes), each typing RATE
#   characters a second at random places of its copy for TYPE_SECONDS seconds: from a keystroke
#   until each other editor has it (p50, p99, max), until it is stored, the servers' CPU per
#   update (PostgreSQL's and Redis's counted in on several nodes); every copy, and a newcomer's
#   on each node, must end with the same text;
# - opening a document of EDITS one-character edits (seeded straight into the store, the cursor
#   jumping somewhere else every 1 to RUN_MAX characters): from a new client's subscribe until it
#   holds the whole text, first on nodes that never had it open (the whole log is read), then,
#   once that open made its snapshot, on restarted nodes (the snapshot is read);
# - memory: DOCUMENTS documents of DOC_CHARS characters (seeded, with snapshots), each opened by
#   one client on the first node: the node's resident memory per open document.
# Floors printed beside the results: keystroke p99 under 25 ms on one node, 30 ms across
# several; the whole text of the EDITS-edit document under 200 ms.
# Settings (environment): EDITORS=50 RATE=5 TYPE_SECONDS=60 EDITS=100000 RUN_MAX=40
# DOCUMENTS=200 DOC_CHARS=2000 NODES=2 OUT=target/bench-docs.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
EDITORS="${EDITORS:-50}"
RATE="${RATE:-5}"
TYPE_SECONDS="${TYPE_SECONDS:-60}"
EDITS="${EDITS:-100000}"
RUN_MAX="${RUN_MAX:-40}"
DOCUMENTS="${DOCUMENTS:-200}"
DOC_CHARS="${DOC_CHARS:-2000}"
NODES="${NODES:-2}"
SERVER_BIN="${SERVER_BIN:-target/release/switchboard}"
BENCH_BIN="${BENCH_BIN:-target/release/switchboard-bench-docs}"
OUT="${OUT:-target/bench-docs}"
# Every start of a node takes a port of its own: a restarted node never waits for its old one.
NEXT_PORT=7700

# shellcheck source=tools/nodes.sh
source tools/nodes.sh
bench_setup
PIDS=()
NODE_ARGS=()
bench_run docs

# start_nodes: the setup's nodes, fresh, on DB_URL (one node on SQLite; NODES nodes with Redis
# on PostgreSQL). Their addresses in URLS, their pids in NODE_PIDS; the pids whose CPU is the
# server's (the nodes', and on PostgreSQL the engines' too) in SERVER_PIDS.
start_nodes() {
  URLS=()
  NODE_PIDS=()
  local count=1
  if [ "$ENGINE" = postgres ]; then
    count="$NODES"
  fi
  for _ in $(seq "$count"); do
    NEXT_PORT=$((NEXT_PORT + 1))
    if [ "$ENGINE" = sqlite ]; then
      start_node "$NEXT_PORT" any "$DB_URL" ""
    else
      start_node "$NEXT_PORT" any "$DB_URL"
    fi
    URLS+=("ws://127.0.0.1:$NEXT_PORT")
    NODE_PIDS+=("$NODE_PID")
  done
  SERVER_PIDS="$(IFS=,; echo "${NODE_PIDS[*]}")"
  if [ "$ENGINE" = postgres ]; then
    local engines
    engines="$(engine_pids)"
    if [ -n "$engines" ]; then
      SERVER_PIDS="$SERVER_PIDS,$engines"
    fi
  fi
}

# tag label: each JSON line of stdin with the setup and the label added, to stdout and RESULTS.
tag() {
  python3 -c 'import json,sys
setup, nodes, label = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for line in sys.stdin:
    if line.startswith("{"):
        d = json.loads(line); d.update(setup=setup, node_count=nodes, label=label); print(json.dumps(d))' \
    "$SETUP" "$NODE_COUNT" "$1" | tee -a "$RESULTS"
}

# bench label args...: one run of the generator, its result tagged. Its complaints go to the
# terminal and to bench.log; a failed run (copies that differ, a refused edit) ends the script.
bench() {
  local label="$1"
  shift
  "$BENCH_BIN" --json "$@" 2> >(tee -a "$OUT/bench.log" >&2) | tag "$label"
}

# field json name: a field of a JSON object (a list joined with commas).
field() {
  python3 -c 'import json,sys
value = json.loads(sys.argv[1])[sys.argv[2]]
print(",".join(map(str, value)) if isinstance(value, list) else value)' "$1" "$2"
}

# measure: every measurement of the setup (ENGINE, SETUP, NODE_COUNT) on the store at DB_URL.
measure() {
  echo "== $SETUP: seeding a document of $EDITS edits, and $DOCUMENTS of $DOC_CHARS characters"
  local seeded
  seeded="$("$BENCH_BIN" --json seed --db "$DB_URL" --edits "$EDITS" --run-max "$RUN_MAX" \
    --documents "$DOCUMENTS" --doc-chars "$DOC_CHARS" 2> >(tee -a "$OUT/bench.log" >&2))"
  echo "$seeded" | tag seed >/dev/null
  local long chars small
  long="$(field "$seeded" document)"
  chars="$(field "$seeded" chars)"
  small="$(field "$seeded" documents)"

  echo "== $SETUP: opening it on nodes that never had it open (its whole log read)"
  start_nodes
  bench open-log open --url "${URLS[0]}" --document "$long" --expect-chars "$chars"
  # That open brings about a snapshot in the background (src/documents/server.rs): wait for it.
  bench snapshot snapshot --db "$DB_URL" --document "$long" --wait 120
  stop_nodes
  echo "== $SETUP: opening it on restarted nodes (its snapshot read)"
  start_nodes
  bench open-snapshot open --url "${URLS[0]}" --document "$long" --expect-chars "$chars"
  stop_nodes

  echo "== $SETUP: $EDITORS editors typing $RATE characters a second each for ${TYPE_SECONDS}s"
  start_nodes
  bench typing type --url "$(IFS=,; echo "${URLS[*]}")" --editors "$EDITORS" --rate "$RATE" \
    --seconds "$TYPE_SECONDS" --server-pid "$SERVER_PIDS"
  stop_nodes

  echo "== $SETUP: $DOCUMENTS documents open, one client each"
  start_nodes
  bench memory hold --url "${URLS[0]}" --documents "$small" --server-pid "${NODE_PIDS[0]}"
  stop_nodes
}

ENGINE=sqlite
SETUP="one node, SQLite"
NODE_COUNT=1
rm -rf "$OUT/sqlite" && mkdir -p "$OUT/sqlite"
DB_URL="sqlite://$OUT/sqlite/docs.db"
measure

ENGINE=postgres
SETUP="$NODES nodes, PostgreSQL and Redis"
NODE_COUNT="$NODES"
new_database nodes
measure

python3 - "$RESULTS" "$EDITS" <<'PY' | tee "$OUT/table.md"
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
edits = int(sys.argv[2])
setups = list(dict.fromkeys(r["setup"] for r in rows))
def of(setup, label):
    return next((r for r in rows if r["setup"] == setup and r["label"] == label), None)
def mark(ok):
    return "✓" if ok else "✗"

print("Typing: from a keystroke until each other editor has it, and until it is stored.\n")
print("| run | editors × characters/s × s | updates | keystroke → other editors: p50 / p99 / max | floor (p99) | keystroke → stored: p50 / p99 | server CPU per update | every copy the same |")
print("|---|---|---|---|---|---|---|---|")
for setup in setups:
    r = of(setup, "typing")
    if r is None:
        continue
    floor = 25 if r["node_count"] == 1 else 30
    cpu = r.get("server_cpu_us_per_update")
    print(f"| {setup} | {r['editors']} × {r['rate']:g} × {r['seconds']:g} | {r['updates']:,} | "
          f"{r['keystroke_ms_p50']:.1f} / {r['keystroke_ms_p99']:.1f} / {r['keystroke_ms_max']:.1f} ms | "
          f"< {floor} ms {mark(r['keystroke_ms_p99'] < floor)} | "
          f"{r['stored_ms_p50']:.1f} / {r['stored_ms_p99']:.1f} ms | "
          f"{'' if cpu is None else f'{cpu:,.0f} µs'} | {'yes' if r['converged'] else 'no'} |")

print(f"\nOpening a document of {edits:,} one-character edits: from the subscribe until `subscribed` (the node has it in memory) / until the client holds the whole text.\n")
print("| run | characters | whole log read | snapshot read | floor (whole text) | snapshot |")
print("|---|---|---|---|---|---|")
for setup in setups:
    log, snap, made = of(setup, "open-log"), of(setup, "open-snapshot"), of(setup, "snapshot")
    if log is None or snap is None:
        continue
    cell = lambda r: f"{r['subscribed_ms']:.0f} / {r['whole_text_ms']:.0f} ms {mark(r['whole_text_ms'] < 200)}"
    size = f"{made['snapshot_bytes'] / 1024:,.0f} KiB, up to edit {made['upto']:,}" if made else ""
    print(f"| {setup} | {log['chars']:,} | {cell(log)} | {cell(snap)} | < 200 ms | {size} |")

print("\nMemory: documents open on the first node, one client each.\n")
print("| run | documents open | characters each | server memory per open document |")
print("|---|---|---|---|")
for setup in setups:
    r = of(setup, "memory")
    if r is None:
        continue
    print(f"| {setup} | {r['documents']:,} | {r['chars_per_document']:,.0f} | {r['server_bytes_per_document'] / 1024:,.1f} KiB |")
PY
