#!/usr/bin/env bash
# The baseline servers that `make bench` measures Switchboard against: the tutorial's Django
# Channels chat and a Socket.IO 4 room broadcast. Their sources stay in ../shared/peers (see its
# README); what they need is installed outside the repo, in $PEERS_HOME (default /tmp/bench-peers).
#
#   tools/peers.sh install                      # idempotent: a Python venv and node_modules
#   tools/peers.sh start django|socketio PORT [CPU]   # prints the server's pid; pinned with taskset
#   tools/peers.sh stop django|socketio PORT    # stops the server started on PORT
#   tools/peers.sh wait PORT                    # waits until something accepts on 127.0.0.1:PORT
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PEERS="${PEERS:-$ROOT/../shared/peers}"
PEERS="$(cd "$PEERS" && pwd)"
PEERS_HOME="${PEERS_HOME:-/tmp/bench-peers}"
VENV="$PEERS_HOME/venv"
NODE_DIR="$PEERS_HOME/socketio"
# Neither peer may write into ../shared/peers (no __pycache__ there).
export PYTHONDONTWRITEBYTECODE=1
export SEED_DB="${SEED_DB:-$PEERS_HOME/django_seed.sqlite3}"

install() {
    mkdir -p "$PEERS_HOME"
    local req="$PEERS/django_seed/requirements.txt" stamp="$VENV/.requirements.sha256"
    local want
    want="$(sha256sum "$req" | cut -d' ' -f1)"
    if [ ! -x "$VENV/bin/daphne" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "peers: installing the Django peer into $VENV" >&2
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$req"
        echo "$want" >"$stamp"
    fi
    if [ ! -f "$SEED_DB" ]; then
        (cd "$PEERS/django_seed" && "$VENV/bin/python" manage.py migrate --verbosity 0)
    fi
    mkdir -p "$NODE_DIR"
    if ! cmp -s "$PEERS/socketio/package.json" "$NODE_DIR/package.json" || [ ! -d "$NODE_DIR/node_modules/socket.io" ]; then
        echo "peers: installing the Socket.IO peer into $NODE_DIR" >&2
        cp "$PEERS/socketio/package.json" "$NODE_DIR/package.json"
        (cd "$NODE_DIR" && npm install --silent --no-audit --no-fund >/dev/null)
    fi
}

pidfile() { echo "$PEERS_HOME/$1-$2.pid"; }

start() {
    local which="$1" port="$2" cpu="${3:-0}" log="$PEERS_HOME/$1-$2.log"
    install
    case "$which" in
        django)
            (cd "$PEERS/django_seed" && exec taskset -c "$cpu" "$VENV/bin/daphne" -b 127.0.0.1 -p "$port" \
                seedproj.asgi:application) >"$log" 2>&1 &
            ;;
        socketio)
            (cd "$PEERS/socketio" && NODE_PATH="$NODE_DIR/node_modules" PORT="$port" \
                exec taskset -c "$cpu" node server.js) >"$log" 2>&1 &
            ;;
        *) echo "peers: unknown peer $which (django or socketio)" >&2; exit 2 ;;
    esac
    local pid=$!
    echo "$pid" >"$(pidfile "$which" "$port")"
    wait_port "$port" || { echo "peers: $which did not start; see $log" >&2; exit 1; }
    echo "$pid"
}

stop() {
    local file
    file="$(pidfile "$1" "$2")"
    [ -f "$file" ] || return 0
    local pid
    pid="$(cat "$file")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$file"
}

wait_port() {
    for _ in $(seq 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

case "${1:-}" in
    install) install ;;
    start) start "$2" "$3" "${4:-0}" ;;
    stop) stop "$2" "$3" ;;
    wait) wait_port "$2" ;;
    *) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac
