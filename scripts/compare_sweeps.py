"""Do two or more sweep directories hold the same records? (one sweep run locally, under Ray and as shards must
agree; docs/RESULTS.md §9). Compares what a run decides — cell, sample key, prompt hash, prompt tokens, greedy output,
strict and primary scores — and ignores what a run measures (latency, memory, host). Exit 0 when all agree.

    python scripts/compare_sweeps.py runs/sweep13/local runs/sweep13/ray runs/sweep13/shards
"""
from __future__ import annotations

import sys

from harness.sweep import compare


def main(dirs: list[str]) -> int:
    if len(dirs) < 2:
        print("usage: compare_sweeps.py SWEEP_DIR SWEEP_DIR [...]", file=sys.stderr)
        return 2
    ok, lines = compare(dirs)
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
