#!/usr/bin/env python3
"""The table of `make bench`: one row per figure, one column per server, and each
Switchboard figure as a ratio to each baseline measured in the same run; then the floors
of issue 6 for Switchboard's /ws, met or missed.

Usage: tools/bench_table.py target/bench/results.jsonl
"""
import json
import sys

SWITCHBOARD = ["switchboard-web", "switchboard-seed"]
BASELINES = ["django", "socketio"]


def load(path):
    results = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                results[(r["label"], r["target"])] = r
    return results


def fanout(field):
    return lambda r: r.get(field)


def ramp(field):
    return lambda r: (r.get("max_sustained") or {}).get(field)


# (label, row title, how to read it from a result, format, lower is better)
ROWS = [
    ("fanout-100-10k", "N=100, 10,000 deliveries/s offered: loss %", lambda r: r["loss"] * 100, "{:.2f}", True),
    ("fanout-100-10k", "  p99 latency, ms", fanout("p99_ms"), "{:.1f}", True),
    ("fanout-100-10k", "  server CPU per delivery, µs", fanout("server_us_per_delivery"), "{:.2f}", True),
    ("fanout-100-50k", "N=100, 50,000/s offered: delivered/s", fanout("delivered_per_s"), "{:,.0f}", False),
    ("fanout-100-50k", "  loss %", lambda r: r["loss"] * 100, "{:.2f}", True),
    ("fanout-100-50k", "  p99 latency, ms", fanout("p99_ms"), "{:.1f}", True),
    ("fanout-100-50k", "  server CPU per delivery, µs", fanout("server_us_per_delivery"), "{:.2f}", True),
    ("fanout-1000-50k", "N=1,000, 50,000/s offered: delivered/s", fanout("delivered_per_s"), "{:,.0f}", False),
    ("fanout-1000-50k", "  loss %", lambda r: r["loss"] * 100, "{:.2f}", True),
    ("fanout-1000-50k", "  p99 latency, ms", fanout("p99_ms"), "{:.1f}", True),
    ("fanout-1000-50k", "  server CPU per delivery, µs", fanout("server_us_per_delivery"), "{:.2f}", True),
    ("fanout-1000-10", "N=1,000, 10 messages/s: p50 latency, ms", fanout("p50_ms"), "{:.2f}", True),
    ("fanout-1000-10", "  p99 latency, ms", fanout("p99_ms"), "{:.2f}", True),
    ("ramp-100", "max sustainable fan-out, N=100 (p99 <= 100 ms, no loss), deliveries/s",
     lambda r: r.get("max_delivered_per_s"), "{:,.0f}", False),
    ("ramp-100", "  stopped by", lambda r: r.get("stopped_by"), "{}", None),
    ("ramp-100", "  server cores at the max", ramp("server_cores"), "{:.2f}", True),
    ("ramp-100", "  server CPU per delivery at the max, µs", ramp("server_us_per_delivery"), "{:.2f}", True),
    ("ramp-100", "  generator cores at the max", ramp("generator_cores"), "{:.2f}", None),
    ("idle", "idle connections held", fanout("joined"), "{:,}", False),
    ("idle", "  server memory per idle connection, KiB",
     lambda r: r["server_bytes_per_connection"] / 1024 if r.get("server_bytes_per_connection") is not None else None,
     "{:.1f}", True),
    ("idle", "  one broadcast to all of them, s", fanout("broadcast_seconds"), "{:.3f}", True),
    ("idle", "  share reached by that broadcast", lambda r: r.get("broadcast_reached"), "{:.1%}", False),
    ("connect", "connections opened per second", fanout("connects_per_s"), "{:,.0f}", False),
    ("connect", "  server CPU per connection, µs", fanout("server_us_per_connect"), "{:.0f}", True),
    ("stalled", "10 stalled readers, N=100, 50,000/s: others' loss %", lambda r: r["loss"] * 100, "{:.2f}", True),
    ("stalled", "  others' p99 latency, ms", fanout("p99_ms"), "{:.1f}", True),
    ("stalled", "  server memory growth, MiB",
     lambda r: r["server_rss_growth_bytes"] / 1048576 if r.get("server_rss_growth_bytes") is not None else None,
     "{:+.1f}", True),
]


def value(results, label, target, read):
    r = results.get((label, target))
    if r is None:
        return None
    try:
        return read(r)
    except (KeyError, TypeError):
        return None


def show(v, fmt):
    return "-" if v is None else fmt.format(v)


def ratio(a, b):
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or b == 0:
        return "-"
    r = a / b
    return f"{r:.2g}×" if r < 10 else f"{r:,.0f}×"


def table(results):
    targets = [t for t in SWITCHBOARD + BASELINES if any(k[1] == t for k in results)]
    ratio_cols = [(s, b) for s in SWITCHBOARD for b in BASELINES
                  if any(k[1] == s for k in results) and any(k[1] == b for k in results)]
    head = ["figure"] + targets + [f"{s.split('-')[1]} ÷ {b}" for s, b in ratio_cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, title, read, fmt, _lower in ROWS:
        values = {t: value(results, label, t, read) for t in targets}
        if all(v is None for v in values.values()):
            continue
        cells = [title] + [show(values[t], fmt) for t in targets]
        cells += [ratio(values[s], values[b]) for s, b in ratio_cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def floors(results, target="switchboard-web"):
    def get(label, read):
        return value(results, label, target, read)

    socketio_max = value(results, "ramp-100", "socketio", lambda r: r.get("max_delivered_per_s"))
    sb_max = get("ramp-100", lambda r: r.get("max_delivered_per_s"))
    stopped = get("ramp-100", lambda r: r.get("stopped_by"))
    cores = get("ramp-100", ramp("server_cores"))
    checks = []

    def check(name, ok, detail):
        checks.append(f"- {'MET   ' if ok else 'MISSED'} {name}: {detail}")

    for label, n in (("fanout-100-50k", 100), ("fanout-1000-50k", 1000)):
        us = get(label, fanout("server_us_per_delivery"))
        loss = get(label, lambda r: r["loss"])
        if us is not None:
            check(f"server CPU per delivery <= 4 µs, N={n}, 50,000/s, zero loss",
                  us <= 4 and loss == 0, f"{us:.2f} µs, loss {loss:.3%}")
    if sb_max is not None and socketio_max is not None:
        detail = f"{sb_max:,.0f}/s vs Socket.IO {socketio_max:,.0f}/s (stopped by {stopped})"
        ok = sb_max >= socketio_max
        if stopped == "generator_saturated":
            ok = ok and cores is not None and cores < 0.5
            detail += f", server at {cores:.2f} cores when the generator saturated"
        check("max sustainable fan-out >= Socket.IO's", ok, detail)
    p99 = get("fanout-1000-10", fanout("p99_ms"))
    if p99 is not None:
        detail = f"{p99:.2f} ms"
        bare = results.get(("send-floor-10", "floor"))
        if bare is not None:
            detail += f" (a bare round of sends at that pace: p99 {bare['round_p99_ms']:.2f} ms)"
        check("p99 <= 5 ms, N=1,000, 10 messages/s", p99 <= 5, detail)
    mem = get("idle", lambda r: r.get("server_bytes_per_connection"))
    if mem is not None:
        check("<= 8 KiB server memory per idle connection", mem <= 8 * 1024, f"{mem / 1024:.1f} KiB")
    held = get("idle", fanout("joined"))
    secs = get("idle", fanout("broadcast_seconds"))
    if held is not None:
        check("100,000 connections held, one broadcast to all within 2 s",
              held >= 100_000 and secs is not None and secs <= 2,
              f"{held:,} held, broadcast {'-' if secs is None else f'{secs:.3f} s'}")
    growth = get("stalled", lambda r: r.get("server_rss_growth_bytes"))
    sp99 = get("stalled", fanout("p99_ms"))
    sloss = get("stalled", lambda r: r["loss"])
    if growth is not None:
        check("stalled readers: memory bounded, others' p99 within the floor",
              sloss == 0 and sp99 is not None and sp99 <= 100,
              f"server memory {growth / 1048576:+.1f} MiB, others' p99 {sp99:.1f} ms, loss {sloss:.3%}")
    return "\n".join(checks)


def send_floor(results):
    """The kernel's part alone, and each fan-out figure as a multiple of it."""
    f = results.get(("send-floor", "floor"))
    lines = []
    if f is not None:
        floor = f["cpu_us_per_send"]
        lines += [
            f"Send floor (no server: one pinned thread, one send() of a {f['bytes']}-byte frame to each of "
            f"{f['connections']:,} loopback connections): {floor:.2f} µs CPU per send; a round of "
            f"{f['connections']:,} sends takes p50 {f['round_p50_ms']:.2f} ms, p99 {f['round_p99_ms']:.2f} ms.",
            "Server CPU per delivery as a multiple of that floor:",
        ]
        for label in ("fanout-100-50k", "fanout-1000-50k"):
            cells = []
            for target in SWITCHBOARD + BASELINES:
                us = value(results, label, target, fanout("server_us_per_delivery"))
                if us is not None:
                    cells.append(f"{target} {us / floor:.2f}×")
            if cells:
                lines.append(f"- {label}: " + ", ".join(cells))
        ring = results.get(("send-floor-ring", "floor"))
        if ring is not None:
            lines.append(
                f"The same rounds written with one io_uring submission each: {ring['cpu_us_per_send']:.2f} µs CPU per "
                f"send ({ring['cpu_us_per_send'] / floor:.2f}× a send() each); a round takes p50 "
                f"{ring['round_p50_ms']:.2f} ms, p99 {ring['round_p99_ms']:.2f} ms."
            )
    slow = results.get(("send-floor-10", "floor"))
    if slow is not None:
        lines += [
            "" if lines else None,
            f"Send floor at the 10 messages/s run's pace (rounds {slow['gap_ms']} ms apart, the reader asleep in "
            f"epoll as the generator is, whose wake-up loopback runs on the sender's core): "
            f"{slow['cpu_us_per_send']:.2f} µs CPU per send; a round takes p50 {slow['round_p50_ms']:.2f} ms, "
            f"p99 {slow['round_p99_ms']:.2f} ms.",
        ]
        cells = []
        for target in SWITCHBOARD + BASELINES:
            us = value(results, "fanout-1000-10", target, fanout("server_us_per_delivery"))
            if us is not None:
                cells.append(f"{target} {us / slow['cpu_us_per_send']:.2f}×")
        if cells:
            lines.append("- fanout-1000-10, server CPU per delivery as a multiple of it: " + ", ".join(cells))
    lines = [line for line in lines if line is not None]
    return "\n".join(lines) if lines else None


def main():
    results = load(sys.argv[1])
    print(table(results))
    print()
    floor = send_floor(results)
    if floor:
        print(floor)
        print()
    print("Floors (issue 6), Switchboard /ws:")
    print(floors(results))


if __name__ == "__main__":
    main()
