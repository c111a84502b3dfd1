"""`longctx extensions`: the registered methods and what one does on a model."""
from __future__ import annotations

import click

from harness.cli import build
from harness.errors import UserError


@click.group()
def extensions():
    """Position-extension methods."""


@extensions.command("list")
def extensions_list():
    """Registered extension methods and the runners that can host each."""
    from extensions import EXTENSIONS
    from harness.runners import hosts_of

    import textwrap

    names = EXTENSIONS.names()
    width = max(map(len, names)) + 2
    for name in names:
        ext = EXTENSIONS.get(name)()
        click.echo(f"{name:<{width}}runners: {', '.join(hosts_of(name))}")
        params = ", ".join(ext.config_cls.allowed()) or "-"
        click.echo(textwrap.fill(params, 100, initial_indent=" " * width + "params:  ",
                                 subsequent_indent=" " * (width + 9)))


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
    ref = resolve_model(model, log=build.log())
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
