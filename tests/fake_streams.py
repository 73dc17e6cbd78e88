"""In-process stand-ins for a model, recordings, cameras and outputs, for tests of the runtime where
the model and the codecs are not the point: many pairs, long runs, stops and camera outages then
cost little CPU and do not depend on the machine's speed."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import numpy as np

from fnet_deploy.backends.base import OUTPUT_NAME, Runner
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.runtime.sinks import Sink
from fnet_deploy.runtime.sources import Frame, Source, SourceLost
from fnet_deploy.runtime.uri import URI


def wait_for(condition: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    """Poll ``condition`` until it holds; fail (``no <what> within <limit> s``) after ``limit``
    seconds."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {limit:g} s"
        time.sleep(0.01)


class EchoRunner(Runner):
    """A stand-in model that averages: ``fused = (ir + vis) / 2``, N x 1 x H x W float32.

    Args:
        on_call: called inside each call with its number (1, 2, ...) and the feed, before the
            result is returned (e.g. to request a stop while a batch is in progress).

    Attributes:
        calls: calls made so far.
    """

    name = "echo"

    def __init__(self, on_call: Callable[[int, dict[str, np.ndarray]], None] | None = None) -> None:
        super().__init__()
        self.on_call = on_call
        self.calls = 0

    def _activate(self) -> None:
        """Nothing to load."""

    def _deactivate(self) -> None:
        """Nothing to release."""

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls += 1
        if self.on_call is not None:
            self.on_call(self.calls, feed)
        return {OUTPUT_NAME: (feed["ir"] + feed["vis"]) / 2.0}


def pattern(index: int, size: tuple[int, int], colour: bool) -> np.ndarray:
    """Frame ``index`` of a moving diagonal ramp: H x W x 3 BGR (``colour``) or H x W, uint8.

    Args:
        index: frame number (the ramp moves one pixel per frame).
        size: ``(width, height)``.
        colour: BGR with distinct channels, else grey.
    """
    width, height = size
    ramp = (np.add.outer(np.arange(height), np.arange(width)) * 4 + index) % 256
    grey = ramp.astype(np.uint8)
    if not colour:
        return grey
    return np.dstack([grey, 255 - grey, np.full_like(grey, 128)])


class Recording(Source):
    """A recorded (finite) source of ``frames`` :func:`pattern` frames at ``fps``, frame ``i``
    stamped ``i / fps``."""

    def __init__(
        self, name: str, frames: int, size: tuple[int, int], colour: bool, fps: float = 10.0
    ) -> None:
        super().__init__(URI("file", name, name))
        self.frames, self.size, self.colour, self._fps = frames, size, colour, fps
        self._index = 0

    @property
    def fps(self) -> float | None:
        return self._fps

    def open(self) -> None:
        self._index = 0

    def read(self) -> Frame | None:
        if self._index >= self.frames:
            return None
        now = time.monotonic()
        frame = Frame(
            pattern(self._index, self.size, self.colour), self._index / self._fps, self._index, now
        )
        self._index += 1
        return frame

    def close(self) -> None:
        """Nothing to release."""


class Camera(Source):
    """A live camera delivering :func:`pattern` frames on the host clock, frame ``n`` at
    ``epoch + n / fps`` (cameras given one ``epoch`` tick together), stamped when grabbed.

    :meth:`unplug` loses it: reads raise :class:`SourceLost` and opens fail, as for a camera
    whose cable was pulled, until :meth:`plug`.
    """

    live = True

    def __init__(
        self, name: str, size: tuple[int, int], colour: bool, fps: float, epoch: float
    ) -> None:
        super().__init__(URI("rtsp", name, name))
        self.size, self.colour, self._fps, self.epoch = size, colour, fps, epoch
        self._plugged = threading.Event()
        self._plugged.set()
        self._open = False
        self._index = 0

    @property
    def fps(self) -> float | None:
        return self._fps

    def unplug(self) -> None:
        """The camera goes away."""
        self._plugged.clear()

    def plug(self) -> None:
        """The camera is back (the next reconnection attempt opens it)."""
        self._plugged.set()

    def open(self) -> None:
        if not self._plugged.is_set():
            raise FnetError(f"{self.name}: cannot open (camera unplugged)")
        self._open = True

    def read(self) -> Frame | None:
        if not (self._open and self._plugged.is_set()):
            raise SourceLost("camera unplugged")
        start = time.monotonic()
        slot = max(self._index, math.ceil((start - self.epoch) * self._fps))
        time.sleep(max(0.0, self.epoch + slot / self._fps - start))
        if not self._plugged.is_set():
            raise SourceLost("camera unplugged")
        self._index = slot + 1
        now = time.monotonic()
        return Frame(pattern(slot, self.size, self.colour), now, slot, now, now - start)

    def close(self) -> None:
        self._open = False


class MemorySink(Sink):
    """Counts the frames written (they are kept nowhere) and remembers being closed."""

    def __init__(self, name: str) -> None:
        super().__init__(URI("file", name, name))
        self.closed = False

    def _write(self, image: np.ndarray) -> None:
        """Keep nothing: :attr:`written` counts the frame."""

    def close(self) -> None:
        self.closed = True
