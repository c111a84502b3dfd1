"""`longctx search`: the effective length of one configuration, by bisection with exact-bound decisions."""
from __future__ import annotations

import click

from harness.cli import build
from harness.cli.options import DIAGNOSE, DUMP, FINITE, METHOD, MODEL, PROMPT, SEED, options, output


@click.command()
@click.option("--task", "-t", default="passkey", show_default=True, help="any generation task or preset")
@click.option("--min", "low", default="2k", show_default=True, help="shortest length of the range (e.g. 2k)")
@click.option("--max", "high", default="32k", show_default=True, help="longest length of the range (e.g. 128k)")
@click.option("--threshold", default=0.856, show_default=True, type=FINITE,
              help="score a length must reach (RULER: Llama-2-7B's 4k score)")
@click.option("--resolution", default=1.19, show_default=True, type=FINITE,
              help="stop when the bracket's ends are within this ratio")
@click.option("--max-samples", default=48, show_default=True, type=int, help="samples per probed length at most")
@options(MODEL, SEED, PROMPT, METHOD, DIAGNOSE, output("search-TASK", grid=False), DUMP)
def search(task, low, high, threshold, resolution, max_samples, **kw):
    """Effective-length search: bisect on log length with sequential exact-bound decisions per length."""
    from harness.config import parse_length
    from harness.search import SearchConfig, run_search, search_experiment

    cfg = SearchConfig(low=parse_length(low), high=parse_length(high), threshold=threshold, resolution=resolution,
                       max_samples=max_samples)
    settings = {"lengths": (cfg.low, cfg.high), "seed": kw["seed"], "haystack": kw["haystack"],
                "haystack_file": kw["haystack_file"], "max_new_tokens": kw["max_new_tokens"],
                "shared_haystack": kw["shared_haystack"], "prompt_format": kw["prompt_format"],
                "answer_prefix": kw["answer_prefix"], "qa_file": kw["qa_file"],
                "thinking_tokens": kw["thinking_tokens"], "style": kw["style"]}
    exp = build.experiment(task, build.given_or_known(task, settings), kw, out_name=f"search-{task}")
    if build.dumped(search_experiment(exp, cfg), kw, search=cfg):
        return
    result = run_search(exp, cfg, log=build.log())
    for p in result.probes:
        click.echo(f"  {p.length:>7} tokens: {p.k}/{p.n} found, 95% CI [{p.ci[0]:.2f}, {p.ci[1]:.2f}] -> "
                   f"{p.decision} ({p.purpose})")
    click.echo(result.summary())
    click.echo(f"results: {exp.out}/results.jsonl, path: {exp.out}/search.json")
