"""The ``fnet-deploy`` command line: one typer app, one module per command."""

from __future__ import annotations

import os
import sys
from typing import Any

import cv2
import typer

from fnet_deploy import __version__
from fnet_deploy.commands import weights
from fnet_deploy.commands.bench import bench
from fnet_deploy.commands.calibrate import calibrate
from fnet_deploy.commands.check import check
from fnet_deploy.commands.evaluate import eval_command
from fnet_deploy.commands.explain import explain
from fnet_deploy.commands.export import export
from fnet_deploy.commands.fuse import fuse
from fnet_deploy.commands.stream import stream
from fnet_deploy.commands.train import train

_click_errors = sys.modules[typer.BadParameter.__module__]
"""click's exceptions as this typer raises them (its own vendored copy, or click's)."""
_HELP_SHOWN = getattr(_click_errors, "NoArgsIsHelpError", ())
"""Raised after the help was printed for a command given no arguments (click >= 8.2)."""


def usage_line(err: Any) -> str:
    """A usage error as one line, ``<option>: <problem>`` where it concerns one option."""
    opts = getattr(getattr(err, "param", None), "opts", None)
    hint = max(opts, key=len) if opts else None
    if isinstance(err, _click_errors.MissingParameter):
        problem = "missing (this option is required)"
    elif isinstance(err, _click_errors.BadParameter) and err.message:
        problem = err.message
    else:
        return " ".join(str(err.format_message()).split())
    problem = " ".join(problem.split()).rstrip(".")
    return f"{hint}: {problem}" if hint else problem


def quiet_opencv() -> None:
    """Keep OpenCV's (and, through it, FFmpeg's) warnings out of the command's output: its log
    level is set to errors, unless the user chose one with ``OPENCV_LOG_LEVEL``. The commands
    report a failed read or write themselves, in one line."""
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


class _App(typer.Typer):
    """The typer app, whose usage errors are one line (``error: <option>: <problem>``, exit 2)
    like every other error of the CLI, instead of click's multi-line box."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        quiet_opencv()
        try:
            code = super().__call__(*args, **kwargs)
        except _click_errors.ClickException as err:
            if not isinstance(err, _HELP_SHOWN):
                typer.echo(f"error: {usage_line(err)}", err=True)
            sys.exit(err.exit_code)
        except typer.Abort:
            typer.echo("interrupted", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


app = _App(
    name="fnet-deploy",
    help="FNet multi-modal image fusion: fuse, train, evaluate, export, stream, benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fnet-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """FNet multi-modal image fusion, from training to real-time video."""


app.command()(fuse)
app.command()(stream)
app.command()(calibrate)
app.command()(train)
app.command()(explain)
app.command()(bench)
app.command("eval")(eval_command)
app.command()(export)
app.command()(check)
app.add_typer(weights.app, name="weights")

if __name__ == "__main__":
    app(prog_name="fnet-deploy")
