#!/usr/bin/env bash
# `make cluster N=3`: N nodes of the release build behind HAProxy on http://127.0.0.1:3000, on
# the machine's PostgreSQL and Redis (tools/services.sh: the shared ones where they answer,
# else private ones). Every node serves every client; HAProxy spreads new connections over the
# nodes that answer /healthz and passes WebSocket upgrades through. Ctrl-C stops them all.
#   tools/cluster.sh [N] [node options...]     PORT=3000 (the balancer; the nodes take the next N ports)
#                            DATABASE=switchboard_cluster (made if missing)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
N="${1:-3}"
[ $# -gt 0 ] && shift
PORT="${PORT:-3000}"
DATABASE="${DATABASE:-switchboard_cluster}"
DIR="$ROOT/target/cluster"
SERVER="$ROOT/target/release/switchboard"

[ -x "$SERVER" ] || { echo "cluster: build first (make build)" >&2; exit 1; }
command -v haproxy >/dev/null || { apt-get install -y haproxy || (apt-get update && apt-get install -y haproxy); } >&2

tools/services.sh start >/dev/null
# shellcheck disable=SC1091
source target/services.env
admin="$SWITCHBOARD_TEST_POSTGRES"
if [ "$(psql "$admin" -Atc "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" != 1 ]; then
  psql "$admin" -qc "CREATE DATABASE \"$DATABASE\""
fi
database_url="${admin%/*}/$DATABASE"

mkdir -p "$DIR"
pids=()
stop() {
  trap - EXIT INT TERM
  [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop EXIT INT TERM

servers=""
for i in $(seq 1 "$N"); do
  port=$((PORT + i))
  "$SERVER" --addr "127.0.0.1:$port" --database-url "$database_url" --redis-url "$SWITCHBOARD_TEST_REDIS" \
    --site-root target/site --data-dir "$DIR/node$i" "$@" > "$DIR/node$i.log" 2>&1 &
  pids+=($!)
  servers+="    server node$i 127.0.0.1:$port check inter 1s fall 2 rise 1"$'\n'
done

cat > "$DIR/haproxy.cfg" <<EOF
# Written by tools/cluster.sh: $N nodes behind one address.
global
    maxconn 8000

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    # An upgraded WebSocket is a tunnel: it may stay quiet between the server's pings.
    timeout tunnel 1h
    option forwardfor

frontend switchboard
    bind 127.0.0.1:$PORT
    default_backend nodes

backend nodes
    balance roundrobin
    option httpchk GET /healthz
$servers
EOF

for i in $(seq 1 "$N"); do
  port=$((PORT + i))
  for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    kill -0 "${pids[$((i - 1))]}" 2>/dev/null || { echo "node $i failed: see $DIR/node$i.log" >&2; tail -5 "$DIR/node$i.log" >&2; exit 1; }
    sleep 0.1
  done
done
haproxy -f "$DIR/haproxy.cfg" -db &
pids+=($!)
echo "cluster: $N nodes (127.0.0.1:$((PORT + 1))-$((PORT + N))) behind http://127.0.0.1:$PORT"
echo "  database $database_url, Redis $SWITCHBOARD_TEST_REDIS; logs in $DIR"
wait -n "${pids[@]}"
