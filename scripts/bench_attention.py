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
from kernels.spec import (AttentionSpec, QueryScale, ceiling_map, chunk_map, leaky_map, selfextend_map,
                          shifted_map, streaming_map)

H, HKV, D = 9, 3, 64


def specs(inv_freq, n: int, trained: int = 8192):
    """Every spec, sized as issue 33's SmolLM2 grid sizes it for n tokens on an 8,192-token window."""
    slopes = torch.tensor([2.0 ** -(8 * (h + 1) / H) for h in range(H)])
    leak = max(1.0, (n - 1 - 2048) / (trained - 1 - 2048))
    shift = max(trained // 3, n - trained + 128)
    return {"causal": AttentionSpec(), "alibi": AttentionSpec(alibi_slopes=slopes),
            "sinks 4+4092": AttentionSpec(sink_tokens=4, window=4092, position_map=streaming_map(4, 4092),
                                          inv_freq=inv_freq),
            "selfextend G4 N1024": AttentionSpec(position_map=selfextend_map(4, 1024), inv_freq=inv_freq),
            "rerope w2048": AttentionSpec(position_map=ceiling_map(2048), inv_freq=inv_freq),
            f"leaky-rerope w2048 k{leak:.2f}": AttentionSpec(position_map=leaky_map(2048, leak), inv_freq=inv_freq),
            f"string S{shift} W128": AttentionSpec(position_map=shifted_map(shift, 128), inv_freq=inv_freq),
            "lm-infinite 10+8192": AttentionSpec(sink_tokens=10, window=8192, position_map=ceiling_map(8192, 8191),
                                                 inv_freq=inv_freq),
            "dca s6144 w2048": AttentionSpec(position_map=chunk_map(6144, 2048), inv_freq=inv_freq),
            "logn": AttentionSpec(query_scale=QueryScale("logn", trained))}


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
        for name, spec in specs(inv_freq, n).items():
            for impl in impls:
                if impl == "flash-attn" and spec.position_map is not None:
                    continue
                t = timed(lambda: attention(q, k, v, spec, pos, pos, impl=impl), args.repeat, device)
                print(f"| {n} | {name} | {impl} | {t:.3f} | {t / dense:.2f} |", flush=True)
        if device == "cpu" and n <= 16384:  # a chunk after a reused prefix of 10 %: SDPA needs a mask there (past
            # 16k its math path would store the whole score matrix), kernels/cpu does not
            c = n // 10
            for impl in ("sdpa", "cpu"):
                t = timed(lambda: attention(q[:, :, c:], k, v, AttentionSpec(), pos[c:], pos, impl=impl), args.repeat,
                          device)
                print(f"| {n} | causal, queries {c}..{n - 1} after cached keys | {impl} | {t:.3f} | "
                      f"{t / dense:.2f} |", flush=True)


if __name__ == "__main__":
    main()
