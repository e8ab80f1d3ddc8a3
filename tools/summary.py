#!/usr/bin/env python3
"""Adds up the test counts of every suite's log and prints one closing line."""
import re
import sys

passed = failed = skipped = 0
for path in sys.argv[1:]:
    try:
        text = open(path, encoding="utf-8", errors="replace").read()
    except FileNotFoundError:
        continue
    # cargo test: "test result: ok. 17 passed; 0 failed; 1 ignored; ..."
    for p, f, i in re.findall(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored", text):
        passed, failed, skipped = passed + int(p), failed + int(f), skipped + int(i)
    # Playwright's list reporter: "  12 passed (30s)", "  1 failed", "  2 skipped"
    for n, kind in re.findall(r"^\s+(\d+) (passed|failed|flaky|skipped)\b", text, re.M):
        if kind == "passed":
            passed += int(n)
        elif kind == "skipped":
            skipped += int(n)
        else:
            failed += int(n)
print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
sys.exit(1 if failed else 0)
