"""The `longctx` command line (the roof: nothing of ours imports it).

One module per command or command group; `COMMANDS` maps each command name to its click object, loaded only when
that command runs (so `--help` imports no torch). A new command is its module and one line below. Shared options
are named stacks (`harness.cli.options`); every experiment command turns its options into an `Experiment` through
one builder (`harness.cli.build`). User mistakes raise `UserError` (or click's usage errors) and end as one line on
stderr with exit code 2.
"""
from __future__ import annotations

import sys

import click

from harness.errors import RunFailed, UserError
from harness.registry import Registry

COMMANDS = Registry("command")
COMMANDS.register("passkey", "harness.cli.grid:passkey")
COMMANDS.register("needle", "harness.cli.grid:needle")
COMMANDS.register("retrieval", "harness.cli.grid:retrieval")
COMMANDS.register("perplexity", "harness.cli.perplexity:perplexity")
COMMANDS.register("search", "harness.cli.search:search")
COMMANDS.register("run", "harness.cli.run:run")
COMMANDS.register("report", "harness.cli.report:report")
COMMANDS.register("tasks", "harness.cli.tasks:tasks")
COMMANDS.register("models", "harness.cli.models:models")
COMMANDS.register("extensions", "harness.cli.extensions:extensions")
COMMANDS.register("train-baselines", "harness.cli.baselines:train_baselines")
COMMANDS.register("bench", "harness.cli.bench:bench")
COMMANDS.register("lm-eval-tasks-path", "harness.cli.lm_eval:tasks_path")
COMMANDS.register("lm-eval-register", "harness.cli.lm_eval:register")


INTERRUPTED = "interrupted; finished samples are saved, re-run the same command to resume"


class RegistryGroup(click.Group):
    """A click group whose commands are the entries of `COMMANDS` (imported when listed or run)."""

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS.names()))

    def get_command(self, ctx, name):
        return COMMANDS.get(name) if name in COMMANDS else super().get_command(ctx, name)


@click.group(cls=RegistryGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="longctx")
def cli():
    """longctx: at which length does a model, with a given extension method, stop finding what is in its context?"""


def main(argv: list[str] | None = None) -> None:
    """Entry point: click in non-standalone mode so every user mistake becomes one line and exit code 2."""
    try:
        rv = cli.main(args=argv, prog_name="longctx", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.exceptions.Abort as e:  # click turns Ctrl-C (KeyboardInterrupt) into Abort
        if isinstance(e.__cause__, KeyboardInterrupt) or isinstance(e.__context__, KeyboardInterrupt):
            click.echo(INTERRUPTED, err=True)
        else:
            click.echo("aborted", err=True)
        sys.exit(130)
    except OSError as e:  # the disk or the environment failed mid-run (a user mistake is a UserError before this)
        import errno

        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES):
            raise
        where = f" writing {e.filename}" if e.filename else ""
        click.echo(f"longctx: failed: {e.strerror}{where}; every sample written before it is kept, re-run the same "
                   "command to resume once there is room", err=True)
        sys.exit(1)
    except click.ClickException as e:  # usage errors, bad option values, missing arguments
        click.echo(f"longctx: error: {e.format_message()}", err=True)
        sys.exit(2)
    except UserError as e:
        click.echo(f"longctx: error: {e}", err=True)
        sys.exit(2)
    except RunFailed as e:
        click.echo(f"longctx: failed: {e}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo(INTERRUPTED, err=True)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)
