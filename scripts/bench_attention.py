"""One attention layer of SmolLM2's shape (9 query / 3 KV heads, d 64), every spec, every implementation here.

Usage: .venv/bin/python scripts/bench_attention.py [--lengths 4k,16k] [--device cpu|cuda] [--repeat 2]
Also a chunk of queries after cached keys (prefix reuse: the last 90 % of the positions over all the keys), on
SDPA with its explicit mask and on kernels/cpu — what `impl=auto` chooses between.
Without a GPU `--device cuda` says so and runs the CPU table. Prints a Markdown table (seconds per layer, and the
ratio to dense causal SDPA measured in the same run). A benchmark, not a test: figures go to docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import importlib.util
import platform
import time

import torch
import torch.nn.functional as F

from kernels import attention
from kernels.spec import AttentionSpec

H, HKV, D = 9, 3, 64


def specs(inv_freq):
    slopes = torch.tensor([2.0 ** -(8 * (h + 1) / H) for h in range(H)])
    return {"causal": AttentionSpec(), "sinks 4+4092": AttentionSpec(sink_tokens=4, window=4092, inv_freq=inv_freq),
            "selfextend G4 N1024": AttentionSpec(group=4, neighbor_window=1024, inv_freq=inv_freq),
            "alibi": AttentionSpec(alibi_slopes=slopes)}


def timed(fn, repeat, device):
    best = float("inf")
    for _ in range(repeat):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", default="4k,16k")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: running the CPU table instead")
        device = "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    impls = ["cpu"] if device == "cpu" else ["triton"] + (["flash-attn"] if importlib.util.find_spec("flash_attn")
                                                         else [])
    inv_freq = 1.0 / (1e5 ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
    print(f"device {device} ({torch.cuda.get_device_name() if device == 'cuda' else platform.processor() or 'cpu'}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {dtype}")
    print("| length | spec | impl | s / layer | × dense SDPA |\n|---|---|---|---|---|")
    for n in [int(x[:-1]) * 1024 if x.endswith("k") else int(x) for x in args.lengths.split(",")]:
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(1, h, n, D, generator=g).to(device, dtype) for h in (H, HKV, HKV))
        pos = torch.arange(n, device=device)
        dense = timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True),
                      args.repeat, device)
        print(f"| {n} | causal | sdpa | {dense:.3f} | 1.00 |")
        for name, spec in specs(inv_freq).items():
            for impl in impls:
                if impl == "flash-attn" and name.startswith(("sinks", "selfextend")):
                    continue
                t = timed(lambda: attention(q, k, v, spec, pos, pos, impl=impl), args.repeat, device)
                print(f"| {n} | {name} | {impl} | {t:.3f} | {t / dense:.2f} |", flush=True)
        if device == "cpu":  # a chunk after a reused prefix of 10 %: SDPA needs a mask there, kernels/cpu does not
            c = n // 10
            for impl in ("sdpa", "cpu"):
                t = timed(lambda: attention(q[:, :, c:], k, v, AttentionSpec(), pos[c:], pos, impl=impl), args.repeat,
                          device)
                print(f"| {n} | causal, queries {c}..{n - 1} after cached keys | {impl} | {t:.3f} | "
                      f"{t / dense:.2f} |", flush=True)


if __name__ == "__main__":
    main()
