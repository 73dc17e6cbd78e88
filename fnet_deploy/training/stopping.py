"""How training ends early: Ctrl-C / SIGTERM turned into a request to stop after the current
iteration, and the exceptions that say why a run stopped (signal, time box, divergence)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.helpers.signals import stop_signals_handled
from fnet_deploy.training.checkpoint import read_train_info
from fnet_deploy.training.layout import STAGE_NAMES, RunLayout


class TrainingStopped(FnetError):
    """The run was interrupted (Ctrl-C / SIGTERM) and its state saved.

    Attributes:
        signum: the signal that stopped it (SIGINT when not known, e.g. another process's).
    """

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.signum = signum


class TimeBoxReached(TrainingStopped):
    """The invocation reached its time box (``max_minutes``) and its state was saved."""


class TrainingDiverged(FnetError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def diverged_message(stage: int, step: int, value: float, layout: RunLayout) -> str:
    """The :class:`TrainingDiverged` message: where the loss went bad, what was kept, what next."""
    path = layout.state(stage)
    if path.exists():
        kept = f"the last good checkpoint is {path} (iteration {read_train_info(path)['step']})"
    else:
        kept = "no checkpoint had been written yet in this stage"
    return (
        f"{STAGE_NAMES[stage]} loss became {value} at iteration {step}; training stopped and "
        f"{kept}. Lower --lr (or check the data) and continue with --resume"
    )


class StopRequest:
    """Turns SIGINT / SIGTERM into a request to stop after the current iteration.

    A second Ctrl-C interrupts at once (the last complete checkpoint is still on disk).
    Handlers are installed only in the main thread and restored on exit.
    """

    def __init__(self) -> None:
        self.requested = False
        self.signum: int = signal.SIGINT

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        self.signum = signum
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Install the handlers for the duration of the ``with`` block."""
        with stop_signals_handled(self._handle):
            yield self


def ignore_interrupts(_worker: int) -> None:
    """DataLoader workers leave Ctrl-C to the training process, which saves and stops."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
