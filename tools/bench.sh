#!/usr/bin/env bash
# `make bench`: Switchboard against its baselines (the tutorial's Django Channels app and a
# Socket.IO 4 server), every server pinned to one core and the generator to another, the same
# generator and settings for all, then one table with each figure's ratio to each baseline.
# See docs/benchmarks.md. Settings (environment):
#   DURATION=5        seconds measured per fan-out run (after 1 s of warm-up)
#   STEP=2            seconds per ramp step
#   CONNECTIONS=10000 connections held by the idle run (at most the file limit, see the docs)
#   BROADCAST_TIMEOUT=30  seconds the broadcast to all idle connections may take
#   CONNECTS=2000     connections opened by the connect-rate run
#   TARGETS="switchboard-web switchboard-seed django socketio"
#   SERVER_CPU=0 BENCH_CPU=1   the cores the servers and the generator are pinned to
#   SERVER_BIN, BENCH_BIN      default target/release/switchboard{,-bench}
#   OUT=target/bench           where the results (results.jsonl, table.md, logs) go
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
DURATION="${DURATION:-5}"
STEP="${STEP:-2}"
CONNECTIONS="${CONNECTIONS:-10000}"
BROADCAST_TIMEOUT="${BROADCAST_TIMEOUT:-30}"
CONNECTS="${CONNECTS:-2000}"
TARGETS="${TARGETS:-switchboard-web switchboard-seed django socketio}"
SERVER_CPU="${SERVER_CPU:-0}"
BENCH_CPU="${BENCH_CPU:-1}"
SERVER_BIN="${SERVER_BIN:-target/release/switchboard}"
BENCH_BIN="${BENCH_BIN:-target/release/switchboard-bench}"
OUT="${OUT:-target/bench}"
PORT=${PORT:-7411}

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
# Servers and generator both need a file per connection.
ulimit -n "$(ulimit -Hn)"
tools/peers.sh install

SERVER_PID=""
SERVER_KIND=""
start_server() { # kind (switchboard|django|socketio)
    SERVER_KIND="$1"
    case "$1" in
        switchboard)
            rm -rf "$OUT/db" && mkdir -p "$OUT/db"
            taskset -c "$SERVER_CPU" "$SERVER_BIN" --addr "127.0.0.1:$PORT" \
                --database-url "sqlite://$OUT/db/switchboard.db" --guest-access \
                --message-rate 1e9 --message-burst 1e9 >"$OUT/switchboard.log" 2>&1 &
            SERVER_PID=$!
            tools/peers.sh wait "$PORT"
            ;;
        *) SERVER_PID="$(tools/peers.sh start "$1" "$PORT" "$SERVER_CPU")" ;;
    esac
    sleep 1
}

stop_server() {
    case "$SERVER_KIND" in
        switchboard)
            kill "$SERVER_PID" 2>/dev/null || true
            wait "$SERVER_PID" 2>/dev/null || true
            ;;
        "") ;;
        *) tools/peers.sh stop "$SERVER_KIND" "$PORT" ;;
    esac
    SERVER_KIND=""
    # A new server on the same port: let the old one's sockets go.
    PORT=$((PORT + 1))
}
trap stop_server EXIT

bench() { # target label args...
    local target="$1" label="$2"
    shift 2
    echo "== $target $label" >&2
    local line
    if line="$(taskset -c "$BENCH_CPU" "$BENCH_BIN" --target "$target" --addr "127.0.0.1:$PORT" \
        --server-pid "$SERVER_PID" --json "$@" 2>>"$OUT/bench.err")"; then
        echo "$line" | python3 -c 'import json,sys; [print(json.dumps({**json.loads(l), "label": sys.argv[1]})) for l in sys.stdin if l.strip()]' "$label" >>"$RESULTS"
    else
        echo "   failed: $(tail -1 "$OUT/bench.err")" >&2
    fi
    sleep 1
}

kind_of() {
    case "$1" in switchboard-*) echo switchboard ;; *) echo "$1" ;; esac
}

# No server: what one send costs here, the least any server pays per delivery (docs/benchmarks.md).
# Rounds 20 ms apart to a reader that never sleeps (the least a send costs); rounds 100 ms
# apart, as the 10 messages/s run's, to a reader asleep in epoll as the generator is.
send_floor() { # label, extra arguments
    local label="$1"
    shift
    echo "== $label" >&2
    taskset -c "$BENCH_CPU" "$BENCH_BIN" --target switchboard-web --json send-floor --connections 1000 \
        --sender-cpu "$SERVER_CPU" --reader-cpu "$BENCH_CPU" "$@" 2>>"$OUT/bench.err" |
        LABEL="$label" python3 -c 'import json,os,sys; [print(json.dumps({**json.loads(l), "label": os.environ["LABEL"]})) for l in sys.stdin if l.strip()]' >>"$RESULTS" ||
        echo "   failed: $(tail -1 "$OUT/bench.err")" >&2
}
send_floor send-floor
send_floor send-floor-10 --gap-ms 100 --rounds 60 --sleeping-reader
# The same rounds as the first, each written with one io_uring submission (docs/benchmarks.md).
send_floor send-floor-ring --ring

for target in $TARGETS; do
    kind="$(kind_of "$target")"
    start_server "$kind"
    bench "$target" fanout-100-10k fanout --subscribers 100 --rate 100 --duration "$DURATION"
    bench "$target" fanout-100-50k fanout --subscribers 100 --rate 500 --duration "$DURATION"
    bench "$target" fanout-1000-50k fanout --subscribers 1000 --rate 50 --duration "$DURATION"
    bench "$target" fanout-1000-10 fanout --subscribers 1000 --rate 10 --duration "$DURATION"
    bench "$target" ramp-100 ramp --subscribers 100 --senders 4 --start 5000 --factor 1.5 --step "$STEP"
    bench "$target" connect connect --connections "$CONNECTS"
    if [ "$kind" = switchboard ]; then
        bench "$target" stalled fanout --subscribers 100 --rate 500 --duration "$DURATION" --stalled 10
    fi
    stop_server
    # Memory per connection on a fresh server, then one broadcast to all of them.
    start_server "$kind"
    bench "$target" idle idle --connections "$CONNECTIONS" --broadcast-timeout "$BROADCAST_TIMEOUT"
    stop_server
done

python3 tools/bench_table.py "$RESULTS" | tee "$OUT/table.md"
