# Starting and stopping server nodes for the benchmarks' scripts (sourced). The caller sets
# OUT (logs and data), SERVER_BIN, DATABASE_URL (the default store), REDIS and PREFIX (the
# default bus), and the arrays PIDS=() and NODE_ARGS=() (extra arguments for every node).

# Make OUT (an absolute path from here on) and an empty RESULTS in it, raise the file limit,
# and find the engines (tools/services.sh): ADMIN (PostgreSQL's admin URL) and REDIS.
bench_setup() {
  mkdir -p "$OUT"
  OUT="$(cd "$OUT" && pwd)"
  RESULTS="$OUT/results.jsonl"
  : >"$RESULTS"
  ulimit -n "$(ulimit -Hn)"
  tools/services.sh start >/dev/null
  # shellcheck disable=SC1091
  source target/services.env
  ADMIN="$SWITCHBOARD_TEST_POSTGRES"
  REDIS="$SWITCHBOARD_TEST_REDIS"
}

# bench_run name: this run's name and key prefix (RUN, PREFIX), the PostgreSQL databases it
# makes (DATABASES), and at exit its nodes stopped, its databases dropped and its Redis keys
# deleted.
bench_run() {
  RUN="$1$(date +%s)$RANDOM"
  PREFIX="$RUN:"
  DATABASES=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  [ ${#PIDS[@]} -gt 0 ] && kill "${PIDS[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  for database in "${DATABASES[@]}"; do
    psql "$ADMIN" -qc "DROP DATABASE IF EXISTS \"$database\" WITH (FORCE)" || true
  done
  redis-cli -u "$REDIS" --scan --pattern "$PREFIX*" | xargs -r redis-cli -u "$REDIS" DEL >/dev/null || true
}

# new_database name: a PostgreSQL database of this run's own (dropped at the end); its URL in DB_URL.
new_database() {
  local name="${RUN}_$1"
  psql "$ADMIN" -qc "CREATE DATABASE \"$name\""
  DATABASES+=("$name")
  DB_URL="${ADMIN%/*}/$name"
}

# start_node port cpu [database-url] [redis]: a node, its pid in NODE_PID.
start_node() {
  local port="$1" cpu="$2" url="${3:-$DATABASE_URL}" redis="${4-$REDIS}"
  local args=(--addr "127.0.0.1:$port" --database-url "$url" --guest-access --message-rate 1e9 --message-burst 1e9
    --data-dir "$OUT/data-$port" "${NODE_ARGS[@]}")
  [ -n "$redis" ] && args+=(--redis-url "$redis" --redis-prefix "$PREFIX")
  if [ "$cpu" = any ]; then
    "$SERVER_BIN" "${args[@]}" >"$OUT/node-$port.log" 2>&1 &
  else
    taskset -c "$cpu" "$SERVER_BIN" "${args[@]}" >"$OUT/node-$port.log" 2>&1 &
  fi
  NODE_PID=$!
  PIDS+=("$NODE_PID")
  for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "a node did not start: $OUT/node-$port.log" >&2
  exit 1
}

stop_nodes() {
  [ ${#PIDS[@]} -gt 0 ] && kill "${PIDS[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  PIDS=()
}

# The engines' processes, for CPU counted in.
engine_pids() {
  { pgrep -x postgres || true; pgrep -x redis-server || true; } | paste -sd, -
}

