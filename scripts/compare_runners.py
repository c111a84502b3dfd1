"""Agreement of two runs of the same grid (e.g. HF vs vLLM): same greedy answer per sample, and accuracy of each.

Usage: python scripts/compare_runners.py RUN_A RUN_B   — prints one summary line and every disagreeing sample.
"""
from __future__ import annotations

import sys

from harness.records import read_records


def main() -> None:
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        sys.exit(2)
    a = {r.key: r for r in read_records(sys.argv[1])}
    b = {r.key: r for r in read_records(sys.argv[2])}
    common = sorted(set(a) & set(b), key=str)
    if not common:
        print("no common samples", file=sys.stderr)
        sys.exit(2)
    same_answer = [k for k in common if a[k].prediction.strip() == b[k].prediction.strip()]
    same_score = [k for k in common if a[k].correct == b[k].correct]
    r0 = a[common[0]]
    print(f"{r0.extension} {r0.extension_params}: {len(common)} samples; identical output "
          f"{len(same_answer)}/{len(common)} ({len(same_answer) / len(common):.0%}); same correctness "
          f"{len(same_score)}/{len(common)}; accuracy {a[common[0]].runner} "
          f"{sum(a[k].correct for k in common)}/{len(common)}, {b[common[0]].runner} "
          f"{sum(b[k].correct for k in common)}/{len(common)}")
    for k in common:
        if k not in same_answer:
            print(f"  differs {k}: target {a[k].target!r}: {a[k].runner} {a[k].prediction!r} | "
                  f"{b[k].runner} {b[k].prediction!r}")


if __name__ == "__main__":
    main()
