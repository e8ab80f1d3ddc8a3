#!/usr/bin/env bash
# The browser bundle's size as the server sends it, gzipped (-9; the `.gz` copies `make`
# writes, or gzipped here where none exists): the main module, and for each lazily loaded page
# what its first visit fetches (the main module, the page's module and the shared modules
# it needs, from the split manifest). Usage: tools/wasm_size.sh [PKG_DIR]
set -euo pipefail
exec python3 - "${1:-target/site/pkg}" <<'PY'
import gzip, json, os, sys

pkg = sys.argv[1]
def size(stem):
    path = os.path.join(pkg, stem + ".wasm")
    if os.path.exists(path + ".gz"):
        return os.path.getsize(path + ".gz")
    return len(gzip.compress(open(path, "rb").read(), 9))


main = size("switchboard_bg")
print(f"wasm main module: {main} bytes gzipped ({main / 1024:.0f} KiB)")
path = os.path.join(pkg, "__wasm_split_manifest.json")
manifest = json.load(open(path)) if os.path.exists(path) else {}
worst = main
for split, stems in sorted(manifest.items()):
    page = split.strip("_").rsplit("_", 1)[0].removesuffix("_route_view")
    total = main + sum(size(s) for s in stems)
    worst = max(worst, total)
    print(f"  page {page}: {total} bytes gzipped ({total / 1024:.0f} KiB) on first load, {len(stems)} modules")
print(f"wasm largest first load: {worst} bytes gzipped ({worst / 1024:.0f} KiB)")
PY
