"""`longctx models`: known models, the local cache, and what a model declares (`models check`)."""
from __future__ import annotations

import click

from harness.cli import build
from harness.errors import UserError


@click.group()
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

    click.echo(import_model(name, force=force, log=build.log()))


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

    ref = resolve_model(model, log=build.log())
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
