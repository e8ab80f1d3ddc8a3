#!/usr/bin/env bash
# The browser bundle's size as the server sends it: gzipped (zopfli) and with brotli (-q 11),
# from the `.gz` and `.br` copies `make` writes (compressed here where a copy is missing, with
# `gzip -9`, a little larger): the main
# module, and for each lazily loaded page what its first visit fetches (the main module, the
# page's module and the shared modules it needs, from the split manifest). Browsers take
# brotli over HTTPS only, so on a plain-HTTP LAN the gzip figure is what crosses the wire.
# Usage: tools/wasm_size.sh [PKG_DIR] [--check KIB]
# With --check, exits 1 when the main module's gzip size or a page's brotli first load passes
# KIB (`make test` checks 400, the issue's bound, so that growth shows up as a failure).
set -euo pipefail
exec python3 - "$@" <<'PY'
import gzip, json, os, shutil, subprocess, sys

args = sys.argv[1:]
budget = None
if "--check" in args:
    at = args.index("--check")
    budget = float(args[at + 1]) * 1024
    del args[at : at + 2]
pkg = args[0] if args else "target/site/pkg"


def size(stem, ext):
    path = os.path.join(pkg, stem + ".wasm")
    if os.path.exists(path + ext):
        return os.path.getsize(path + ext)
    data = open(path, "rb").read()
    if ext == ".gz":
        return len(gzip.compress(data, 9))
    if shutil.which("brotli"):
        return len(subprocess.run(["brotli", "-q", "11", "-c", path], capture_output=True, check=True).stdout)
    return None


over = []


def both(stems):
    gz = sum(size(s, ".gz") for s in stems)
    brs = [size(s, ".br") for s in stems]
    br = None if None in brs else sum(brs)
    text = f"{gz} bytes gzipped ({gz / 1024:.0f} KiB)"
    if br is not None:
        text += f", {br} with brotli ({br / 1024:.0f} KiB)"
    return gz, br, text


main, _, text = both(["switchboard_bg"])
print(f"wasm main module: {text}")
if budget is not None and main > budget:
    over.append(f"the main module is {main / 1024:.0f} KiB gzipped")
path = os.path.join(pkg, "__wasm_split_manifest.json")
manifest = json.load(open(path)) if os.path.exists(path) else {}
worst, worst_text = main, text
for split, stems in sorted(manifest.items()):
    page = split.strip("_").rsplit("_", 1)[0].removesuffix("_route_view")
    total, br, text = both(["switchboard_bg", *stems])
    if total > worst:
        worst, worst_text = total, text
    print(f"  page {page}: {text} on first load, {len(stems)} modules")
    if budget is not None and (br is None or br > budget):
        over.append(f"page {page} loads {'?' if br is None else round(br / 1024)} KiB with brotli")
print(f"wasm largest first load: {worst_text}")
if over:
    sys.exit(f"over the {budget / 1024:.0f} KiB budget: " + "; ".join(over))
PY
