"""Whole-model prefill of SmolLM2 at one length: the HF runner's dense SDPA against the kernel runner with every
attention-level method, in one run (so the ratios share the machine's state).

Usage: .venv/bin/python scripts/bench_kernel_runner.py [--length 16k] [--out runs/bench_kernel_runner.json]
Each configuration feeds the same seeded random token ids (cost does not depend on the text) and times the prefill
(the runners' own loop: chunked streaming for sinks, one forward otherwise); peak RSS is the process's high-water
mark during that configuration (measured in a fresh process per configuration, so earlier ones do not mask it).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CONFIGS = [("hf", "none", {}), ("kernel", "none", {}), ("kernel", "sinks", {"sink_tokens": 4, "window": 4092}),
           ("hf", "sinks", {"sink_tokens": 4, "window": 4092}),
           ("kernel", "selfextend", {"group": 4, "window": 1024}), ("kernel", "alibi", {})]


def one(runner_name: str, ext_name: str, params: dict, length: int) -> dict:
    import resource

    import torch

    from extensions import EXTENSIONS
    from harness.models import resolve_model
    from harness.runners import RUNNERS

    path = resolve_model("smollm2", log=lambda *_: None).path
    from transformers import AutoConfig

    ext = EXTENSIONS.get(ext_name)()
    conf = ext.resolve(ext.parse(params), AutoConfig.from_pretrained(path))
    runner = RUNNERS.get(runner_name)(device="cpu", dtype="float32")
    runner.load(path, ext, conf)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(100, 40000, (1, length), generator=g)
    t0 = time.perf_counter()
    _, prefill_s, cache_bytes, _ = runner._greedy(ids, 1)
    wall = time.perf_counter() - t0
    return {"runner": runner_name, "extension": ext_name, "params": params, "length": length,
            "prefill_s": round(prefill_s, 2), "wall_s": round(wall, 2), "cache_bytes": cache_bytes,
            "kernel": runner._kernels_used(), "peak_rss_gib": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--length", default="16k")
    ap.add_argument("--out", default="runs/bench_kernel_runner.json")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one configuration
    args = ap.parse_args()
    length = int(args.length[:-1]) * 1024 if args.length.endswith("k") else int(args.length)
    if args.one is not None:
        print(json.dumps(one(*CONFIGS[int(args.one)], length)))
        return
    rows = []
    for i, (r, e, p) in enumerate(CONFIGS):
        out = subprocess.run([sys.executable, __file__, "--length", str(length), "--one", str(i)],
                             capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        rows.append(json.loads(out))
        print(rows[-1], flush=True)
    dense = next(x for x in rows if x["runner"] == "hf" and x["extension"] == "none")["prefill_s"]
    print(f"\n| runner | method | kernel | prefill s | × HF dense | peak RSS GiB |\n|---|---|---|---|---|---|")
    for x in rows:
        print(f"| {x['runner']} | {x['extension']} {x['params'] or ''} | {x['kernel']} | {x['prefill_s']} | "
              f"{x['prefill_s'] / dense:.2f} | {x['peak_rss_gib']} |")
    import os

    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
