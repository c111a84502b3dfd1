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
    grid = pair_grid(ext, conf, hf_config, n) if n is not None and n <= PICTURE_MAX else None
    if grid is not None:
        doc["pair_positions"] = grid
    if as_json:
        click.echo(json.dumps(doc, default=list))
    else:
        click.echo(ext.describe(conf))
        click.echo(json.dumps({k: v for k, v in doc.items() if k != "pair_positions"}, indent=2, default=list))
        if grid is not None:
            click.echo(picture(grid, ext.name))


PICTURE_MAX = 48  # --length up to this prints the query × key picture


def pair_grid(ext, conf, hf_config, n: int) -> list[list[float | None]]:
    """For every query i and key j ≤ i of an n-token text, the relative position the pair is scored at (None: the
    key is invisible). Attention-level methods: from their spec's position map and mask. RoPE methods: the distance
    the slowest rotary pair sees, i·θ'/θ − j·θ'/θ (1 where the method leaves it alone; a 0 frequency moves nothing)."""
    import torch

    from extensions.base import ATTENTION_SPEC
    from extensions.rope import RopeExtension, default_inv_freq, rope_dims

    rows: list[list[float | None]] = []
    if ATTENTION_SPEC in ext.mechanisms:
        spec = ext.attention_spec(conf, hf_config, torch.zeros(1), n)
        m = spec.position_map
        for i in range(n):
            row: list[float | None] = []
            for j in range(i + 1):
                seen = spec.window is None or i - j < spec.window or j < spec.sink_tokens
                seen = seen and (spec.max_distance is None or i - j < spec.max_distance)
                row.append((m.distance(i, j) if m is not None else float(i - j)) if seen else None)
            rows.append(row)
        return rows
    ratio = 1.0
    if isinstance(ext, RopeExtension):
        dim, base = rope_dims(hf_config)
        new, _ = ext.inv_freq(conf, hf_config, seq_len=n)
        old = default_inv_freq(dim, base)
        k = len(new) - 1 if len(new) == len(old) else min(len(new), len(old)) - 1
        ratio = float(new[k] / old[k])
    return [[(i - j) * ratio for j in range(i + 1)] for i in range(n)]


def picture(grid: list[list[float | None]], name: str) -> str:
    """The grid as text: one line a query, one column a key; '.' an invisible key."""
    def cell(v):
        if v is None:
            return "."
        return f"{v:.0f}" if abs(v - round(v)) < 1e-9 else f"{v:.1f}"

    width = max(len(cell(v)) for row in grid for v in row) + 1
    lines = [f"{name}: relative position of each (query, key) pair; rows are queries 0..{len(grid) - 1}, '.' unseen"]
    lines += [f"{i:>4} " + "".join(f"{cell(v):>{width}}" for v in row) for i, row in enumerate(grid)]
    return "\n".join(lines)
