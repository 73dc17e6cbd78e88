"""SIGINT and SIGTERM handled for the length of a block: the one place that installs handlers.

Long work (the stream pipeline, training, evaluation) turns the two stop signals into "finish
what is running, keep what is done, then stop"; each says what that means with its own handler,
or takes :func:`interrupt_on_signals`, which raises :class:`Interrupted` where the work is, and
exits with :func:`signal_exit_code`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

SignalHandler = Callable[[int, FrameType | None], object]


@contextlib.contextmanager
def stop_signals_handled(handler: SignalHandler) -> Iterator[bool]:
    """Run ``handler(signum, frame)`` on SIGINT and SIGTERM while the block runs.

    Only the main thread can install signal handlers; elsewhere nothing is installed. The
    previous handlers come back when the block ends, however it ends.

    Yields:
        Whether the handlers were installed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield True
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


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
