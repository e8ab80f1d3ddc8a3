#!/usr/bin/env python3
"""The table of `make bench-cluster` (tools/cluster-bench.sh) from its results.jsonl."""
import json
import statistics
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
by = {}
for row in rows:
    by.setdefault(row.get("label", ""), []).append(row)


def median(label, key):
    values = [r[key] for r in by.get(label, []) if r.get(key) is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=2):
    return "-" if value is None else f"{value:,.{digits}f}"


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


out = []
if "latency-same" in by:
    n = len(by["latency-same"])
    out.append(f"### Latency added by crossing nodes (median of {n} runs each, alternating)\n")
    out.append("| publisher → subscribers | p50 ms | p99 ms | p99.9 ms | loss | CPU µs/delivery (both nodes) |")
    out.append("|---|---|---|---|---|---|")
    for label, name in [("latency-same", "same node"), ("latency-cross", "node A → node B")]:
        out.append(
            f"| {name} | {fmt(median(label, 'p50_ms'))} | {fmt(median(label, 'p99_ms'))} | "
            f"{fmt(median(label, 'p999_ms'))} | {fmt(median(label, 'loss'), 4)} | "
            f"{fmt(median(label, 'server_us_per_delivery'))} |"
        )
    same, cross = median("latency-same", "p99_ms"), median("latency-cross", "p99_ms")
    if same is not None and cross is not None:
        out.append(f"\np99 added by crossing nodes: {cross - same:+.2f} ms (cross / same: {fmt(ratio(cross, same))})\n")

if "throughput-sqlite" in by:
    out.append("### Throughput, with PostgreSQL's and Redis's CPU counted in\n")
    out.append("| setup | delivered/s | loss | p99 ms | CPU µs/delivery | ratio to one SQLite node |")
    out.append("|---|---|---|---|---|---|")
    base = median("throughput-sqlite", "server_us_per_delivery")
    for label, name in [
        ("throughput-sqlite", "one node, SQLite (baseline)"),
        ("throughput-one-node", "one node, PostgreSQL + Redis"),
        ("throughput-two-nodes", "two nodes, PostgreSQL + Redis"),
    ]:
        cpu = median(label, "server_us_per_delivery")
        out.append(
            f"| {name} | {fmt(median(label, 'delivered_per_s'), 0)} | {fmt(median(label, 'loss'), 4)} | "
            f"{fmt(median(label, 'p99_ms'))} | {fmt(cpu)} | {fmt(ratio(cpu, base))} |"
        )
    out.append("")

parts = [r for label, rs in by.items() if label.startswith("idle-part-") for r in rs]
if parts:
    joined = sum(r.get("joined", 0) for r in parts)
    wanted = sum(r.get("connections", 0) for r in parts)
    seconds = [r.get("broadcast_seconds") for r in parts]
    reached = min(r.get("broadcast_reached") or 0 for r in parts)
    per = [r["server_bytes_per_connection"] for r in parts if r.get("server_bytes_per_connection") is not None]
    out.append(f"### {wanted:,} connections over {len(parts)} nodes\n")
    out.append("| connections held | one broadcast reached all in | reached | node memory per connection |")
    out.append("|---|---|---|---|")
    slowest = None if None in seconds else max(seconds)
    out.append(
        f"| {joined:,} of {wanted:,} | {fmt(slowest, 3)} s | {reached * 100:.1f} % | "
        f"{fmt(statistics.mean(per) / 1024 if per else None, 1)} KiB |"
    )
    out.append("")

print("\n".join(out))
