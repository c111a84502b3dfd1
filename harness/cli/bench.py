"""`longctx bench`: every runner against the naive loop and the machine's fp32 floor."""
from __future__ import annotations

import click

from pathlib import Path

from harness.cli import build
from harness.errors import UserError


@click.command()
@click.option("--quick", is_flag=True, help="2k, three depths, no vLLM: under 2 minutes (the test suite runs it)")
@click.option("--long", "long_", is_flag=True, help="add 32k to the lengths")
@click.option("--model", "-m", default="smollm2", show_default=True, help="model name, checkpoint dir or hf:ORG/NAME")
@click.option("--lengths", "-l", default=None, help="prompt lengths [default: 2k,4k,8k,16k]")
@click.option("--configs", default=None,
              help="comma list of naive, hf, hf+reuse, kernel, kernel+reuse, kernel+diagnostics, vllm, mamba "
                   "[default: naive, hf, kernel+reuse, vllm]")
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

        from harness.profile import read_profile
        from harness.runners import RUNNERS
        from harness.support import decide

        _, m_config = load_tokenizer_and_config(resolve_model(mamba, log=lambda *_: None).path)
        from extensions import EXTENSIONS

        none = EXTENSIONS.get("none")()
        verdict = decide(read_profile(m_config), none, none.parse({}), RUNNERS.get("mamba"))
        if verdict.status == "refused":  # the mamba runner's own check: recurrent-only checkpoints
            raise UserError(f"--mamba {mamba} is a {getattr(m_config, 'model_type', '?')} checkpoint, not a Mamba "
                            f"one ({verdict.notes[0]})")
    check_output_dir(out)
    doc = run_bench(plan, Path(out), log=build.log())
    click.echo((Path(out) / "bench.md").read_text(), nl=False)
    click.echo(f"wrote {out}/bench.json and {out}/bench.md ({len(doc['configs'])} configurations)")
