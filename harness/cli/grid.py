"""The generation-task commands: passkey, needle and the retrieval family, over a length × depth grid."""
from __future__ import annotations

import click

from evals.registry import TASKS
from harness.cli import build
from harness.cli.options import DIAGNOSE, DUMP, METHOD, MODEL, PROMPT, SEED, grid, options, output


def run_grid(task: str, kw) -> None:
    from evals.registry import TASKS, presets
    from harness.config import parse_depths, parse_lengths
    from harness.errors import UserError

    owner = presets().get(task, task)
    if owner in TASKS and TASKS.get(owner).scores_tokens:
        raise UserError(f"task {task!r} scores tokens and has its own command: longctx {task} --help")

    settings = {"lengths": tuple(parse_lengths(kw["lengths"])), "depths": tuple(parse_depths(kw["depths"])),
                "samples": kw["samples"], "seed": kw["seed"], "haystack": kw["haystack"],
                "haystack_file": kw["haystack_file"], "max_new_tokens": kw["max_new_tokens"],
                "shared_haystack": kw["shared_haystack"], "prompt_format": kw["prompt_format"],
                "answer_prefix": kw["answer_prefix"], "qa_file": kw["qa_file"],
                "thinking_tokens": kw["thinking_tokens"], "style": kw["style"]}
    exp = build.experiment(task, build.given_or_known(task, settings), kw)
    if not build.dumped(exp, kw):
        print_summary(build.run(exp, kw))


def print_summary(path) -> None:
    from harness.records import read_records
    from reports.aggregate import accuracy_by_length

    for row in accuracy_by_length(read_records(path), errored=True):
        errors = f", {row['errors']} errored (not counted)" if row["errors"] else ""
        if row.get("truncated"):
            errors += f", {row['truncated']} never closed their thinking (no answer)"
        if not row["n"]:
            click.echo(f"  {row['context_length']:>7} tokens: every sample errored ({row['errors']})")
            continue
        partial = f", mean score {row['score']:.2f} ({row['metric']})" if row["metric"] not in (None, "exact") else ""
        click.echo(f"  {row['context_length']:>7} tokens: {row['correct']}/{row['n']} correct "
                   f"(lenient {row['lenient']}/{row['n']}{partial}){errors}, mean latency {row['latency_s']:.1f} s")
    click.echo(f"results: {path}/results.jsonl")


def grid_command(name: str, default_depths: str, doc: str):
    @click.command(name, help=doc)
    @options(MODEL, grid(default_depths), SEED, PROMPT, METHOD, DIAGNOSE, output("TASK"), DUMP)
    def command(**kw):
        run_grid(name, kw)

    return command


passkey = grid_command("passkey", "0.5", "Passkey retrieval: a five-digit key in filler text, asked for at the end.")
needle = grid_command("needle", "0.1,0.5,0.9", "Single needle in a haystack over a length × depth grid.")


@click.command()
@click.option("--task", "-t", required=True,
              help=f"a registered task ({', '.join(n for n in TASKS.names() if n not in ('passkey', 'needle'))}) "
                   "or a preset of one (`longctx tasks` lists them)")
@options(MODEL, grid("0.5"), SEED, PROMPT, METHOD, DIAGNOSE, output("TASK"), DUMP)
def retrieval(task, **kw):
    """RULER-style tasks: multi-key/value/query needles, key-value JSON, phone book, variable tracking, common and
    frequent words, question answering over distractor documents."""
    run_grid(task, kw)
