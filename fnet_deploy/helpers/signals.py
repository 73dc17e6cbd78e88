"""SIGINT and SIGTERM handled for the length of a block: the one place that installs handlers.

Long work (the stream pipeline, training, evaluation) turns the two stop signals into "finish
what is running, keep what is done, then stop"; each says what that means with its own handler.
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
