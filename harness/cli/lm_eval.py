"""lm-eval glue: the task files' directory and the `longctx` model's registration."""
from __future__ import annotations

import click

@click.command("lm-eval-tasks-path")
def tasks_path():
    """Write longctx's lm-eval task files (one per registered task) and print their directory (for lm_eval
    --include_path)."""
    from harness.integrations.lm_eval_tasks import write_task_files
    from harness.models import longctx_home

    dest = longctx_home(writable=True) / "lm_eval_tasks"
    write_task_files(dest)
    click.echo(dest)


@click.command("lm-eval-register")
def register():
    """Make `lm_eval --model longctx` work in this environment (writes a one-line .pth; idempotent)."""
    from harness.integrations.lm_eval_plugin import write_pth

    click.echo(f"registered the longctx model for lm-eval: {write_pth()}")
