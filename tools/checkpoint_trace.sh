#!/usr/bin/env bash
# Which thread checkpoints the database, and how long the commits that do it wait: starts a
# throwaway server (pinned to CPU 0, extra arguments passed on, e.g. `--checkpoint-ms 0`),
# traces its `fsync`s and file writes with strace while the bench generator (CPU 1) publishes
# RATE messages/s to one subscriber for SECONDS, then reports the commits (the log's
# `fsync`s), the database file's writes and `fsync`s by the writer's thread and by others,
# and each checkpoint made inside a commit (from the log's `fsync` to the end of the
# database file's). Needs `strace`, and `make` having built the release binaries.
# Usage: tools/checkpoint_trace.sh RATE SECONDS [server arguments...]
set -euo pipefail
rate=${1:?rate}; seconds=${2:?seconds}; shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$dir"' EXIT
port=3471
taskset -c 0 "$root/target/release/switchboard" --addr 127.0.0.1:$port --database-url "sqlite://$dir/x.db" \
  --guest-access --message-rate 1e9 --message-burst 1e9 "$@" > "$dir/log" 2>&1 &
server=$!
for _ in $(seq 50); do curl -sf http://127.0.0.1:$port/healthz >/dev/null && break; sleep 0.2; done
strace -f -tt -T -e trace=fsync,pwrite64,pread64 -p $server -o "$dir/trace" 2>/dev/null &
tracer=$!
sleep 0.5
taskset -c 1 "$root/target/release/switchboard-bench" --target switchboard-web --addr 127.0.0.1:$port \
  --server-pid $server fanout --subscribers 1 --rate "$rate" --duration "$seconds" | tail -1
kill $tracer; wait $tracer 2>/dev/null || true
python3 - "$dir/trace" <<'PY'
import collections, re, sys

lines = [l for l in open(sys.argv[1]) if "resumed" not in l and "unfinished" not in l]
thread = lambda l: l.split()[0]
fsyncs = collections.Counter(re.search(r"fsync\((\d+)\)", l).group(1) for l in lines if "fsync(" in l)
if not fsyncs:
    sys.exit("no fsync traced")
(log, _), *others = fsyncs.most_common()
db = others[0][0] if others else None
writer = collections.Counter(thread(l) for l in lines if f"fsync({log})" in l).most_common(1)[0][0]
on_db = collections.Counter(thread(l) for l in lines if db and re.search(rf"(pwrite64|fsync)\({db}[,)]", l))


def ms(l):
    h, m, s = l.split()[1].split(":")
    return (int(h) * 3600 + int(m) * 60 + float(s)) * 1000


inside, start, last = [], None, None
for l in lines:
    if thread(l) != writer:
        continue
    if f"fsync({log})" in l:
        last = l
    if db and start is None and re.search(rf"p(read|write)64\({db},", l):
        start = last
    done = db and re.search(rf"fsync\({db}\).*<([0-9.]+)>", l)
    if done and start:
        inside.append(ms(l) + float(done.group(1)) * 1000 - ms(start))
        start = None
print(f"commits (log fsyncs): {fsyncs[log]}; database file fsyncs: {fsyncs.get(db, 0) if db else 0}")
print(f"database file writes and fsyncs: writer's thread {on_db.get(writer, 0)}, other threads {sum(v for k, v in on_db.items() if k != writer)}")
print(f"checkpoints inside commits: {len(inside)}" + (": " + ", ".join(f"{x:.1f} ms" for x in inside) if inside else ""))
PY
