"""`longctx tasks`: task names and presets."""
from __future__ import annotations

import click

@click.command()
def tasks():
    """List task names and presets."""
    from evals.registry import task_names

    for name in task_names():
        click.echo(name)
