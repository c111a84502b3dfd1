"""One-pass sink+window streaming perplexity (the kernel runner) against StreamingLLM's token-by-token loop.

Usage: .venv/bin/python scripts/bench_streaming.py [--tokens 65536] [--loop-tokens 2048] [--sinks 4] [--window 4092]
                                                   [--out runs/bench_streaming.json]

Both score the same text (the essay haystack, perplexity document 0) with sinks S + window W on SmolLM2, fp32:
- one pass: `KernelRunner.token_nll` — one forward over all `--tokens`, every query reading its S + W keys;
- the loop: the same runner's cache and attention fed one token per forward with eviction after each (what
  StreamingLLM's script does) for `--loop-tokens` tokens after the window has filled (the fill itself goes in
  512-token chunks); its per-token time in that steady state is extrapolated to `--tokens`.
Prints tokens/s of each, their ratio, and the two perplexities over the tokens both scored (they must agree; the
issue's tolerance is ±0.5 %).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=65536)
    ap.add_argument("--loop-tokens", type=int, default=2048, help="tokens timed after the window has filled")
    ap.add_argument("--sinks", type=int, default=4)
    ap.add_argument("--window", type=int, default=4092)
    ap.add_argument("--out", default="runs/bench_streaming.json")
    args = ap.parse_args()

    from transformers import AutoConfig, AutoTokenizer

    from evals.perplexity import PerplexityConfig, document_ids
    from extensions import EXTENSIONS
    from harness.models import resolve_model
    from harness.runners.kernel import KernelRunner

    path = resolve_model("smollm2", log=lambda *_: None).path
    tok = AutoTokenizer.from_pretrained(path)
    ids = torch.tensor([document_ids(tok, PerplexityConfig(lengths=(args.tokens,)), 0)])  # (1, T)
    ext = EXTENSIONS.get("sinks")()

    def runner(chunk: int) -> KernelRunner:
        conf = ext.resolve(ext.parse({"sink_tokens": args.sinks, "window": args.window, "chunk": chunk}),
                           AutoConfig.from_pretrained(path))
        r = KernelRunner(device="cpu", dtype="float32")
        r.load(path, ext, conf)
        return r

    fill = args.sinks + args.window
    loop_n = fill + args.loop_tokens
    loop = runner(512)
    nll_loop = torch.empty(loop_n - 1)
    greedy = torch.zeros(loop_n - 1, dtype=torch.bool)
    head = loop.model.get_output_embeddings()
    t_start = time.perf_counter()
    with torch.inference_mode():
        cache = loop._new_cache()
        # the window fills in 512-token chunks (same keys, same scores); the loop is timed from there on
        loop._prefill(ids[:, :fill], cache, on_hidden=lambda h, a, b: loop._nll_into(
            nll_loop, greedy, head, h, ids[0, :loop_n], a, b, torch.nn.functional))
        t_fill = time.perf_counter()
        for t in range(fill, loop_n - 1):
            h = loop.model.base_model(input_ids=ids[:, t:t + 1], position_ids=torch.tensor([[t]]),
                                      past_key_values=cache, use_cache=True).last_hidden_state[0]
            cache.after_forward()
            loop._nll_into(nll_loop, greedy, head, h, ids[0, :loop_n], t, t + 1, torch.nn.functional)
        t_end = time.perf_counter()
    per_token = (t_end - t_fill) / (loop_n - 1 - fill)
    loop_wall = t_end - t_start
    kept = cache.layers[0].keys.shape[-2]
    loop.close()

    one = runner(512)
    t0 = time.perf_counter()
    nll_one = one.token_nll(ids)
    one_wall = time.perf_counter() - t0
    kernel = one._kernels_used()

    shared = nll_one[:loop_n - 1]
    ppl_one, ppl_loop = math.exp(float(shared.mean())), math.exp(float(nll_loop.mean()))
    res = {
        "tokens": args.tokens, "sinks": args.sinks, "window": args.window, "kernel": kernel,
        "one_pass_s": round(one_wall, 1), "one_pass_tokens_per_s": round(args.tokens / one_wall, 1),
        "loop_tokens": loop_n, "loop_cache_keys": kept, "loop_wall_s": round(loop_wall, 1),
        "loop_s_per_token_after_fill": round(per_token, 5), "loop_tokens_per_s": round(1 / per_token, 1),
        "loop_extrapolated_s": round(per_token * args.tokens, 1),
        "speedup": round(per_token * args.tokens / one_wall, 2),
        "ppl_one_pass_all": round(math.exp(float(nll_one.mean())), 3),
        "ppl_one_pass_on_loop_tokens": round(ppl_one, 4), "ppl_loop": round(ppl_loop, 4),
        "ppl_rel_diff": round(ppl_one / ppl_loop - 1, 6),
        "max_abs_nll_diff": round(float((shared - nll_loop).abs().max()), 6),
        "torch_threads": torch.get_num_threads(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
