#!/usr/bin/env bash
# Which threads checkpoint the database, and how long the commits that do it wait: starts a
# throwaway server (pinned to CPU 0, extra arguments passed on, e.g. `--checkpoint-ms 0`),
# traces its `fsync`s and writes with strace, one file per thread with the files' paths,
# while the bench generator (CPU 1) publishes RATE messages/s to one subscriber for SECONDS.
# Reports the commits (`fsync`s of the log), the writes and `fsync`s of the database file
# by the writer's thread (the one that `fsync`s the log most) and by the others, each
# checkpoint made inside a commit (from the log's `fsync` to the end of the database file's),
# and the log's largest size. Needs `strace` and the release binaries (`make build`).
# Usage: tools/checkpoint_trace.sh RATE SECONDS [server arguments...]
set -euo pipefail
rate=${1:?rate}; seconds=${2:?seconds}; shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d)
server=
trap '[ -n "$server" ] && kill $server 2>/dev/null; rm -rf "$dir"' EXIT
port=${PORT:-3471}
if curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; then
  echo "something already answers on port $port (set PORT)" >&2; exit 1
fi
taskset -c 0 "$root/target/release/switchboard" --addr 127.0.0.1:$port --database-url "sqlite://$dir/x.db" \
  --guest-access --message-rate 1e9 --message-burst 1e9 "$@" > "$dir/log" 2>&1 &
server=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$port/healthz" >/dev/null || { echo "the server did not start:" >&2; cat "$dir/log" >&2; exit 1; }
mkdir "$dir/trace"
strace -ff -y -tt -T -e trace=fsync,pwrite64 -p $server -o "$dir/trace/t" 2>/dev/null &
tracer=$!
sleep 0.5
taskset -c 1 "$root/target/release/switchboard-bench" --target switchboard-web --addr 127.0.0.1:$port \
  --server-pid $server fanout --subscribers 1 --rate "$rate" --duration "$seconds" | tail -1
kill $tracer; wait $tracer 2>/dev/null || true
python3 - "$dir/trace" <<'PY'
import os, re, sys

CALL = re.compile(r"^(\S+) (fsync|pwrite64)\(\d+<([^>]*)>(?:, [^,]*, (\d+), (\d+))?.*<([0-9.]+)>$")


def ms(clock):
    h, m, s = clock.split(":")
    return (int(h) * 3600 + int(m) * 60 + float(s)) * 1000


threads = {}
for name in os.listdir(sys.argv[1]):
    calls = []
    for line in open(os.path.join(sys.argv[1], name)):
        m = CALL.match(line.strip())
        if m:
            clock, call, path, size, offset, took = m.groups()
            kind = "log" if path.endswith("-wal") else "db" if path.endswith(".db") else None
            if kind:
                calls.append((ms(clock), call, kind, int(size or 0) + int(offset or 0), float(took) * 1000))
    threads[name] = calls
count = lambda calls, call, kind: sum(1 for c in calls if c[1] == call and c[2] == kind)
writer = max(threads, key=lambda t: count(threads[t], "fsync", "log"))
calls = threads[writer]
on_db = lambda calls: sum(1 for c in calls if c[2] == "db")
others = sum(on_db(c) for t, c in threads.items() if t != writer)
inside, start, last = [], None, None
for at, call, kind, _, took in calls:
    if call == "fsync" and kind == "log":
        last = at
    elif kind == "db" and call == "pwrite64" and start is None:
        start = last
    elif kind == "db" and call == "fsync" and start is not None:
        inside.append(at + took - start)
        start = None
log_end = max((c[3] for cs in threads.values() for c in cs if c[1] == "pwrite64" and c[2] == "log"), default=0)
print(f"commits (the writer's fsyncs of the log): {count(calls, 'fsync', 'log')}")
print(f"database file writes and fsyncs: writer's thread {on_db(calls)}, other threads {others}")
print(f"checkpoints inside commits: {len(inside)}" + (": " + ", ".join(f"{x:.1f} ms" for x in inside) if inside else ""))
print(f"largest log: {max(0, log_end - 32) // 4120} frames")
PY
