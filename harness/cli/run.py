"""`longctx run`: a sweep from an experiment file."""
from __future__ import annotations

import click

from harness.cli import build
from harness.cli.options import FINITE, MAX_MEMORY, YES, options


@click.command()
@click.argument("experiment_file")
@click.option("--out", "-o", default=None, help="sweep directory [default: the file's `out`]")
@click.option("--shard", default=None, metavar="I/N", help="run cells I, I+N, I+2N ... only")
@click.option("--dry-run", is_flag=True, help="check every cell and list them; run nothing")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--ray-address", default=None, help="an existing Ray cluster (default: a new local instance)")
@click.option("--cpus-per-worker", default=1.0, show_default=True, type=FINITE)
@click.option("--gpus-per-worker", default=0.0, show_default=True, type=FINITE)
@click.option("--tensor-parallel", default=None, type=int, metavar="N",
              help="shard each vLLM cell's model over N GPUs (vLLM's tensor_parallel_size)")
@options(MAX_MEMORY, YES)
@click.option("--no-progress", is_flag=True)
def run(experiment_file, out, shard, dry_run, executor, ray_address, cpus_per_worker, gpus_per_worker,
        tensor_parallel, max_memory, yes, no_progress):
    """Run a sweep from an experiment file (YAML): models x tasks x extensions x runners, a run directory each."""
    from harness.sweep import parse_shard, run_sweep

    path = run_sweep(experiment_file, out=out, shard=parse_shard(shard), dry_run=dry_run, executor=executor,
                     ray_address=ray_address, cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker,
                     log=build.log(), progress=not no_progress, max_memory=build.max_memory(max_memory),
                     tensor_parallel=tensor_parallel, confirm=build.confirm({"yes": yes}))
    click.echo(f"sweep: {path} (longctx report {path})")
