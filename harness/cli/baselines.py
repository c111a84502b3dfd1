"""`longctx train-baselines`: matched RoPE / ALiBi / Mamba-2 baselines trained short on CPU."""
from __future__ import annotations

import click

from harness.baselines.config import BUDGETS
from harness.cli import build
from harness.cli.options import FINITE


@click.command("train-baselines")
@click.option("--out", "-o", required=True, help="directory for rope/, alibi/, mamba/ checkpoints")
@click.option("--arch", "archs", multiple=True,
              help="rope | rope-conv | alibi | mamba | mamba64 (repeatable; default: all five)")
@click.option("--train-length", default=512, show_default=True, type=int)
@click.option("--steps", default=None, type=int,
              help="at most this many steps [default: 1000; --budget long or xl: 8000]")
@click.option("--batch-size", default=8, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--time-budget", default=None, type=FINITE,
              help="seconds per model [default: 900; --budget long: 3600; --budget xl: 7200]")
@click.option("--budget", type=click.Choice(sorted(BUDGETS)), default="default", show_default=True,
              help="step and time budget per model: 1000 steps / 15 min, 8000 steps / 60 min (long) or "
                   "8000 steps / 2 h (xl)")
@click.option("--recipe", type=click.Choice(["mixed", "recall"]), default="mixed", show_default=True,
              help="mixed: text + retrieval prompts; recall: a curriculum of mqar and passkey drills that stops "
                   "at --recall-target")
@click.option("--recall-target", default=0.95, show_default=True, type=FINITE,
              help="recall recipe: stop once held-out 8-pair mqar and passkey recall reach this")
@click.option("--ema-decay", default=0.0, show_default=True, type=FINITE,
              help="probe, stop on and save a moving average of the weights with this decay (0: off; e.g. 0.995)")
@click.option("--lr", default=3e-3, show_default=True, type=FINITE, help="peak learning rate (AdamW, cosine decay)")
@click.option("--init-from", default="", metavar="DIR",
              help="continue a train-baselines checkpoint of the same architecture (its weights, tokenizer and "
                   "curriculum stage; a fresh optimiser and schedule) instead of random weights")
@click.option("--lookalike-share", default=0.0, show_default=True, type=FINITE,
              help="recall recipe, last stage: share of recitations whose values come in pairs sharing their first "
                   "two digits (960, 961), so that only the key tells them apart")
@click.option("--conv-width", default=5, show_default=True, type=int,
              help="rope-conv: kernel of the short convolutions, in tokens (5 reaches a value's key from its last "
                   "digit)")
@click.option("--quick", is_flag=True, help="seconds-long smoke run (tiny models, 3 steps)")
@click.option("--overwrite", is_flag=True,
              help="replace the models already under --out (each only once its new one is trained and saved)")
def train_baselines(out, archs, train_length, steps, batch_size, seed, time_budget, budget, recipe,
                        recall_target, ema_decay, lr, init_from, lookalike_share, conv_width, quick, overwrite):
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
    for info in train_baselines(cfg, out, tuple(archs) or ARCHITECTURES, log=build.log(), overwrite=overwrite):
        click.echo(f"{info['architecture']:<6} {info['model_type']:<7} {info['parameters']:>9,} params  "
                   f"{info['steps_done']} steps ({info['stopped_by']})  final loss {info['final_loss']:.3f}  "
                   f"mqar(8) {info['curve'][-1]['mqar']:.2f}  passkey {info['curve'][-1]['passkey']:.2f}  "
                   f"{info['seconds']} s  -> {out}/{info['architecture']}")
