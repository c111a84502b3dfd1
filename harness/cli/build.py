"""One builder from a command's options to an `Experiment` (every experiment command goes through it), and what
those commands share after it: --dump-config and the closing summary."""
from __future__ import annotations

import functools

import click

from harness.errors import UserError


def max_memory(text: str | None) -> int | None:
    from harness.memory import parse_size

    return None if text is None else parse_size(text)


def default_out(task: str, model: str, extension: str) -> str:
    import re
    from pathlib import Path

    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(model).name or model)
    return f"runs/{task}-{slug}-{extension}"


def runner_options(kw) -> dict:
    """--dtype / --device / --tensor-parallel and every -R KEY=VALUE, as the runner's constructor keywords."""
    from harness.config import parse_params

    opts = parse_params(kw["runner_opts"], what="runner option", example="-R impl=cpu")
    for key in ("dtype", "device"):
        if kw[key] is not None:
            if key in opts:
                raise UserError(f"{key} given twice (--{key} and -R {key}=...); give it once")
            opts[key] = kw[key]
    if kw.get("tensor_parallel") is not None:
        from harness.runners import runner_options as options_of

        if "tensor_parallel_size" not in options_of(kw["runner"]):
            raise UserError(f"--tensor-parallel shards a vLLM engine; this run uses --runner {kw['runner']}")
        if "tensor_parallel_size" in opts:
            raise UserError("tensor_parallel_size given twice (--tensor-parallel and -R ...); give it once")
        opts["tensor_parallel_size"] = kw["tensor_parallel"]
    return opts


def given_or_known(task: str, settings: dict) -> dict:
    """The settings a task's config has, and those the user gave (a setting left at its option's default is not
    offered to a task without it: cwe takes no depths, but `-d` given to it is refused)."""
    from click.core import ParameterSource

    from evals.registry import config_class
    from harness.config import settings_of

    has, ctx = settings_of(config_class(task)), click.get_current_context(silent=True)
    if ctx is None:
        return settings
    return {k: v for k, v in settings.items()
            if k in has or ctx.get_parameter_source(k) not in (ParameterSource.DEFAULT, None)}


def experiment(task: str, settings: dict, kw, out_name: str | None = None):
    """The Experiment of one command: the task's config from `settings` (its own config class; a setting the class
    does not have means the task does not run from this command), the method and runner from the METHOD stack,
    the output from the output stack (default directory named by `out_name`, else the task)."""
    from evals.registry import config_class, make_config
    from harness.config import parse_params, settings_of
    from harness.experiment import Experiment

    has = settings_of(config_class(task))
    alien = [k for k in settings if k not in has]
    if alien:
        raise UserError(f"task {task!r} has no {', '.join(alien)} (its settings: {', '.join(has)}; a task with "
                        "settings of its own has its own command: `longctx --help` lists them)")
    return Experiment(task=task, task_config=make_config(task, settings), model=kw["model"],
                      extension=kw["extension"], extension_params=parse_params(kw["ext_params"]),
                      runner=kw["runner"], runner_options=runner_options(kw),
                      out=kw["out"] or default_out(out_name or task, kw["model"], kw["extension"]),
                      max_memory=max_memory(kw["max_memory"]), diagnostics=kw.get("diagnostics"),
                      ablate_heads=kw.get("ablate_heads"), heads_from=kw.get("heads_from"))


def dumped(exp, kw, search=None) -> bool:
    """--dump-config: print the experiment file that reproduces this command, and say so (the command stops)."""
    if not kw.get("dump_config"):
        return False
    from harness.sweep import dump

    click.echo(dump(exp, search), nl=False)
    return True


def confirm(kw):
    """Who agrees to start a large grid: --yes, else the user at a terminal, else nobody (it starts, said)."""
    import sys

    if kw.get("yes"):
        return lambda message: True
    if sys.stdin.isatty():
        return lambda message: click.confirm(f"{message}; start it?", default=False, err=True)
    return None


def run(exp, kw):
    """Run one experiment with the command's log and progress settings; returns its run directory."""
    from harness.experiment import run as run_experiment

    return run_experiment(exp, log=functools.partial(click.echo, err=True), progress=not kw["no_progress"],
                          confirm=confirm(kw))


def log():
    return functools.partial(click.echo, err=True)
