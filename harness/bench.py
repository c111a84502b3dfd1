"""`longctx bench`: every runner against the naive loop and the machine's floor, in one run.

One process, one machine state, one set of prompts (passkey, one shared haystack per length so that prefix reuse
applies), and per configuration: time per sample, prefill tokens/s, peak resident memory, KV/state bytes — and
the fraction of the *floor* it reaches. The floor of a request is its FLOPs over the fp32 GEMM rate measured at
the start of the same run:

    prefill FLOPs(T) = 2·P_lin·T  +  2·V·H  +  2·d·h·L·T(T+1)
                       linear layers (P_lin weights of the blocks' Linear modules; the LM head for the last position
                       only), and causal attention: T(T+1)/2 (query, key) pairs per head and layer, each a d-long
                       dot product for QK and one for PV (4d FLOPs a pair).
    decode FLOPs at position t = 2·P_lin + 2·V·H + 4·d·h·L·(t+1).
With a reused prefix of c tokens the linear term counts T − c tokens and attention the pairs of queries c … T−1.
Recurrent models (Mamba) get the linear term only (their scan is O(T·state), not counted): a floor they may beat.

Configurations (each loaded alone, freed before the next, so resident memory is its own):
  naive      what the public NIAH / YaRN scripts do: tokenize, `model.generate(ids, max_new_tokens, greedy)`, fp32,
             transformers' defaults (SDPA attention; transformers ≥ 4.45 already keeps only the last position's logits
             in generate's prefill, so "full logits" no longer happens by default — recorded as measured);
  hf         the HF runner;              kernel     the kernel runner;
  kernel+reuse  the kernel runner with -R prefix_cache=true, deepest needle first (its chunk after the cached
             prefix runs on kernels/cpu: SDPA would need an explicit mask, which takes its slow path);
  hf+reuse   the HF runner with prefix reuse: correct, but transformers' SDPA attention masks the chunk after the
             cache and runs slower than a whole prefill (measured: 130 s vs 65 s at 16k) — not in the default set;
  vllm       the vLLM runner (when installed);
  mamba      the Mamba runner on the checkpoint given with --mamba (its own tokenizer, so its own prompts);
  kernel+diagnostics  the kernel runner with --diagnostics first (per-head rows read at the answer's first token):
             its cost against `kernel` is the diagnostics' overhead.
The grid configurations (naive, hf, hf+reuse, kernel+reuse) run every depth; the others one depth (0.5) per length.
bench.json is rewritten after every configuration, so a long bench that stops keeps what it measured.
"""
from __future__ import annotations

import dataclasses
import gc
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness.errors import UserError

# bench configuration → (runner, its options beyond float32, prompts: "grid" (every depth) or "single" (depth 0.5));
# "naive" is transformers' generate loop, not a runner; "mamba" runs --mamba's checkpoint on its own prompts
RUNS = {"hf": ("hf", {}, "grid"), "hf+reuse": ("hf", {"prefix_cache": True}, "grid"),
        "kernel+reuse": ("kernel", {"prefix_cache": True}, "grid"), "kernel": ("kernel", {}, "single"),
        "vllm": ("vllm", {}, "single"), "mamba": ("mamba", {}, "single"),
        "kernel+diagnostics": ("kernel", {"diagnostics": "first"}, "single")}
GRID_CONFIGS = ("naive", *(k for k, (_, _, prompts) in RUNS.items() if prompts == "grid"))
REUSE_CONFIGS = tuple(k for k, (_, opts, _) in RUNS.items() if opts.get("prefix_cache"))
CONFIGS = ("naive", *RUNS)
DEFAULT_LENGTHS = (2048, 4096, 8192, 16384)
GRID_DEPTHS = (0.1, 0.3, 0.5, 0.7, 0.9)


@dataclass(frozen=True)
class BenchPlan:
    model: str = "smollm2"
    lengths: tuple[int, ...] = DEFAULT_LENGTHS
    depths: tuple[float, ...] = GRID_DEPTHS
    configs: tuple[str, ...] = ("naive", "hf", "kernel+reuse", "vllm")
    mamba: str | None = None
    gemm_seconds: float = 4.0
    quick: bool = False

    @classmethod
    def quick_plan(cls, model: str = "smollm2", mamba: str | None = None) -> "BenchPlan":
        """Under 2 minutes on 2 cores: 2k only, three depths, no vLLM (its engine start alone takes ~1 min)."""
        return cls(model=model, lengths=(2048,), depths=(0.1, 0.5, 0.9), configs=("naive", "hf", "kernel+reuse", "kernel"),
                   mamba=mamba, gemm_seconds=1.0, quick=True)


# ---------------------------------------------------------------------------------------------------------- FLOPs

def gemm_rate(seconds: float = 4.0, model_dims: tuple[int, int] | None = None) -> dict:
    """The machine's fp32 GEMM rate: the best of a 2048² square product and, when given (hidden, intermediate),
    the model's own MLP shape at 4,096 tokens, each repeated for about seconds / 2."""
    import torch

    shapes = [("square 2048", 2048, 2048, 2048)]
    if model_dims:
        h, i = model_dims
        shapes.append((f"4096×{h} @ {h}×{i}", 4096, h, i))
    out = {"threads": torch.get_num_threads(), "shapes": {}}
    for name, m, k, n in shapes:
        a, b = torch.randn(m, k), torch.randn(k, n)
        torch.mm(a, b)  # warm-up
        best, spent = float("inf"), 0.0
        while spent < seconds / len(shapes) or best == float("inf"):
            t0 = time.perf_counter()
            torch.mm(a, b)
            dt = time.perf_counter() - t0
            best, spent = min(best, dt), spent + dt
        out["shapes"][name] = round(2 * m * k * n / best / 1e9, 1)
    out["gflops"] = max(out["shapes"].values())
    return out


# -------------------------------------------------------------------------------------------------------- running

@dataclass
class Measured:
    config: str
    length: int
    depth: float
    tokens: int
    latency_s: float
    prefill_s: float | None
    cached_tokens: int
    peak_bytes: int | None
    cache_bytes: int | None
    new_tokens: int
    prediction: str
    correct: bool
    floor_s: float = 0.0  # this request's FLOPs over the GEMM rate
    prefill_floor_s: float = 0.0


@dataclass
class ConfigResult:
    config: str
    load_s: float
    samples: list[Measured] = field(default_factory=list)
    skipped: str | None = None  # why it did not run


def _samples(tokenizer, plan: BenchPlan, lengths, depths):
    from evals.base import TaskConfig
    from evals.passkey import PasskeyTask

    task = PasskeyTask(TaskConfig(lengths=tuple(lengths), depths=tuple(depths), shared_haystack=True))
    from harness.experiment import reuse_order

    return [task.sample(tokenizer, n, d, i) for n, d, i in reuse_order(list(task.cells()))], task


def _free() -> None:
    gc.collect()


def _run_naive(model_path: str, samples, task, log) -> ConfigResult:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.measure import PeakMemory

    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model.eval()
    result = ConfigResult("naive", load_s=time.perf_counter() - t0)
    for s in samples:
        with PeakMemory("cpu") as pm:
            t0 = time.perf_counter()
            enc = tokenizer(s.prompt, return_tensors="pt")
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=s.max_new_tokens, do_sample=False)
            latency = time.perf_counter() - t0
        new = out[0, enc["input_ids"].shape[1]:]
        text = tokenizer.decode(new, skip_special_tokens=True)
        result.samples.append(Measured("naive", s.context_length, s.depth, s.tokens, latency, None, 0, pm.peak, None,
                                       len(new), text, task.score(s, text).correct))
        log(f"  naive {s.context_length} d={s.depth}: {latency:.1f} s")
    del model
    _free()
    return result


def _run_runner(name: str, model_path: str, samples, task, log, runner_name: str, options: dict,
                extension: str = "none") -> ConfigResult:
    from extensions import EXTENSIONS
    from harness.runners import RUNNERS
    from harness.runners.base import GenerationRequest

    ext = EXTENSIONS.get(extension)()
    from transformers import AutoConfig

    ext_cfg = ext.resolve(ext.parse({}), AutoConfig.from_pretrained(model_path))
    t0 = time.perf_counter()
    options = dict(options)
    diagnostics = options.pop("diagnostics", None)
    runner = RUNNERS.get(runner_name)(**options)
    if diagnostics:
        runner.diagnostics = diagnostics
    runner.load(model_path, ext, ext_cfg, max_length=max(s.context_length for s in samples))
    result = ConfigResult(name, load_s=time.perf_counter() - t0)
    try:
        from evals.base import needle_span

        for s in samples:
            needle = needle_span(runner.tokenizer, s) if diagnostics else None
            (g,) = runner.generate([GenerationRequest(s.prompt, s.max_new_tokens, needle=needle)])
            if g.error:
                raise RuntimeError(g.error)
            result.samples.append(Measured(
                name, s.context_length, s.depth, g.prompt_tokens or s.tokens, g.latency_s, g.prefill_s,
                g.cached_tokens or 0, g.peak_mem_bytes, g.cache_bytes, g.new_tokens, g.text,
                task.score(s, g.text).correct))
            log(f"  {name} {s.context_length} d={s.depth}: {g.latency_s:.1f} s"
                + (f" ({g.cached_tokens} tokens reused)" if g.cached_tokens else ""))
    finally:
        runner.close()
        del runner
        _free()
    return result


def run_bench(plan: BenchPlan, out: Path, log: Callable[[str], None] = print) -> dict:
    """Run every configuration of `plan`, write OUT/bench.json and OUT/bench.md, return the JSON document."""
    import torch
    from transformers import AutoConfig, AutoTokenizer

    from harness.errors import UserError
    from harness.manifest import git_sha, machine, package_versions
    from harness.models import resolve_model
    from harness.runners import RUNNERS

    out.mkdir(parents=True, exist_ok=True)
    path = resolve_model(plan.model, log=log).path
    hf_config = AutoConfig.from_pretrained(path)
    from harness.memory import FlopCount

    shape = FlopCount.of(hf_config)
    tokenizer = AutoTokenizer.from_pretrained(path)
    rate = gemm_rate(plan.gemm_seconds, (hf_config.hidden_size, getattr(hf_config, "intermediate_size", 0) or
                                         4 * hf_config.hidden_size))
    log(f"fp32 GEMM: {rate['gflops']} GFLOP/s ({rate['threads']} threads; {rate['shapes']})")
    flop_rate = rate["gflops"] * 1e9

    grid, task = _samples(tokenizer, plan, plan.lengths, plan.depths)
    single, _ = _samples(tokenizer, plan, plan.lengths, (0.5,))
    mamba_shape = FlopCount.of(AutoConfig.from_pretrained(resolve_model(plan.mamba, log=log).path)) \
        if plan.mamba else None
    results: list[ConfigResult] = []

    def write() -> dict:
        """bench.json and bench.md of what has been measured so far (after every configuration)."""
        for r in results:
            s_shape = mamba_shape if (r.config == "mamba" and mamba_shape) else shape
            for m in r.samples:
                m.prefill_floor_s = s_shape.prefill_flops(m.tokens, m.cached_tokens) / flop_rate
                m.floor_s = m.prefill_floor_s + s_shape.decode_flops(m.tokens, m.new_tokens) / flop_rate
        doc = {
            "schema": 1, "model": plan.model, "model_path": path, "quick": plan.quick,
            "lengths": list(plan.lengths), "depths": list(plan.depths), "gemm": rate,
            "shape": dataclasses.asdict(shape), "mamba": plan.mamba,
            "mamba_shape": dataclasses.asdict(mamba_shape) if mamba_shape else None,
            "machine": machine(), "git_sha": git_sha(), "packages": package_versions(),
            "torch_threads": torch.get_num_threads(), "weights_bytes": shape.params * 4,
            "complete": len(results) == len(plan.configs),
            "configs": [{"config": r.config, "load_s": round(r.load_s, 2), "skipped": r.skipped,
                         "weights_bytes": (mamba_shape if r.config == "mamba" and mamba_shape else shape).params * 4,
                         "samples": [dataclasses.asdict(m) for m in r.samples]} for r in results],
        }
        doc["summary"] = summarize(doc)
        for name, text in (("bench.json", json.dumps(doc, indent=1) + "\n"), ("bench.md", markdown(doc))):
            tmp = out / (name + ".tmp")
            tmp.write_text(text)
            tmp.replace(out / name)
        return doc

    for name in plan.configs:
        log(f"{name}:")
        if name == "naive":
            results.append(_run_naive(path, grid, task, log))
            write()
            continue
        runner, opts, prompts = RUNS[name]
        try:  # a runner whose package is missing is skipped, saying why
            missing = getattr(RUNNERS.get(runner), "missing", lambda: None)()
        except UserError as e:
            missing = str(e)
        if missing:
            results.append(ConfigResult(name, 0.0, skipped=missing))
            write()
            continue
        samples, its_task, its_path = (grid if prompts == "grid" else single), task, path
        if name == "mamba":  # its own checkpoint and tokenizer, so its own prompts
            its_path = resolve_model(plan.mamba, log=log).path
            samples, its_task = _samples(AutoTokenizer.from_pretrained(its_path), plan, plan.lengths, (0.5,))
        results.append(_run_runner(name, its_path, samples, its_task, log, runner, {"dtype": "float32", **opts}))
        write()
    return write()


# -------------------------------------------------------------------------------------------------------- summary

def summarize(doc: dict) -> dict:
    """Per (config, length): seconds per sample, prefill tokens/s, fraction of the floor, peak memory; per length:
    the grid's end-to-end time per grid configuration, the reuse saving measured against the FLOP count's."""
    rows = []
    grids = {}
    for c in doc["configs"]:
        by_len: dict[int, list] = {}
        for m in c["samples"]:
            by_len.setdefault(m["length"], []).append(m)
        for n, ms in sorted(by_len.items()):
            # prefill time (the whole request where a runner cannot separate it), and its floor: the FLOPs of the
            # tokens it actually computed (a reused prefix costs nothing) at the GEMM rate
            prefill = [m["prefill_s"] if m["prefill_s"] is not None else m["latency_s"] for m in ms]
            row = {
                "config": c["config"], "length": n, "samples": len(ms), "weights_bytes": c["weights_bytes"],
                "correct": sum(m["correct"] for m in ms),
                "s_per_sample": sum(m["latency_s"] for m in ms) / len(ms),
                "prefill_s": sum(prefill) / len(ms),
                "prefill_floor_s": sum(m["prefill_floor_s"] for m in ms) / len(ms),
                "prefill_measured": "request" if ms[0]["prefill_s"] is None else "prefill",
                "tokens": round(sum(m["tokens"] for m in ms) / len(ms)),
                "reused": sum(m["cached_tokens"] for m in ms) / sum(m["tokens"] for m in ms),
                "peak_bytes": max((m["peak_bytes"] for m in ms if m["peak_bytes"]), default=None),
                "cache_bytes": max((m["cache_bytes"] for m in ms if m["cache_bytes"]), default=None),
            }
            row["prefill_tok_s"] = sum(m["tokens"] - m["cached_tokens"] for m in ms) / sum(prefill)
            row["floor_fraction"] = row["prefill_floor_s"] / row["prefill_s"]  # 1 = the floor; > 1 beats the count
            rows.append(row)
            if c["config"] in GRID_CONFIGS and len(ms) > 1:
                grids.setdefault(n, {})[c["config"]] = {
                    "seconds": sum(m["latency_s"] for m in ms), "floor_s": sum(m["floor_s"] for m in ms),
                    "samples": len(ms), "predictions": [m["prediction"] for m in
                                                        sorted(ms, key=lambda m: m["depth"])]}
    for n, g in grids.items():
        if "naive" in g:
            for k in g:
                g[k]["speedup_vs_naive"] = g["naive"]["seconds"] / g[k]["seconds"]
        for k in REUSE_CONFIGS:  # against the HF runner's grid without reuse (the kernel runner's plain causal
            if "hf" in g and k in g:  # attention is the same SDPA)
                g[k]["reuse_saving"] = {"measured": g[k]["seconds"] / g["hf"]["seconds"],
                                        "flops": g[k]["floor_s"] / g["hf"]["floor_s"],
                                        "same_answers": g[k]["predictions"] == g["hf"]["predictions"]}
        for k in GRID_CONFIGS:
            if k in g:
                g[k]["of_floor"] = g[k]["seconds"] / g[k]["floor_s"]  # ≥ 1: how far above its own floor
    by = {(r["config"], r["length"]): r for r in rows}
    overhead = {str(n): by["kernel+diagnostics", n]["s_per_sample"] / by["kernel", n]["s_per_sample"]
                for c, n in by if c == "kernel+diagnostics" and ("kernel", n) in by}
    return {"rows": rows, "grids": {str(n): g for n, g in sorted(grids.items())}, "diagnostics_overhead": overhead}


def _gib(b) -> str:
    return "—" if b is None else f"{b / 2**30:.2f}"


def markdown(doc: dict) -> str:
    """The bench as Markdown: ratios first (fraction of the floor, speed-up over the naive loop), then absolutes."""
    from harness.config import format_length

    s = doc["summary"]
    mach = doc["machine"]
    lines = [f"Machine: {mach.get('cpu', mach.get('processor'))}, {mach.get('cpu_count')} cores, "
             f"{doc['torch_threads']} torch threads; fp32 GEMM {doc['gemm']['gflops']} GFLOP/s measured in this run "
             f"({', '.join(f'{k}: {v}' for k, v in doc['gemm']['shapes'].items())}). Model {doc['model']} "
             f"({doc['shape']['params'] / 1e6:.0f} M parameters, weights {_gib(doc['weights_bytes'])} GiB fp32); "
             f"git {doc['git_sha'] or '?'}.", ""]
    lines += ["| config | length | floor fraction | prefill tok/s | prefill s | floor s | reused | s / sample | found | "
              "peak GiB | KV GiB | peak − weights − KV |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in s["rows"]:
        tag = "\\*" if r["prefill_measured"] == "request" else ""
        ratio = (f"{r['floor_fraction']:.2f}{tag} | {r['prefill_tok_s']:.0f} | {r['prefill_s']:.2f} | "
                 f"{r['prefill_floor_s']:.2f} | {r['reused']:.0%}")
        over = (r["peak_bytes"] - r["weights_bytes"] - (r["cache_bytes"] or 0)) if r["peak_bytes"] else None
        lines.append(f"| {r['config']} | {format_length(r['length'])} | {ratio} | {r['s_per_sample']:.2f} | "
                     f"{r['correct']}/{r['samples']} | {_gib(r['peak_bytes'])} | {_gib(r['cache_bytes'])} | "
                     f"{_gib(over)} |")
    lines += ["", "Floor fraction = (FLOPs of the prefilled tokens / GEMM rate) / measured prefill time, means over "
              "the samples: 1.00 is the floor (a reused prefix is neither timed nor counted; `reused` = the share of "
              "prompt tokens served from a kept cache). prefill tok/s counts the tokens computed. \\* the naive loop "
              "and vLLM do not report their prefill: the whole request is timed.", ""]
    if s["grids"]:
        lines += [f"Depth grid ({len(doc['depths'])} depths, one shared haystack per length), end to end; each reuse "
                  "configuration against the naive loop, against its own floor (the FLOPs left after reuse at the "
                  "GEMM rate), and its time and FLOPs as fractions of the HF runner's grid without reuse:", "",
                  "| length | configuration | grid s | vs naive | / its floor | time vs hf | FLOPs vs hf | "
                  "same answers as hf |", "|---:|---|---:|---:|---:|---:|---:|---|"]
        for n, g in s["grids"].items():
            for k in GRID_CONFIGS:
                if k not in g:
                    continue
                rs = g[k].get("reuse_saving")
                lines.append(
                    f"| {format_length(int(n))} | {k} | {g[k]['seconds']:.1f} | "
                    + (f"{g[k]['speedup_vs_naive']:.2f}×" if "speedup_vs_naive" in g[k] else "—")
                    + f" | {g[k]['of_floor']:.2f}× | "
                    + (f"{rs['measured']:.2f} | {rs['flops']:.2f} | {'yes' if rs['same_answers'] else 'NO'} |"
                       if rs else "— | — | — |"))
        lines.append("")
    for n, ratio in s.get("diagnostics_overhead", {}).items():
        lines.append(f"- diagnostics at {format_length(int(n))}: kernel+diagnostics takes {ratio:.3f}× the kernel "
                     "runner's time per sample")
    skipped = [c for c in doc["configs"] if c["skipped"]]
    for c in skipped:
        lines.append(f"- {c['config']}: not run — {c['skipped']}")
    return "\n".join(lines) + "\n"


def parse_configs(text: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    for n in names:
        if n not in CONFIGS:
            from harness.errors import unknown_name

            raise unknown_name("bench configuration", n, list(CONFIGS))
    if not names:
        raise UserError("--configs names no configuration")
    return names
