"""Helpers shared by the command modules: error reporting, option and output checks, progress
(rich bars on a terminal, plain lines every few seconds without one)."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from fnet_deploy.data.color import Luminance
from fnet_deploy.data.thermal import ThermalNorm
from fnet_deploy.data.views import Layout
from fnet_deploy.helpers.atomic import check_writable
from fnet_deploy.helpers.errors import FnetError, InputError
from fnet_deploy.helpers.signals import (
    INTERRUPTED_EXIT,
    Interrupted,
    interrupt_on_signals,
    signal_exit_code,
)

P = ParamSpec("P")
R = TypeVar("R")

console = Console(stderr=True)
_command = contextvars.ContextVar("command", default="")
"""The running command's name (its function's, less ``_command``), for progress lines."""
console.soft_wrap = not console.is_terminal  # a log file gets whole lines, not 80-column pieces


def notice(text: str) -> None:
    """Print a status line on stderr as plain text (no rich markup: ``[onnx]`` stays)."""
    console.print(text, markup=False, highlight=False)


WEIGHTS_FILES = "FNet weights: fnet-deploy .safetensors or the published .pth"
"""What every ``--weights`` takes; :data:`WeightsOption` is its one help where omitted means the
packaged weights (``check``'s reference and ``eval``'s method add what differs)."""
WeightsOption = Annotated[
    Path | None, typer.Option(help=f"{WEIGHTS_FILES} (default: the package's own weights).")
]
TORCH_DEVICE_HELP = "Where PyTorch computes: cpu, cuda or cuda:N."
DeviceOption = Annotated[str, typer.Option(help=TORCH_DEVICE_HELP)]
MODEL_HELP = (
    "An exported model instead of --weights: .onnx (FP32/FP16) or a TensorRT .engine/.plan "
    "(fnet-deploy export)."
)
"""``--model``'s help (``eval`` adds the method it becomes)."""
ModelOption = Annotated[Path | None, typer.Option(help=MODEL_HELP)]
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
    str,
    typer.Option(
        help="Where the model computes: cpu or cuda[:N]; ort-trt[:N] for ONNX Runtime's "
        "TensorRT provider on GPU N."
    ),
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
LayoutOption = Annotated[
    Layout,
    typer.Option(
        help="What to write: the fused image, 'side-by-side' (visible | infrared | fused) or a "
        "labelled 'grid' that adds |fused - visible|."
    ),
]


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
    typer.Option(
        help="IR deeper than 8 bits to [0,1]: percentile (clip at --ir-percentiles), minmax "
        "(the image's own range) or fixed (--ir-range); 8-bit IR is always /255."
    ),
]
IrPercentilesOption = Annotated[
    str, typer.Option(help="Low,high percentiles for --ir-norm percentile.")
]
IrRangeOption = Annotated[
    str | None,
    typer.Option(help="Low,high raw counts for --ir-norm fixed (default: the full scale)."),
]


def parse_ir_range(text: str | None) -> tuple[float, float] | None:
    """``--ir-range``: ``"0,16383"`` -> ``(0.0, 16383.0)``; ``None`` stays ``None``."""
    return None if text is None else parse_pair(text, "--ir-range", "0,16383")


def cleans_up_on_signals(command: Callable[P, R]) -> Callable[P, R]:
    """Run ``command`` inside :func:`interrupt_on_signals`, so that SIGTERM, like Ctrl-C, unwinds
    it: its temporary folders and files are removed on the way out (SIGTERM would otherwise end
    the process on the spot and leave them behind). Put it under :func:`reports_errors`, which
    turns the interruption into exit status 128 + the signal's number."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with interrupt_on_signals():
            return command(*args, **kwargs)

    return wrapper


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
    """Turn :class:`FnetError` into ``error: <message>`` on stderr and its exit code (2; 1 for
    :class:`~fnet_deploy.helpers.errors.OutputKept`).

    Before the command runs, every float option is checked to be finite (:func:`check_finite`),
    and so is ``$FNET_DEPLOY_PROGRESS_SECONDS`` (:func:`progress_seconds`).
    An :class:`OSError` that reaches the command (an output folder under a regular file, a
    read-only place, a full disk) is reported the same way, as ``error: <path>: <problem>``.
    Ctrl-C exits with :data:`INTERRUPTED_EXIT`, a signal caught by :func:`interrupt_on_signals`
    with 128 + its number.
    """

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        running = _command.set(command.__name__.removesuffix("_command"))
        try:
            check_finite(kwargs)
            progress_seconds()
            return command(*args, **kwargs)
        except FnetError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(err.exit_code) from None
        except OSError as err:
            where = f"{err.filename}: " if err.filename else ""
            problem = (err.strerror or str(err) or type(err).__name__).lower()
            typer.echo(f"error: {where}{problem}", err=True)
            raise typer.Exit(2) from None
        except RuntimeError as err:
            loop = _symlink_loop(err)
            if loop is None:
                raise
            typer.echo(
                f"error: {loop}: is a symlink loop (a link that leads back to itself)", err=True
            )
            raise typer.Exit(2) from None
        except KeyboardInterrupt as err:
            typer.echo("interrupted", err=True)
            code = signal_exit_code(err.signum) if isinstance(err, Interrupted) else None
            raise typer.Exit(code or INTERRUPTED_EXIT) from None
        finally:
            _command.reset(running)

    return wrapper


def _symlink_loop(err: RuntimeError) -> str | None:
    """The path of pathlib's ``RuntimeError("Symlink loop from '<path>'")`` (Python < 3.13;
    later versions raise :class:`OSError` ``ELOOP``), else ``None``."""
    text = str(err)
    prefix = "Symlink loop from "
    if not text.startswith(prefix):
        return None
    return text.removeprefix(prefix).strip("'\"")


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


PROGRESS_ENV = "FNET_DEPLOY_PROGRESS_SECONDS"
"""Environment variable: seconds between plain progress lines (default 5)."""
DEFAULT_PROGRESS_SECONDS = 5.0
ANNOUNCE_SECONDS = 1.0
"""A phase is announced once it has lasted this long (or the interval, if that is shorter): work
that ends sooner, or input refused at once, prints nothing. At 0 every phase is announced as it
begins, in the calling thread (what tests of input refused before any work use: a phase line
then always shows, however fast the machine)."""


def progress_seconds() -> float:
    """Seconds between plain progress lines: ``$FNET_DEPLOY_PROGRESS_SECONDS``, default 5.

    Raises:
        FnetError: the variable is set to something other than a positive number.
    """
    text = os.environ.get(PROGRESS_ENV, "").strip()
    if not text:
        return DEFAULT_PROGRESS_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise FnetError(f"${PROGRESS_ENV}: expected a positive number of seconds, got {text!r}")
    return value


class ProgressLines:
    """Plain progress lines on stderr, printed by a background thread, for runs without a terminal.

    Work is a sequence of phases (:meth:`begin`). A phase is announced with its label once it has
    lasted :data:`ANNOUNCE_SECONDS` (or the interval, if shorter), then ``status()`` (default: the
    label) is printed every ``interval`` seconds with the phase's elapsed time, whatever the main
    thread is doing (one long model call included); phases that follow each other faster than
    that still get a line every ``interval``. Lines start with the command's name:
    ``stream: 120 fused of 120 visible frames read, 4.10 fps, ... (30 s)``.

    Args:
        interval: seconds between lines (default :func:`progress_seconds`).
    """

    def __init__(self, interval: float | None = None) -> None:
        self.interval = interval or progress_seconds()
        self.delay = min(ANNOUNCE_SECONDS, self.interval)
        self.prefix = f"{name}: " if (name := _command.get()) else ""
        self._wake = threading.Condition()
        self._label: str | None = None
        self._status: Callable[[], str] | None = None
        self._since = 0.0
        self._last = 0.0
        self._announced = False
        self._closing = False
        self._thread: threading.Thread | None = None

    def begin(self, label: str, status: Callable[[], str] | None = None) -> None:
        """Start a phase (ending the previous one): ``label`` says what it does, ``status`` what
        it has done so far (called from the background thread)."""
        at_once = self.delay <= 0
        with self._wake:
            self._label, self._status = label, status
            self._since = time.monotonic()
            self._announced = at_once
            if self._thread is None:
                self._closing = False
                self._last = self._since
                self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
                self._thread.start()
            if at_once:
                self._last = self._since
            self._wake.notify()
        if at_once:
            self._print(label)

    def close(self) -> None:
        """End the current phase and stop the thread (idempotent)."""
        with self._wake:
            thread, self._thread = self._thread, None
            self._closing = True
            self._label = None
            self._wake.notify()
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while (due := self._wait()) is not None:
            label, status, elapsed = due
            line = label if elapsed is None else f"{_status_text(label, status)} ({elapsed:.0f} s)"
            self._print(line)

    def _print(self, line: str) -> None:
        console.print(self.prefix + line, markup=False, highlight=False, soft_wrap=True)

    def _wait(self) -> tuple[str, Callable[[], str] | None, float | None] | None:
        """Wait for the next line: ``(label, status, elapsed)`` of the phase (``elapsed`` None
        for its announcement), or None once closing. Lines are printed outside the lock."""
        with self._wake:
            while not self._closing:
                if self._label is None:
                    self._wake.wait()
                    continue
                now = time.monotonic()
                due = self._last + self.interval  # never silent longer, however phases change
                if not self._announced:
                    due = min(due, self._since + self.delay)
                if now < due:
                    self._wake.wait(due - now)
                    continue
                elapsed = now - self._since if self._announced else None
                self._announced, self._last = True, now
                return self._label, self._status, elapsed
            return None


def _status_text(label: str, status: Callable[[], str] | None) -> str:
    """``status()``, or ``label`` without one (or when it fails: the lines must go on)."""
    if status is None:
        return label
    try:
        return status()
    except Exception as err:  # a failing status only loses that line's text
        return f"{label} ({type(err).__name__} in its status)"


@contextlib.contextmanager
def phase(
    label: str, status: Callable[[], str] | None = None, *, spinner: bool = False
) -> Iterator[ProgressLines | None]:
    """Long work that says what it is doing: without a terminal, plain lines
    (:class:`ProgressLines`: ``label`` once it has lasted a second, then ``status()`` every
    ``$FNET_DEPLOY_PROGRESS_SECONDS``); on a terminal nothing, or with ``spinner`` rich's status
    spinner showing ``label``. Yields the lines (``None`` on a terminal), whose :meth:`begin`
    starts a next phase."""
    if console.is_terminal:
        with console.status(label) if spinner else contextlib.nullcontext():
            yield None
        return
    lines = ProgressLines()
    lines.begin(label, status)
    try:
        yield lines
    finally:
        lines.close()


@dataclass
class _PlainTask:
    description: str
    total: float | None
    completed: float
    started: float = field(default_factory=time.monotonic)
    fields: dict[str, Any] = field(default_factory=dict)
    first: float | None = None
    """``completed`` when the task began (a resumed run's steps done before), so that the time
    left is estimated from the steps done since."""

    def __post_init__(self) -> None:
        if self.first is None:
            self.first = self.completed

    def describe(self) -> str:
        done = f": {self.completed:g}/{self.total:g}" if self.total is not None else ""
        extra = "".join(f", {value}" for value in self.fields.values() if value not in ("", None))
        left = ""
        since = self.completed - (self.first or 0.0)
        if self.total is not None and since > 0 and self.completed < self.total:
            spent = time.monotonic() - self.started
            left = f", about {spent / since * (self.total - self.completed):.0f} s left"
        return f"{self.description}{done}{extra}{left}"


class PlainProgress:
    """What the commands use of rich's :class:`~rich.progress.Progress`, as plain lines for runs
    without a terminal (:class:`ProgressLines`): each task added or renamed starts a phase, then
    ``description: done/total, fields, about N s left (elapsed)`` every few seconds."""

    def __init__(self) -> None:
        self.console = console
        self._lines = ProgressLines()
        self._tasks: dict[TaskID, _PlainTask] = {}

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        """Nothing to start: lines begin with the first task."""

    def stop(self) -> None:
        """Stop printing."""
        self._lines.close()

    def add_task(
        self,
        description: str,
        start: bool = True,
        total: float | None = 100.0,
        completed: int = 0,
        visible: bool = True,
        **fields: Any,
    ) -> TaskID:
        """A new task, announced as a phase."""
        task = TaskID(len(self._tasks))
        self._tasks[task] = _PlainTask(description, total, completed, fields=fields)
        self._begin(task)
        return task

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        """Count ``advance`` more steps done."""
        self._tasks[task_id].completed += advance

    def update(
        self,
        task_id: TaskID,
        *,
        total: float | None = None,
        completed: float | None = None,
        advance: float | None = None,
        description: str | None = None,
        **fields: Any,
    ) -> None:
        """Change a task; a new description starts a new phase."""
        task = self._tasks[task_id]
        task.total = total if total is not None else task.total
        task.completed = completed if completed is not None else task.completed
        task.completed += advance or 0
        task.fields.update(fields)
        if description is not None and description != task.description:
            task.description = description
            self._begin(task_id)

    def _begin(self, task_id: TaskID) -> None:
        task = self._tasks[task_id]
        self._lines.begin(task.describe(), task.describe)


def progress_bar(*columns: ProgressColumn) -> Progress | PlainProgress:
    """A rich progress bar on stderr: description, bar, count, then ``columns`` (a command's own,
    such as a loss or a speed), elapsed and remaining time; without a terminal, plain lines every
    few seconds (:class:`PlainProgress`)."""
    if not console.is_terminal:
        return PlainProgress()
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *columns,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
