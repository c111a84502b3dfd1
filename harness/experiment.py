"""The experiment loop: task × (model, extension, runner) → records in a run directory.

Order of work, so that mistakes cost nothing: parse and validate everything (task grid, extension parameters,
runner/extension compatibility) → resolve the model and its tokenizer → open (or resume) the run directory →
load the model only if samples remain → generate, score and append one record per sample.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from harness.errors import UserError
from harness.records import RunDir, SampleRecord, sample_key


@dataclass(frozen=True)
class Experiment:
    """One experiment command, fully resolved (this is what run.json's identity and invocations are made of)."""

    task: str
    task_config: Any  # the task's frozen config dataclass
    model: str  # as given on the command line
    extension: str = "none"
    extension_params: dict = field(default_factory=dict)
    runner: str = "hf"
    runner_options: dict = field(default_factory=dict)  # constructor keywords of the runner (dtype, device ...)
    out: str = "runs/out"
    max_memory: int | None = None  # bytes a request may peak at (refused above); None: the memory available now
    diagnostics: str | None = None  # per-head attention diagnostics: "first" answer token's row, or every "answer" row
    ablate_heads: str | None = None  # heads whose outputs are zeroed: "top:K" (with heads_from), "random:K[:SEED]", "L.H,..."
    heads_from: str | None = None  # the diagnostics run whose retrieval scores rank the heads for top:K


@dataclass
class Prepared:
    """Everything checked and resolved before a model is loaded."""

    experiment: Experiment
    task: Any
    extension: Any
    extension_config: Any
    runner_cls: Any
    model_path: str
    tokenizer: Any
    hf_config: Any
    support: str = ""  # harness.support's verdict for this method on this runner and model (recorded in run.json)
    ablated: tuple = ()  # (layer, head) pairs whose outputs are zeroed, resolved from --ablate-heads

    def predicted_peak(self, length: int, new_tokens: int | None = None):
        """harness.memory's prediction (a MemoryEstimate, or None for runners it does not model) for a prompt of
        `length` tokens followed by `new_tokens` generated ones (default: the task's budget, counted inside the
        length); token-scoring tasks: one document of `length` tokens."""
        from harness.memory import predict_peak

        exp = self.experiment
        if self.task.scores_tokens:
            return predict_peak(self.hf_config, exp.runner, self.extension, self.extension_config, length,
                                runner_options=exp.runner_options, scoring=True)
        budget = getattr(exp.task_config, "max_new_tokens", None) or 1
        if new_tokens is None:
            length, new_tokens = max(1, length - budget), budget
        return predict_peak(self.hf_config, exp.runner, self.extension, self.extension_config, length, new_tokens,
                            runner_options=exp.runner_options)


def prepare(exp: Experiment, log: Callable[[str], None] = print, build_prompts: bool = True) -> Prepared:
    """Check and resolve everything before a model is loaded; `build_prompts=False` leaves out the task's own check
    (it builds the shortest length's prompt: minutes at millions of tokens), for callers that size the grid
    first and then call `p.task.check(p.tokenizer)`."""
    from extensions import EXTENSIONS
    from evals.registry import make_task
    from harness.models import resolve_model
    from harness.runners import RUNNERS, check_hostable, check_runner_options

    task = make_task(exp.task, exp.task_config)
    extension = EXTENSIONS.get(exp.extension)()
    try:
        ext_config = extension.parse(dict(exp.extension_params))
    except (ValueError, TypeError) as e:
        raise UserError(f"extension {exp.extension}: {e}") from None
    ref = resolve_model(exp.model, log=log)
    tokenizer, hf_config = load_tokenizer_and_config(ref.path)
    from harness.profile import read_profile
    from harness.support import require

    profile = read_profile(hf_config)
    notes = []  # said once every check has passed: a refusal is one line, not a note and then the error
    if exp.runner == "hf" and profile.recurrent_only:
        notes.append(f"{exp.model} is a {hf_config.model_type} checkpoint with recurrent layers only: using the "
                     "mamba runner")
        exp = dataclasses.replace(exp, runner="mamba")
    runner_cls = RUNNERS.get(exp.runner)
    if task.scores_tokens and not runner_cls.capabilities.scores_tokens:
        raise UserError(f"task {exp.task!r} scores tokens, which runner {exp.runner!r} cannot; use hf or kernel")
    check_runner_options(exp.runner, exp.runner_options)
    check_hostable(exp.runner, exp.extension, exp.runner_options)
    if exp.diagnostics or exp.ablate_heads or exp.heads_from:
        check_diagnostics(exp, task, runner_cls, profile)
    ablated = resolve_ablation(exp, hf_config)
    verdict = require(profile, extension, ext_config, runner_cls, exp.runner_options)  # refusals: one line
    if verdict.notes:
        notes.append(f"{exp.extension} on {exp.runner} for this {profile.model_type} model: {verdict.line()}")
    if exp.runner_options.get("prefix_cache"):  # as the runners read it (HFRunner.check)
        from harness.runners.cache import check_prefix_reuse

        check_prefix_reuse(hf_config)
    try:
        ext_config = extension.resolve(ext_config, hf_config)
    except ValueError as e:
        raise UserError(f"extension {exp.extension}: {e}") from None
    if getattr(exp.task_config, "max_new_tokens", 0) is None:  # the task's own budget, recorded as resolved
        exp = dataclasses.replace(exp, task_config=dataclasses.replace(exp.task_config,
                                                                       max_new_tokens=task.max_new_tokens))
    p = Prepared(exp, task, extension, ext_config, runner_cls, ref.path, tokenizer, hf_config, verdict.line(),
                 ablated)
    check_memory(p)  # arithmetic only: before any prompt is built (a 1M-token prompt takes minutes)
    if build_prompts:
        task.check(tokenizer)
    for note in notes:
        log(note)
    return p


def check_diagnostics(exp: Experiment, task, runner_cls, profile) -> None:
    """Refuse, in one line, diagnostics a run cannot give: another mode, a token-scoring task, a runner that does not
    read attention rows (vLLM, Mamba), a model whose attention is its own code outside transformers' interface."""
    from harness.runners.diagnostics import MODES

    what = "--diagnostics" if exp.diagnostics else "--ablate-heads"
    if exp.diagnostics and exp.diagnostics not in MODES:
        raise UserError(f"--diagnostics {exp.diagnostics!r}: choose {' or '.join(MODES)}")
    if exp.diagnostics and task.scores_tokens:
        raise UserError(f"--diagnostics reads the rows that write an answer; task {exp.task!r} scores tokens")
    if not runner_cls.capabilities.diagnoses:
        raise UserError(f"runner {exp.runner!r} cannot give per-head diagnostics or ablate heads (its attention runs "
                        "out of longctx's reach); use -r hf or -r kernel")
    if profile.recurrent_only:
        raise UserError(f"this {profile.model_type} checkpoint has no attention to diagnose")
    if profile.attention_modules and not profile.through_interface:
        raise UserError(f"this {profile.model_type} model's attention is its own code, outside transformers' "
                        f"attention interface: {what} cannot reach it")


def resolve_ablation(exp: Experiment, hf_config) -> tuple:
    """The (layer, head) pairs --ablate-heads names on this model, checked (one line on any mistake)."""
    if not exp.ablate_heads:
        if exp.heads_from:
            raise UserError("--heads-from is read by --ablate-heads top:K only")
        return ()
    from harness.runners.diagnostics import chosen_heads

    layers = getattr(hf_config, "num_hidden_layers", None)
    heads = getattr(hf_config, "num_attention_heads", None)
    if not layers or not heads:
        raise UserError(f"this {hf_config.model_type} config does not say its layers and heads; --ablate-heads "
                        "cannot name them")
    try:
        return tuple(chosen_heads(exp.ablate_heads, exp.heads_from, int(layers), int(heads)))
    except ValueError as e:
        raise UserError(str(e)) from None


def check_memory(p: Prepared) -> None:
    """Refuse, before any directory is written or model loaded, an experiment whose longest length is predicted to
    peak above --max-memory (default: the memory available now), naming the largest length of its grid that fits."""
    from harness.memory import available_memory, format_bytes

    exp = p.experiment
    lengths = sorted(set(exp.task_config.lengths))
    if p.task.scores_tokens and not getattr(exp.task_config, "sliding_window", False):
        lengths = lengths[-1:]  # one forward at the longest length serves every bucket
    estimate = p.predicted_peak(lengths[-1])
    if estimate is None:
        return
    budget = exp.max_memory
    if budget is None:
        budget = available_memory(str(exp.runner_options.get("device") or "cpu"))
        where = "the memory available now (--max-memory)"
    else:
        where = "--max-memory"
    if budget is None or estimate.total <= budget:
        return
    totals = {n: p.predicted_peak(n).total for n in lengths}
    fits = [n for n in lengths if totals[n] <= budget]
    if fits:
        hint = f"the largest length of this grid that fits is {fits[-1]} ({format_bytes(totals[fits[-1]])})"
    else:
        hint = f"no length of this grid fits (the shortest, {lengths[0]}, needs {format_bytes(totals[lengths[0]])})"
    raise UserError(f"predicted peak memory at {lengths[-1]} tokens is {estimate.describe()}, above {where} "
                    f"{format_bytes(budget)}; {hint}")


def load_tokenizer_and_config(path: str):
    from transformers import AutoConfig, AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path), AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load a tokenizer and config from {path}: {str(e).splitlines()[0]}") from None


GRID = ("lengths", "depths", "samples", "documents")  # task-config fields that may grow between invocations
# settings added later → their default: absent from the identity while at it, so older runs still resume
OPT_IN = {"shared_haystack": False, "prompt_format": "base", "answer_prefix": True, "thinking_tokens": 0,
          "style": "longctx"}


def identity(p: Prepared) -> dict:
    """The fields that give records their meaning; resuming a run directory requires them unchanged."""
    tc = dataclasses.asdict(p.experiment.task_config)
    return {
        "task": p.experiment.task,
        "task_config": {k: v for k, v in tc.items() if k not in GRID and not (k in OPT_IN and v == OPT_IN[k])},
        "model": p.experiment.model,
        "model_path": p.model_path,
        "extension": p.experiment.extension,
        "extension_params": p.extension_config.params(),
        "runner": p.experiment.runner,
        "runner_options": dict(p.experiment.runner_options),
        **({"ablate_heads": p.experiment.ablate_heads, "ablated_heads": ablated_text(p.ablated)} if p.ablated else {}),
    }


def ablated_text(heads) -> str:
    return ",".join(f"{la}.{h}" for la, h in heads)


def run(exp: Experiment, log: Callable[[str], None] = print, progress: bool = True,
        runner: Any = None, confirm: Callable[[str], bool] | None = None) -> Path:
    """Run (or resume) an experiment; returns the run directory. `runner` injects an instance (tests); `confirm`
    is asked before a large grid starts (`check_size`)."""
    p, rd, todo = open_run(exp, log, confirm)
    exp = p.experiment
    if not todo:
        return rd.path
    runner = configure_runner(runner, p) if runner is not None else new_runner(p)
    info = runner.load(p.model_path, p.extension, p.extension_config, max_length=max(c[0] for c in todo))
    log(f"loaded {exp.model} on {exp.runner} ({info.dtype}, {info.device}); extension: "
        f"{p.extension.describe(p.extension_config)}")
    rd.note_load({**dataclasses.asdict(info), "support": p.support})
    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc=f"{exp.task}", unit="sample", disable=not progress, file=sys.stderr)
    common = record_fields(p, info)
    try:
        if p.task.scores_tokens:
            _score_tokens(p, runner, rd, todo, common, bar, info.device)
            written = []
        else:
            written = write_generated(p, runner, rd, todo, common, bar, log)
    finally:
        bar.close()
        runner.close()
    check_errored(written, rd.path)
    return rd.path


def new_runner(p: Prepared):
    """The runner of a prepared experiment, constructed from its options, told to diagnose where asked."""
    return configure_runner(p.runner_cls(**p.experiment.runner_options), p)


def configure_runner(runner, p: Prepared):
    """Tell a runner, before it loads, to diagnose and which heads to ablate (runners that do neither are refused
    before this: check_diagnostics)."""
    if p.experiment.diagnostics:
        runner.diagnostics = p.experiment.diagnostics
    if p.ablated:
        from harness.runners.diagnostics import by_layer

        runner.ablate = by_layer(list(p.ablated))
    return runner


LARGE_GRID_SAMPLES = 2000  # samples to do above which a command says its estimate and asks (--yes: do not ask)
LARGE_GRID_HOURS = 12.0  # ... or hours of fp32 compute (at FLOOR_GFLOPS) above which it does
FLOOR_GFLOPS = 120.0  # fp32 GEMM rate of the slower 2-core CPU measured (docs/BENCHMARKS.md): an estimate, not a bound


def grid_cost(prepared: list, todos: list) -> tuple[int, float | None]:
    """(samples still to do, hours their FLOPs take at FLOOR_GFLOPS on CPU) over experiments; hours
    None where the FLOP count cannot be read (a model the cost model does not know) or a GPU runs them."""
    from collections import Counter

    from harness.memory import FlopCount

    n, seconds = sum(len(t) for t in todos), 0.0
    for p, todo in zip(prepared, todos):
        if not todo:
            continue
        if str(p.experiment.runner_options.get("device") or "cpu").startswith("cuda"):
            return n, None
        try:
            fc = FlopCount.of(p.hf_config)
        except Exception:  # noqa: BLE001 - an estimate only; the run itself is checked elsewhere
            return n, None
        budget = 0 if p.task.scores_tokens else (getattr(p.experiment.task_config, "max_new_tokens", None) or 1)
        for length, count in Counter(c[0] for c in todo).items():
            prompt = max(1, length - budget)
            flops = fc.prefill_flops(prompt) + (fc.decode_flops(prompt, budget) if budget else 0.0)
            seconds += count * flops / (FLOOR_GFLOPS * 1e9)
    return n, seconds / 3600


def check_size(cost: tuple[int, float | None], confirm: Callable[[str], bool] | None, log) -> None:
    """A grid over LARGE_GRID_SAMPLES samples or LARGE_GRID_HOURS hours says so before it starts, and runs only if
    `confirm(message)` agrees (None: nobody to ask, so the estimate is said and the grid runs)."""
    n, hours = cost
    if n <= LARGE_GRID_SAMPLES and (hours is None or hours <= LARGE_GRID_HOURS):
        return
    about = f", about {hours:,.1f} h of fp32 compute at {FLOOR_GFLOPS:.0f} GFLOP/s (the slower of the 2-core CPUs " \
            "measured; their rates range 120-450)" if hours is not None else ""
    message = f"this grid has {n:,} samples to do{about}"
    if confirm is None:
        log(message)
    elif not confirm(message):
        raise UserError(f"not started: {message}; shrink --lengths / --samples, or add --yes to run it")


def check_errored(records: list, path) -> None:
    """Raise RunFailed when every sample of some length raised: an error is not a miss."""
    from collections import defaultdict

    from harness.errors import RunFailed

    by_length = defaultdict(list)
    for r in records:
        by_length[r.context_length].append(r)
    failed = {n: rs for n, rs in sorted(by_length.items()) if rs and all(r.error for r in rs)}
    if failed:
        n, rs = next(iter(failed.items()))
        raise RunFailed(f"every sample at {', '.join(map(str, failed))} tokens failed ({len(rs)} at {n}: "
                        f"{rs[0].error}); the errors are recorded in {path}/results.jsonl, not counted as misses")


def record_fields(p: Prepared, info) -> dict:
    """The fields every record of this experiment shares."""
    exp = p.experiment
    params = p.extension_config.params()
    label = p.extension.short_label(params) + (f" −heads {exp.ablate_heads}" if p.ablated else "")
    return dict(task=exp.task, model=exp.model, extension=exp.extension, extension_params=params,
                method_label=label, runner=exp.runner, dtype=info.dtype, model_max_position=info.model_max_position,
                **({"ablation": exp.ablate_heads, "ablated_heads": ablated_text(p.ablated)} if p.ablated else {}))


def open_run(exp: Experiment, log: Callable[[str], None] = print,
             confirm: Callable[[str], bool] | None = None) -> tuple[Prepared, RunDir, list]:
    """Check everything, open (or resume) the run directory, and list the cells still to do. Nothing is written
    here (the run directory's first write comes with the runner's load), and nothing is said before every check
    has passed."""
    from harness.manifest import git_sha, machine, package_versions

    p = prepare(exp, log=log, build_prompts=False)
    exp = p.experiment  # prepare may pick the runner (Mamba checkpoints)
    grid = {k: v for k, v in dataclasses.asdict(exp.task_config).items() if k in GRID}
    settings = {k: v for k, v in dataclasses.asdict(exp.task_config).items() if k not in GRID and v is not None}
    invocation = {"argv": sys.argv, "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                  "git_sha": git_sha(), "machine": machine(), "packages": package_versions(), "grid": grid}
    rd = RunDir.open(exp.out, identity(p), invocation)
    todo = [c for c in p.task.cells() if sample_key(p.task.name, c[0], c[1], c[2]) not in rd.done]
    check_size(grid_cost([p], [todo]), confirm, log)
    p.task.check(p.tokenizer)
    log(f"{exp.task}: model={exp.model} extension={p.extension.describe(p.extension_config)} runner={exp.runner} "
        + " ".join(f"{k}={list(v) if isinstance(v, tuple) else v}" for k, v in {**grid, **settings}.items())
        + f" -> {exp.out}")
    total = sum(1 for _ in p.task.cells())
    if not todo:
        log(f"all {total} samples already in {rd.path}; nothing to do")
    elif len(todo) < total:
        log(f"resuming {rd.path}: {total - len(todo)} of {total} samples done")
    return p, rd, todo


def _score_tokens(p: Prepared, runner, rd: RunDir, todo: list, common: dict, bar, device: str) -> None:
    """Token-scoring tasks (perplexity): one evaluation per document gives all its cells."""
    from harness.measure import PeakMemory

    wanted = {sample_key(p.task.name, *c) for c in todo}
    seed = p.experiment.task_config.seed
    predicted = _Predicted(p)
    for doc in sorted({c[2] for c in todo}):
        with PeakMemory(device) as pm:
            t0 = time.perf_counter()
            rows = p.task.evaluate(runner, p.tokenizer, doc)
            latency = time.perf_counter() - t0
        for row in rows:
            if sample_key(p.task.name, row["context_length"], None, doc) not in wanted:
                continue
            rd.append(SampleRecord(
                **common, **p.task.record_fields(), depth=None, sample_id=doc, seed=seed,
                tokens=row["forward_length"], context_length=row["context_length"],
                position_start=row["position_start"], scored_tokens=row["scored_tokens"],
                nll=round(row["nll"], 6), ppl=round(row["ppl"], 4), forward_length=row["forward_length"],
                latency_s=round(latency, 3), peak_mem_bytes=pm.peak, mem_kind=pm.kind,
                predicted_peak_bytes=predicted.get(row["forward_length"])))
            bar.update(1)


def write_generated(p: Prepared, runner, rd: RunDir, todo: list, common: dict, bar,
                    log) -> list[SampleRecord]:
    """Generation tasks: write each record as it is made (and fsync). Returns the records written."""
    written = []
    for record in generated_records(p, runner, todo, common, log, on_diagnostics=rd.append_diagnostics):
        rd.append(record)
        written.append(record)
        if bar is not None:
            bar.set_postfix_str(f"{record.context_length} tok: {'ok' if record.correct else 'miss'}")
            bar.update(1)
    return written


def reuse_order(cells: list) -> list:
    """Cells (length, depth, sample_id) in the order a prefix-reusing runner serves best: per (length, sample),
    deepest needle first, so each prompt shares everything before its needle with the one before it."""
    return sorted(cells, key=lambda c: (c[0], c[2], -(c[1] if c[1] is not None else 0.0)))


def generated_records(p: Prepared, runner, todo: list, common: dict, log,
                      on_diagnostics: Callable[[tuple, dict], None] | None = None) -> Iterator[SampleRecord]:
    """The record of every cell in `todo`: batches of prompts through the runner, each answer scored by the task.
    A runner failure (out of memory, a backend error) is recorded on the samples it hit, and the loop goes on.
    With --diagnostics, each sample's diagnostics go to `on_diagnostics(key, payload)` before its record is
    yielded."""
    from evals.base import needle_span
    from harness.runners.base import Generation, GenerationRequest

    batch_size = max(1, runner.capabilities.batch_size)
    predicted = _Predicted(p)
    if getattr(runner, "prefix_cache", False):
        todo = reuse_order(todo)
    for start in range(0, len(todo), batch_size):
        cells = todo[start:start + batch_size]
        samples = [p.task.formatted(p.tokenizer, *c) for c in cells]
        try:
            diagnose = p.experiment.diagnostics
            gens = runner.generate([GenerationRequest(
                s.prompt, s.max_new_tokens, request_id=str(i), answer=s.continuation if s.target else None,
                needle=needle_span(p.tokenizer, s) if diagnose else None) for i, s in enumerate(samples)])
        except (RuntimeError, MemoryError) as e:  # out of memory, a backend failure: record it, go on
            msg = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
            log(f"runner failed on {len(samples)} sample(s) at {samples[0].context_length} tokens: {msg}")
            gens = [Generation(text="", prompt_tokens=s.tokens, new_tokens=0, latency_s=0.0, error=msg)
                    for s in samples]
        for s, g in zip(samples, gens):
            answer, truncated = p.task.answer_of(s, g.text)
            score = p.task.score(s, answer)
            if g.diagnostics is not None and on_diagnostics is not None:
                on_diagnostics(sample_key(s.task, s.context_length, s.depth, s.sample_id),
                               diagnostics_payload(g.diagnostics, p.experiment.diagnostics))
            yield SampleRecord(
                **{**common, "task": s.task}, context_length=s.context_length,
                tokens=g.prompt_tokens if g.prompt_tokens is not None else s.tokens, depth=s.depth,
                sample_id=s.sample_id, seed=s.seed, prediction=g.text,
                target=s.target, correct=score.correct and g.error is None, lenient=score.lenient,
                latency_s=round(g.latency_s, 4), peak_mem_bytes=g.peak_mem_bytes, mem_kind=g.mem_kind,
                predicted_peak_bytes=predicted.get(s.tokens, s.max_new_tokens),
                prefill_s=None if g.prefill_s is None else round(g.prefill_s, 4), new_tokens=g.new_tokens,
                needle_token_offset=s.needle_token_offset, haystack=s.haystack, prompt_sha=s.prompt_sha,
                error=g.error, score=score.value if g.error is None else 0.0, metric=score.metric,
                cache_bytes=g.cache_bytes, cached_tokens=g.cached_tokens, kernel=g.kernel,
                answer_logprob=None if g.answer_logprob is None else round(g.answer_logprob, 5),
                answer_tokens=g.answer_tokens, max_new_tokens=s.max_new_tokens,
                truncated=None if g.error is not None else truncated)


def diagnostics_payload(result: dict, mode: str) -> dict:
    """A runner's diagnostics (field → (layers, heads) tensors) as one compact JSON object: each field base64 of
    float16, ~0.5 kB a field for 30 layers × 9 heads."""
    from harness.runners.diagnostics import encode
    from kernels.diagnostics import FIELDS

    L, H = result[FIELDS[0]].shape
    return {"mode": mode, "layers": L, "heads": H, "layer_index": list(result["layers"]),
            "rows": list(result["rows"]), "needle": None if result.get("needle") is None else list(result["needle"]),
            **{f: encode(result[f]) for f in FIELDS}}


class _Predicted:
    """Predicted peaks (total bytes, or None) of an experiment's requests, each shape computed once."""

    def __init__(self, p: Prepared):
        self.p, self.known = p, {}

    def get(self, tokens: int, new_tokens: int | None = None) -> int | None:
        """tokens: the prompt's (generation; new_tokens the budget) or the forward's (token scoring)."""
        if (tokens, new_tokens) not in self.known:
            estimate = self.p.predicted_peak(tokens, new_tokens if new_tokens is not None else 0)
            self.known[tokens, new_tokens] = None if estimate is None else estimate.total
        return self.known[tokens, new_tokens]
