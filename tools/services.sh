#!/usr/bin/env bash
# The engines the cluster's tests run on: PostgreSQL and Redis. The project's machines run both
# (127.0.0.1:5432, trust; 127.0.0.1:6379), shared by everything on the machine; where nothing
# answers there, this installs Debian's packages and starts private instances under
# target/services on other ports (PostgreSQL 55432, Redis 56379), which `stop` ends.
#   tools/services.sh start    ensure both answer; write their URLs to target/services.env
#   tools/services.sh stop     stop the private instances this script started, if any
#   SERVICES_PRIVATE=1 tools/services.sh start   private instances even where shared ones answer
# Tests read target/services.env (SWITCHBOARD_TEST_POSTGRES, SWITCHBOARD_TEST_REDIS) and make
# a database and a key prefix of their own on them, and clean up.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="$ROOT/target/services"
ENV="$ROOT/target/services.env"
PG_PORT=55432
REDIS_PORT=56379

answers() { # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

wait_for() { # what host port
  for _ in $(seq 100); do
    answers "$2" "$3" && return 0
    sleep 0.1
  done
  echo "services: $1 did not answer on $2:$3" >&2
  return 1
}

install() { # debian packages...
  local missing=()
  for package in "$@"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  { apt-get install -y "${missing[@]}" || (apt-get update && apt-get install -y "${missing[@]}"); } >&2
}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start_postgres() {
  if [ -z "${SERVICES_PRIVATE:-}" ] && answers 127.0.0.1 5432; then
    echo "SWITCHBOARD_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/postgres"
    return
  fi
  if ! answers 127.0.0.1 "$PG_PORT"; then
    install postgresql
    local bin
    bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
    mkdir -p "$DIR"
    if [ ! -f "$DIR/postgres/PG_VERSION" ]; then
      mkdir -p "$DIR/postgres"
      [ "$(id -u)" = 0 ] && chown postgres "$DIR/postgres"
      as_postgres "$bin/initdb" -D "$DIR/postgres" -U postgres --auth=trust >/dev/null
    fi
    [ "$(id -u)" = 0 ] && chown postgres "$DIR"
    as_postgres "$bin/pg_ctl" -D "$DIR/postgres" -l "$DIR/postgres.log" -w \
      -o "-p $PG_PORT -k $DIR -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
    wait_for PostgreSQL 127.0.0.1 "$PG_PORT"
  fi
  echo "SWITCHBOARD_TEST_POSTGRES=postgres://postgres@127.0.0.1:$PG_PORT/postgres"
}

start_redis() {
  # The fault tests (tests/faults.rs) restart a Redis of their own: the server must be here.
  command -v redis-server >/dev/null || install redis-server
  if [ -z "${SERVICES_PRIVATE:-}" ] && answers 127.0.0.1 6379; then
    echo "SWITCHBOARD_TEST_REDIS=redis://127.0.0.1:6379"
    return
  fi
  if ! answers 127.0.0.1 "$REDIS_PORT"; then
    install redis-server
    mkdir -p "$DIR/redis"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
      --dir "$DIR/redis" --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log"
    wait_for Redis 127.0.0.1 "$REDIS_PORT"
  fi
  echo "SWITCHBOARD_TEST_REDIS=redis://127.0.0.1:$REDIS_PORT"
}

case "${1:-start}" in
  start)
    mkdir -p "$ROOT/target"
    { start_postgres; start_redis; } > "$ENV.new"
    mv "$ENV.new" "$ENV"
    cat "$ENV"
    ;;
  stop)
    if [ -f "$DIR/postgres/postmaster.pid" ]; then
      bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
      as_postgres "$bin/pg_ctl" -D "$DIR/postgres" -m fast stop >/dev/null || true
    fi
    if [ -f "$DIR/redis.pid" ]; then
      kill "$(cat "$DIR/redis.pid")" 2>/dev/null || true
      rm -f "$DIR/redis.pid"
    fi
    ;;
  *)
    echo "usage: tools/services.sh start|stop" >&2
    exit 2
    ;;
esac
