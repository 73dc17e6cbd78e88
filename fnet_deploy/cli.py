"""The ``fnet-deploy`` command line: one typer app, one module per command.

Each command's module is imported only when that command is used (run, or asked for its
``--help``): ``fnet-deploy --help`` and ``--version`` import neither PyTorch nor OpenCV, and a
command's ``--help`` imports what its options need, not what its work needs.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import typer
import typer.core
import typer.main

from fnet_deploy import __version__

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
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


@dataclass(frozen=True)
class CommandSpec:
    """Where a command lives, and the one line ``fnet-deploy --help`` shows for it.

    Attributes:
        module: the module defining it.
        attribute: its function, or its :class:`typer.Typer` app for a command with
            subcommands.
        summary: the first paragraph of its help (a test keeps the two equal).
    """

    module: str
    attribute: str
    summary: str


COMMANDS: dict[str, CommandSpec] = {
    "fuse": CommandSpec(
        "fnet_deploy.commands.fuse", "fuse", "Fuse infrared + visible images with FNet."
    ),
    "stream": CommandSpec(
        "fnet_deploy.commands.stream",
        "stream",
        "Fuse a visible and an infrared stream into one video, live.",
    ),
    "calibrate": CommandSpec(
        "fnet_deploy.commands.calibrate",
        "calibrate",
        "Estimate the map from IR to visible pixels and write it for `stream --registration`.",
    ),
    "train": CommandSpec(
        "fnet_deploy.commands.train",
        "train",
        "Train FNet in two stages (inverse-fusion pre-training, then fusion loss).",
    ),
    "explain": CommandSpec(
        "fnet_deploy.commands.explain",
        "explain",
        "Explain one fusion: unique and common features, reconstructions, learned thresholds.",
    ),
    "bench": CommandSpec(
        "fnet_deploy.commands.bench",
        "bench",
        "Benchmark FNet: median/p95/p99 latency and fps per cell, beside the hardware's floors.",
    ),
    "eval": CommandSpec(
        "fnet_deploy.commands.evaluate",
        "eval_command",
        "Compute EN, SD, SF, AG, MI, CE, SCD, VIF, Qabf, Qcb, SSIM, PSNR for fusion methods.",
    ),
    "export": CommandSpec(
        "fnet_deploy.commands.export",
        "export",
        "Export FNet's deploy form to ONNX (and TensorRT), checking parity with PyTorch.",
    ),
    "check": CommandSpec(
        "fnet_deploy.commands.check",
        "check",
        "Compare exported models with the PyTorch reference (training form), in grey levels.",
    ),
    "serve": CommandSpec(
        "fnet_deploy.commands.serve",
        "serve",
        "Serve FNet through Triton Inference Server (gRPC, HTTP, Prometheus metrics).",
    ),
    "weights": CommandSpec(
        "fnet_deploy.commands.weights", "app", "Inspect and convert FNet weights files."
    ),
}
"""Every command, in the order ``fnet-deploy --help`` lists them."""


def load_command(name: str) -> Any:
    """Import command ``name``'s module and build its click command (a group for ``weights``).

    OpenCV is quietened (:func:`quiet_opencv`) when the command runs, not when it is built.
    """
    spec = COMMANDS[name]
    target = getattr(importlib.import_module(spec.module), spec.attribute)
    if isinstance(target, typer.Typer):
        command: Any = typer.main.get_group(target)
    else:
        single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    _quiet_opencv_when_run(command)
    _accept_old_spellings(command, name)
    return command


def _accept_old_spellings(command: Any, name: str) -> None:
    """Make ``command`` (and its subcommands, as ``weights convert``) read the old spellings of
    :mod:`fnet_deploy.commands.renames`, saying so in one line each."""
    from fnet_deploy.commands.renames import modernise

    parse_args = command.parse_args

    def parse_modern(ctx: Any, args: list[str]) -> Any:
        say = functools.partial(typer.echo, err=True)
        return parse_args(ctx, modernise(name, list(args), say))

    command.parse_args = parse_modern
    for sub_name, sub in getattr(command, "commands", {}).items():
        _accept_old_spellings(sub, f"{name} {sub_name}")


def _quiet_opencv_when_run(command: Any) -> None:
    """Make ``command`` (and its subcommands) call :func:`quiet_opencv` before its work."""
    callback: Callable[..., Any] | None = command.callback
    if callback is not None:

        @functools.wraps(callback)
        def quietly(*args: Any, **kwargs: Any) -> Any:
            quiet_opencv()
            return callback(*args, **kwargs)

        command.callback = quietly
    for sub in getattr(command, "commands", {}).values():
        _quiet_opencv_when_run(sub)


class _LazyCommands(Mapping[str, Any]):
    """The app's commands by name, each built (:func:`load_command`) when first looked up."""

    def __init__(self) -> None:
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in COMMANDS:
            raise KeyError(name)
        if name not in self._built:
            self._built[name] = load_command(name)
        return self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS)


class _LazyGroup(typer.core.TyperGroup):
    """The top-level group: commands imported when used; its own help lists them from
    :data:`COMMANDS` without importing any."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands = _LazyCommands()  # type: ignore[assignment]
        self._listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        """The command names, in :data:`COMMANDS` order."""
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        """The built command, or while the group's help is shown a stand-in with its summary."""
        if cmd_name not in COMMANDS:
            return None
        if self._listing:
            return typer.core.TyperCommand(name=cmd_name, help=COMMANDS[cmd_name].summary)
        return self.commands[cmd_name]

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """The group's help, listing every command's summary (no command is imported)."""
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


class _App(typer.Typer):
    """The typer app, whose usage errors are one line (``error: <option>: <problem>``, exit 2)
    like every other error of the CLI, instead of click's multi-line box."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
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
    cls=_LazyGroup,
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


if __name__ == "__main__":
    app(prog_name="fnet-deploy")
