"""The ALiBi baseline's architecture (Bloom, `harness.baselines`' default size) at long prompts: transformers' eager
attention (the HF runner) against the kernel runner (its trained slopes as an ALiBi spec, chunked prefill).

Usage: .venv/bin/python scripts/bench_bloom.py [--lengths 8k,16k,32k] [--eager-lengths 8k]
                                               [--out runs/bench_bloom.json]
Weights are random (seed 0): cost does not depend on them. Each configuration runs in a fresh process (its peak RSS
is its own): prefill of seeded random token ids through the runner's own loop, wall time and ru_maxrss.
Eager attention materialises (heads, T, T) fp32 scores (18.5 GB at 16k was measured): keep --eager-lengths short.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time


def parse_len(s: str) -> int:
    return int(s[:-1]) * 1024 if s.endswith("k") else int(s)


def one(path: str, runner_name: str, length: int) -> dict:
    import resource

    import torch

    from extensions import EXTENSIONS
    from harness.runners import RUNNERS

    ext = EXTENSIONS.get("none")()
    runner = RUNNERS.get(runner_name)(device="cpu", dtype="float32")
    runner.load(path, ext, ext.parse({}))
    ids = torch.randint(10, 2000, (1, length), generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    _, prefill_s, cache_bytes, _ = runner._greedy(ids, 1)
    return {"runner": runner_name, "length": length, "prefill_s": round(prefill_s, 2),
            "wall_s": round(time.perf_counter() - t0, 2), "cache_bytes": cache_bytes, "kernel": runner._kernels_used(),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", default="8k,16k,32k")
    ap.add_argument("--eager-lengths", default="8k")
    ap.add_argument("--out", default="runs/bench_bloom.json")
    ap.add_argument("--one", nargs=3, default=None, help=argparse.SUPPRESS)  # internal: PATH RUNNER LENGTH
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], args.one[1], int(args.one[2]))))
        return

    import torch
    from transformers import AutoTokenizer

    from harness.baselines import TrainConfig, build_model, byte_tokenizer

    tok = byte_tokenizer()  # only saved alongside; the prompts are random ids below the baseline's vocabulary
    cfg = TrainConfig()
    special = {"bos": tok.bos_token_id, "eos": tok.eos_token_id, "pad": tok.pad_token_id}
    torch.manual_seed(0)
    model = build_model("alibi", cfg, cfg.vocab_size, special)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        tok.save_pretrained(d)
        AutoTokenizer.from_pretrained(d)
        todo = [("hf", parse_len(x)) for x in args.eager_lengths.split(",") if x] + \
               [("kernel", parse_len(x)) for x in args.lengths.split(",") if x]
        for runner, length in todo:
            res = subprocess.run([sys.executable, __file__, "--one", d, runner, str(length)], capture_output=True,
                                 text=True)
            row = json.loads(res.stdout.strip().splitlines()[-1]) if res.returncode == 0 else \
                {"runner": runner, "length": length, "error": res.stderr.strip().splitlines()[-1]}
            print(row, flush=True)
            rows.append(row)
    n_params = sum(p.numel() for p in model.parameters())
    doc = {"model": f"Bloom (ALiBi baseline architecture, {n_params:,} parameters, random weights)", "rows": rows}
    from pathlib import Path

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
