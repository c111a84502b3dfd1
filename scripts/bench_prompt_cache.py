"""Prompt generation cold against the prompt cache (evals.cache) on this machine: the wall time to build every
sample of a grid of tasks × lengths × samples with an empty cache, then again with the cache filled.

    python scripts/bench_prompt_cache.py --lengths 4k,8k --samples 10            # 13 tasks
    python scripts/bench_prompt_cache.py --tasks passkey,qa --lengths 4k-128k --samples 100

Uses a fresh cache folder (a temporary one unless --folder is given) and SmolLM2's tokenizer. Prints one line per
task (cold s, cached s, prompts) and the totals; results go in docs/BENCHMARKS.md with the machine.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

TASKS = ("passkey", "needle", "niah-multikey", "niah-multikey-words", "niah-multikey-uuids", "niah-multivalue",
         "niah-multiquery", "kv", "phonebook", "vt", "cwe", "fwe", "qa")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--lengths", default="4k,8k", help="comma-separated lengths, or A-B for the powers of 2 between")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--folder", default=None, help="cache folder (default: a temporary one, removed at the end)")
    args = ap.parse_args()

    folder = args.folder or tempfile.mkdtemp(prefix="longctx-bench-prompts-")
    os.environ["LONGCTX_PROMPT_CACHE_DIR"] = folder
    os.environ.pop("LONGCTX_PROMPT_CACHE", None)
    from transformers import AutoTokenizer

    from evals.registry import make_config, make_task
    from harness.config import parse_length, parse_lengths
    from harness.models import resolve_model

    if "-" in args.lengths:
        lo, hi = (parse_length(x) for x in args.lengths.split("-"))
        lengths = [n for n in (2 ** k for k in range(10, 21)) if lo <= n <= hi]
    else:
        lengths = parse_lengths(args.lengths)
    tok = AutoTokenizer.from_pretrained(resolve_model("smollm2", log=lambda *_: None).path)
    totals = [0.0, 0.0, 0]
    print(f"{'task':<22}{'cold s':>10}{'cached s':>10}{'prompts':>9}   lengths {lengths}, {args.samples} samples")
    for name in args.tasks.split(","):
        cfg = make_config(name, {"lengths": tuple(lengths), "samples": args.samples}, known_only=True)
        times = []
        for _ in range(2):
            task = make_task(name, cfg)
            t0 = time.perf_counter()
            n = sum(1 for c in task.cells() if task.formatted(tok, *c) is not None)
            times.append(time.perf_counter() - t0)
        totals = [totals[0] + times[0], totals[1] + times[1], totals[2] + n]
        print(f"{name:<22}{times[0]:>10.1f}{times[1]:>10.2f}{n:>9}", flush=True)
    size = sum(f.stat().st_size for f in __import__("pathlib").Path(folder).rglob("*.json"))
    print(f"{'total':<22}{totals[0]:>10.1f}{totals[1]:>10.2f}{totals[2]:>9}   cache {size / 2**20:.0f} MiB")
    if not args.folder:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
