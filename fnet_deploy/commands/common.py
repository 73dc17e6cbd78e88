"""Helpers shared by the command modules: error reporting, option parsing, progress bars."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from fnet_deploy.data.thermal import ThermalNorm
from fnet_deploy.errors import FnetError

P = ParamSpec("P")
R = TypeVar("R")

console = Console(stderr=True)

WeightsOption = Annotated[
    Path | None,
    typer.Option(
        help="FNet weights: fnet-deploy .safetensors or the published .pth "
        "(default: the package's own weights)."
    ),
]
DeviceOption = Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")]
IrNormOption = Annotated[
    ThermalNorm,
    typer.Option(help="16-bit IR to [0,1]: percentile clip, per-image minmax, or fixed /65535."),
]
IrPercentilesOption = Annotated[
    str, typer.Option(help="Low,high percentiles for --ir-norm percentile.")
]


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn :class:`FnetError` into ``error: <message>`` on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except FnetError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


def parse_pair(text: str, option: str) -> tuple[float, float]:
    """``"1,99"`` -> ``(1.0, 99.0)``; a clear error for anything else."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise FnetError(f"{option} expects two numbers like '1,99', got {text!r}") from None
    return low, high


def progress_bar() -> Progress:
    """A rich progress bar on stderr with count, elapsed and remaining time."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
