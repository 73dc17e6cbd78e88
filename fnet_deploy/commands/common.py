"""Helpers shared by the command modules: error reporting, option and output checks, progress
bars."""

from __future__ import annotations

import contextlib
import functools
import math
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Literal, ParamSpec, TypeVar

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

from fnet_deploy.atomic import check_writable
from fnet_deploy.data.color import Luminance
from fnet_deploy.data.thermal import ThermalNorm
from fnet_deploy.errors import FnetError, InputError
from fnet_deploy.signals import stop_signals_handled

P = ParamSpec("P")
R = TypeVar("R")

console = Console(stderr=True)


def notice(text: str) -> None:
    """Print a status line on stderr as plain text (no rich markup: ``[onnx]`` stays)."""
    console.print(text, markup=False, highlight=False)


WeightsOption = Annotated[
    Path | None,
    typer.Option(
        help="FNet weights: fnet-deploy .safetensors or the published .pth "
        "(default: the package's own weights)."
    ),
]
DeviceOption = Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")]
ModelOption = Annotated[
    Path | None,
    typer.Option(
        help="An exported model instead of --weights: .onnx (FP32/FP16) or a TensorRT "
        ".engine/.plan (fnet-deploy export)."
    ),
]
BackendOption = Annotated[
    str | None,
    typer.Option(
        help="torch (deploy form), torch-training (the reference), onnxruntime or tensorrt. "
        "Default: by the model file's type; weights run as their fastest exact form on the "
        "device (CPU: the deploy form exported once to a cached ONNX model for ONNX Runtime; "
        "CUDA: the PyTorch deploy form)."
    ),
]
RunDeviceOption = Annotated[
    str, typer.Option(help="cpu, cuda[:N]; tensorrt[:N] for ONNX Runtime's TensorRT provider.")
]
PrecisionOption = Annotated[
    str | None,
    typer.Option(help="torch: fp32 or fp16 (CUDA); exported models: the expected precision."),
]
ColorMode = Literal["keep", "gray"]
ColorOption = Annotated[
    ColorMode,
    typer.Option(
        help="Colour visible input: 'keep' fuses its BT.601 studio-range Y and puts the colour "
        "back; 'gray' fuses OpenCV's full-range grey (the authors' evaluation) and writes grey."
    ),
]
"""``--color``: how colour visible input feeds the network, the same in every command."""


def parse_size(text: str, option: str, minimum: int = 1) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` (the order cameras, OpenCV and ffmpeg use, everywhere on the command
    line) -> ``(width, height)``.

    Raises:
        FnetError: not two integers joined by ``x``, or a side below ``minimum``.
    """
    try:
        width, height = (int(part) for part in text.strip().lower().split("x"))
    except ValueError:
        raise FnetError(f"{option} expects WIDTHxHEIGHT like 640x480, got {text!r}") from None
    if width < minimum or height < minimum:
        raise FnetError(f"{option} {text}: width and height must be at least {minimum}")
    return width, height


def luminance_of(color: ColorMode) -> Luminance:
    """The data layer's luminance convention for a ``--color`` choice."""
    return "ycbcr" if color == "keep" else "gray"


def color_of(luminance: str) -> ColorMode:
    """The ``--color`` choice of a luminance convention (as weights files record it)."""
    return "keep" if luminance == "ycbcr" else "gray"


IrNormOption = Annotated[
    ThermalNorm,
    typer.Option(help="16-bit IR to [0,1]: percentile clip, per-image minmax, or fixed /65535."),
]
IrPercentilesOption = Annotated[
    str, typer.Option(help="Low,high percentiles for --ir-norm percentile.")
]


def signal_exit_code(signum: int) -> int:
    """The exit status of a command stopped by signal ``signum``: 128 + its number, as a shell
    reports a process killed by it (SIGINT / Ctrl-C: 130, SIGTERM: 143)."""
    return 128 + int(signum)


INTERRUPTED_EXIT = signal_exit_code(signal.SIGINT)
"""Exit status of a command stopped by Ctrl-C."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived inside :func:`interrupt_on_signals`; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """While active, SIGINT and SIGTERM raise :class:`Interrupted` (SIGTERM would otherwise end
    the process on the spot), so that a command can keep what it finished and exit with
    :func:`signal_exit_code`. The previous handlers come back afterwards."""

    def handler(signum: int, _frame: object) -> None:
        raise Interrupted(signum)

    with stop_signals_handled(handler):
        yield


def option_name(parameter: str) -> str:
    """The command-line spelling of a command function's parameter: ``out_fps`` -> ``--out-fps``."""
    return "--" + parameter.rstrip("_").replace("_", "-")


def check_finite(values: dict[str, object]) -> None:
    """Refuse a NaN or infinite float among a command's option ``values`` (by parameter name).

    typer's ``min``/``max`` bounds do not catch NaN (every comparison with it is false), and an
    infinite frame rate or delay hangs or silently empties a run, so every float is checked here,
    before any work starts.
    """
    for name, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise FnetError(f"{option_name(name)}: expected a finite number, got {value}")


def check_output(
    path: Path,
    option: str,
    *,
    folder: bool = False,
    suffixes: tuple[str, ...] = (),
    inputs: tuple[Path | None, ...] = (),
) -> None:
    """Refuse an output location before any work starts.

    Args:
        path: where the command will write (a file, or with ``folder`` a folder of files).
        option: the option that named it, for the message.
        suffixes: accepted file suffixes, lower case with the dot (empty: any).
        inputs: the command's input files or folders, which the output must not replace.

    Raises:
        InputError: wrong suffix, an input, or a place that cannot be written (a folder where
            a file is expected, a regular file on the way, a read-only folder).
    """
    if suffixes and path.suffix.lower() not in suffixes:
        raise InputError(
            path,
            f"{option} expects a {' or '.join(suffixes)} file, got "
            f"{repr(path.suffix) if path.suffix else 'no suffix'}",
        )
    target = path.resolve()
    for given in inputs:
        if given is not None and given.resolve() == target:
            raise InputError(path, f"would overwrite an input; choose another {option}")
    check_writable(path, folder=folder)


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn :class:`FnetError` into ``error: <message>`` on stderr and exit code 2.

    Before the command runs, every float option is checked to be finite (:func:`check_finite`).
    An :class:`OSError` that reaches the command (an output folder under a regular file, a
    read-only place, a full disk) is reported the same way, as ``error: <path>: <problem>``.
    Ctrl-C exits with :data:`INTERRUPTED_EXIT`.
    """

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            check_finite(kwargs)
            return command(*args, **kwargs)
        except FnetError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None
        except OSError as err:
            where = f"{err.filename}: " if err.filename else ""
            problem = (err.strerror or str(err) or type(err).__name__).lower()
            typer.echo(f"error: {where}{problem}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(INTERRUPTED_EXIT) from None

    return wrapper


def parse_pair(text: str, option: str, example: str = "1,99") -> tuple[float, float]:
    """``"1,99"`` -> ``(1.0, 99.0)``: two finite numbers, the first below the second."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise FnetError(f"{option} expects two numbers like '{example}', got {text!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise FnetError(f"{option} expects low,high with low < high, got {text!r}")
    return low, high


def parse_percentiles(text: str, option: str = "--ir-percentiles") -> tuple[float, float]:
    """``"1,99"`` -> ``(1.0, 99.0)``, with ``0 <= low < high <= 100``."""
    low, high = parse_pair(text, option)
    if low < 0 or high > 100:
        raise FnetError(f"{option} expects percentiles between 0 and 100, got {text!r}")
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
