"""The ``yolor`` command: registers the command modules and owns the one error path.

Any :class:`YolorError` raised below becomes one Rich message on stderr and exit code 1 (usage
errors keep click's code 2). ``--debug`` shows full tracebacks instead.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from yolor_cli import __version__
from yolor_cli.commands import dataset, info, prune
from yolor_cli.commands.benchmark import benchmark_command
from yolor_cli.commands.detect import detect_command
from yolor_cli.commands.eval import eval_command
from yolor_cli.commands.export import export_command
from yolor_cli.commands.report import report_command
from yolor_cli.commands.train import train_command
from yolor_cli.commands.tune import tune_command
from yolor_cli.console import print_error
from yolor_cli.engine.errors import YolorError

DEBUG_KEY = "yolor.debug"
EXIT_USER_ERROR = 1
EXIT_INTERRUPTED = 130


class YolorGroup(TyperGroup):
    """Root group that turns errors into messages for every subcommand below it."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except YolorError as error:
            if ctx.meta.get(DEBUG_KEY):
                raise
            print_error(error.message, error.hint)
            raise typer.Exit(EXIT_USER_ERROR) from None
        except BrokenPipeError:  # the reader went away (`yolor ... | head`): Typer exits quietly
            raise
        except OSError as error:  # permissions, a full disk, a folder where a file should be...
            if ctx.meta.get(DEBUG_KEY):
                raise
            where = f": {error.filename}" if error.filename else ""
            print_error(f"{error.strerror or error}{where}", "check the path, its permissions and free disk space")
            raise typer.Exit(EXIT_USER_ERROR) from None
        except UnicodeDecodeError as error:
            if ctx.meta.get(DEBUG_KEY):
                raise
            print_error(
                f"a file that should be text is not ({error.reason} at byte {error.start})",
                "check the list, names or label files you passed",
            )
            raise typer.Exit(EXIT_USER_ERROR) from None
        except KeyboardInterrupt:
            print_error("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None


app = typer.Typer(
    name="yolor",
    cls=YolorGroup,
    help="Train, prune and export YOLOR detectors, from a Pascal-VOC folder to a deployable model.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"yolor-cli {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Show the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    ctx.meta[DEBUG_KEY] = debug


app.command(name="benchmark")(benchmark_command)
app.add_typer(dataset.app, name="dataset")
app.command(name="detect")(detect_command)
app.command(name="eval")(eval_command)
app.command(name="export")(export_command)
app.command(name="info")(info.info)
app.add_typer(prune.app, name="prune")
app.command(name="report")(report_command)
app.command(name="train")(train_command)
app.command(name="tune")(tune_command)


def main() -> None:
    """Console-script entry point; anything that escapes the app here is a bug, not a user error."""
    try:
        app(prog_name="yolor")
    except Exception as error:
        if "--debug" in sys.argv[1:]:
            raise
        print_error(
            f"internal error: {type(error).__name__}: {error}",
            "this is a bug in yolor-cli; rerun with --debug for the traceback and report it",
        )
        sys.exit(EXIT_USER_ERROR)
