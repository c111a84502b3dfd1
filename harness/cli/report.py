"""`longctx report`: one self-contained HTML report from run directories."""
from __future__ import annotations

import click

from harness.cli.options import FINITE


@click.command()
@click.argument("run_dirs", nargs=-1, required=True)
@click.option("--output", "-o", default="report.html", show_default=True, help="HTML file to write")
@click.option("--title", default="longctx report", show_default=True)
@click.option("--threshold", default=0.856, show_default=True, type=FINITE,
              help="score threshold of the effective length (RULER: Llama-2-7B's 4k score)")
@click.option("--relative", default=0.85, show_default=True, type=FINITE,
              help="NoLiMa's threshold, as a fraction of each configuration's base (shortest-length) score")
@click.option("--save-figures", default=None, metavar="DIR", help="also write each figure as a PNG into DIR")
def report(run_dirs, output, title, threshold, relative, save_figures):
    """Render one self-contained HTML report from one or more run directories."""
    from reports.html import write_report

    path = write_report(list(run_dirs), output, title=title, threshold=threshold, relative=relative,
                        save_figures=save_figures)
    click.echo(f"report: {path}")
