"""Do two or more sweep directories hold the same records? (issue 13's check: one sweep run locally, under Ray and as
shards must agree.) Compares what a run decides — cell, sample key, prompt hash, prompt tokens, greedy output,
strict and primary scores — and ignores what a run measures (latency, memory, host). Exit 0 when all agree.

    python scripts/compare_sweeps.py runs/sweep13/local runs/sweep13/ray runs/sweep13/shards
"""
from __future__ import annotations

import sys
from pathlib import Path

from harness.records import read_records


def decided(sweep_dir: Path) -> set[tuple]:
    return {(d.name, r.key, r.prompt_sha, r.tokens, r.prediction, r.correct, r.score)
            for d in sorted(sweep_dir.iterdir()) if (d / "run.json").exists() for r in read_records(d)}


def main(dirs: list[str]) -> int:
    if len(dirs) < 2:
        print("usage: compare_sweeps.py SWEEP_DIR SWEEP_DIR [...]", file=sys.stderr)
        return 2
    sets = {d: decided(Path(d)) for d in dirs}
    first, ref = dirs[0], sets[dirs[0]]
    cells = len({row[0] for row in ref})
    ok = True
    for d in dirs[1:]:
        extra, missing = sets[d] - ref, ref - sets[d]
        same = not extra and not missing
        ok &= same
        print(f"{d}: {len(sets[d])} records, " + ("identical to " + first if same else
              f"{len(missing)} of {first}'s records missing, {len(extra)} not in it"))
        for row in sorted(missing | extra, key=str)[:5]:
            print(f"  {'-' if row in missing else '+'} {row}")
    print(f"{first}: {len(ref)} records in {cells} cells; {sum(r[5] for r in ref)} strict-correct")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
