"""Predicted vs measured peak memory: SmolLM2 (hf and kernel runners; kernel + SelfExtend) at 2k–32k and the Bloom
ALiBi baseline (kernel runner) at 2k–16k, one passkey sample per point, each in a fresh `longctx passkey` process.

Usage: .venv/bin/python scripts/memory_table.py [--out runs/memory_table] [--max-length 32k] [--held-out]
                                                [--skip LABEL@LENGTH,...]

Each point's record carries both figures: `peak_mem_bytes` (the process's peak RSS during the request, from the
kernel's high-water mark) and `predicted_peak_bytes` (harness.memory.predict_peak, computed before loading). The
breakdown printed beside them is recomputed by the current harness.memory from the same inputs (a recalibrated
model re-prints without re-measuring; points.json keeps the figure each record was given). Points already in
OUT/points.json are not run again (delete it to re-measure); cheap points run first. The Bloom baseline is
`harness.baselines`' ALiBi architecture with random weights (seed 0) and the byte tokenizer, saved once under
OUT/bloom-baseline, as in scripts/bench_bloom.py.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

NEW_TOKENS = 4
SERIES = [  # label, model ("bloom" = the baseline checkpoint), runner, extension, its -E parameters, lengths (k)
    ("bloom kernel", "bloom", "kernel", "none", {}, (2, 4, 8, 16)),
    ("smollm2 hf", "smollm2", "hf", "none", {}, (2, 4, 8, 16, 32)),
    ("smollm2 kernel", "smollm2", "kernel", "none", {}, (2, 4, 8, 16, 32)),
    ("smollm2 kernel selfextend", "smollm2", "kernel", "selfextend", {}, (2, 4, 8, 16, 32)),
]
HELD_OUT = [  # --held-out: paths the allocator constant was not fitted on (eager, the fp32 oracle, streaming)
    ("bloom hf (eager)", "bloom", "hf", "none", {}, (2, 4)),
    ("smollm2 hf selfextend (reference)", "smollm2", "hf", "selfextend", {}, (4, 8)),
    ("smollm2 kernel sinks", "smollm2", "kernel", "sinks", {"sink_tokens": 4, "window": 4092}, (8, 16)),
]


def bloom_checkpoint(out: Path) -> str:
    path = out / "bloom-baseline"
    if (path / "config.json").exists():
        return str(path)
    import torch

    from harness.baselines import TrainConfig, build_model, byte_tokenizer

    tok = byte_tokenizer()
    cfg = TrainConfig()
    torch.manual_seed(0)
    model = build_model("alibi", cfg, cfg.vocab_size, {"bos": tok.bos_token_id, "eos": tok.eos_token_id,
                                                       "pad": tok.pad_token_id})
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def measure(model: str, runner: str, extension: str, params: dict, length: int, work: Path) -> dict:
    """One passkey sample in a fresh process; its record, and the command's wall time."""
    run_dir = work / f"{Path(model).name}-{runner}-{extension}-{length}"
    cmd = [sys.executable, "-m", "harness.cli", "passkey", "-m", model, "-l", str(length), "-n", "1",
           "--max-new-tokens", str(NEW_TOKENS), "-r", runner, "-e", extension, "--out", str(run_dir),
           "--no-progress"] + [a for k, v in params.items() for a in ("-E", f"{k}={v}")]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        return {"error": (res.stderr.strip().splitlines() or ["?"])[-1], "wall_s": round(time.perf_counter() - t0)}
    (record,) = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    return {"record": record, "wall_s": round(time.perf_counter() - t0)}


def breakdown(model_path: str, runner: str, extension: str, params: dict, tokens: int) -> dict:
    from transformers import AutoConfig

    from extensions import EXTENSIONS
    from harness.memory import predict_peak

    cfg = AutoConfig.from_pretrained(model_path)
    ext = EXTENSIONS.get(extension)()
    e = predict_peak(cfg, runner, ext, ext.resolve(ext.parse(params), cfg), tokens, NEW_TOKENS, {"device": "cpu"})
    return {"weights": e.weights, "cache": e.cache, "activations": e.activations, "allocator": e.allocator,
            "runtime": e.runtime,
            "total": e.total, "path": e.path, "terms": [list(t) for t in e.terms]}


def mib(n: int) -> str:
    return f"{n / 2**20:,.0f}"


def table(rows: list[dict]) -> str:
    out = ["| model | runner | extension | length | prompt tokens | weights | KV cache | activations (path) | "
           "allocator | runtime | predicted | measured | measured / predicted | ±25 % |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        b, rec = r["breakdown"], r["record"]
        ratio = rec["peak_mem_bytes"] / b["total"]
        err = abs(b["total"] - rec["peak_mem_bytes"]) / rec["peak_mem_bytes"]
        out.append(f"| {r['model']} | {r['runner']} | {r['extension']} | {r['length']:,} | {rec['tokens']:,} | "
                   f"{mib(b['weights'])} | {mib(b['cache'])} | {mib(b['activations'])} ({b['path']}) | "
                   f"{mib(b['allocator'])} | {mib(b['runtime'])} | **{mib(b['total'])}** | "
                   f"**{mib(rec['peak_mem_bytes'])}** | {ratio:.2f} | {'yes' if err <= 0.25 else 'MISS'} |")
    return "\n".join(out) + ("\n\nSizes in MiB. measured = the record's peak_mem_bytes (peak RSS of the request, "
                             "from the kernel's high-water mark); ±25 %: |predicted − measured| ≤ 0.25 · measured.\n")


def main() -> None:
    from harness.config import parse_length
    from harness.models import resolve_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/memory_table")
    ap.add_argument("--max-length", default="32k", help="skip longer points")
    ap.add_argument("--held-out", action="store_true", help="also the HELD_OUT series")
    ap.add_argument("--skip", default="", help="comma list of LABEL@LENGTH to leave out, e.g. "
                                               "'smollm2 kernel selfextend@32k'")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = out / "points.json"
    done = json.loads(store.read_text()) if store.exists() else {}
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    longest = parse_length(args.max_length)
    bloom = bloom_checkpoint(out)
    series = SERIES + (HELD_OUT if args.held_out else [])
    plan = sorted(((k, label, model, runner, ext, params) for label, model, runner, ext, params, ks in series
                   for k in ks), key=lambda p: (p[0] if p[2] != "bloom" else 0, p[1]))
    for k, label, model, runner, ext, params in plan:
        key = f"{label}@{k}k"
        if key in done or key in skip or k * 1024 > longest:
            continue
        path = bloom if model == "bloom" else model
        print(f"{key} ...", end=" ", flush=True)
        res = measure(path, runner, ext, params, k * 1024, out / "runs")
        if "error" in res:
            print(f"failed: {res['error']}")
            continue
        rec = res["record"]
        model_path = resolve_model(path, log=lambda *_: None).path
        done[key] = {"label": label, "model": "Bloom baseline" if model == "bloom" else model, "runner": runner,
                     "extension": ext, "length": k * 1024, "wall_s": res["wall_s"], "record": {
                         f: rec[f] for f in ("tokens", "peak_mem_bytes", "predicted_peak_bytes", "cache_bytes",
                                             "prefill_s", "kernel", "mem_kind")},
                     "breakdown": breakdown(model_path, runner, ext, params, rec["tokens"])}
        store.write_text(json.dumps(done, indent=1))
        print(f"predicted {mib(rec['predicted_peak_bytes'])} MiB, measured {mib(rec['peak_mem_bytes'])} MiB "
              f"({res['wall_s']} s)", flush=True)
    labels = [s[0] for s in SERIES + HELD_OUT]
    rows = sorted(done.values(), key=lambda r: (labels.index(r["label"]), r["length"]))
    for r in rows:  # the breakdown as the current model computes it (the record keeps what was predicted then)
        _, model, runner, ext, params, _ = next(s for s in SERIES + HELD_OUT if s[0] == r["label"])
        path = resolve_model(bloom if model == "bloom" else model, log=lambda *_: None).path
        r["breakdown"] = breakdown(path, runner, ext, params, r["record"]["tokens"])
    text = table(rows)
    (out / "table.md").write_text(text)
    print(text)
    print(f"machine: {os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")


if __name__ == "__main__":
    main()
