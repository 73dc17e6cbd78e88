"""Reading a source in its own thread into a bounded queue.

Finite sources (files, folders) lose nothing: the thread waits while the queue is full. Live
sources keep only the newest frame: when the consumer falls behind, the older frame is dropped
(and counted) so latency does not grow. A live source that stops is reopened with exponential
backoff (capped at :data:`BACKOFF_MAX` seconds) until ``reconnect_timeout`` seconds have passed
without a frame, or forever when it is ``math.inf``; each outage is recorded in an
:class:`~fnet_deploy.runtime.stats.OutageLog`.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from dataclasses import dataclass

from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.runtime.sources import LIVE_TIMEOUT_MS, CorruptFrame, Frame, Source, SourceLost
from fnet_deploy.runtime.stats import OutageLog

log = logging.getLogger("fnet_deploy.runtime")

FILE_QUEUE_SIZE = 2
LIVE_QUEUE_SIZE = 1
BACKOFF_START = 0.5
BACKOFF_MAX = 8.0
RETRY_REPORT_SECONDS = 60.0
"""While a source stays lost, failed attempts after the third are reported at most this often."""


@dataclass
class CaptureCounts:
    """What a capture thread saw, updated by the thread and read by the pipeline."""

    read: int = 0
    dropped: int = 0
    corrupt: int = 0
    reconnects: int = 0


class End:
    """Marks the end of a source in the queue; ``reason`` says why when it is not a clean end."""

    def __init__(self, reason: str | None = None) -> None:
        self.reason = reason


class Capture:
    """Runs ``source.read`` in a daemon thread; :meth:`get` hands out frames in order.

    The source must already be open (so that opening errors reach the caller directly).

    Args:
        source: an opened source.
        role: ``vis`` or ``ir``, for messages.
        reconnect_timeout: seconds a live source may stay lost before the run gives it up
            (0: no reconnection; ``math.inf``: retry forever).
        outages: where each loss and its length are recorded (a log of its own if not given).
    """

    def __init__(
        self,
        source: Source,
        role: str,
        reconnect_timeout: float = 30.0,
        outages: OutageLog | None = None,
    ) -> None:
        self.source = source
        self.role = role
        self.reconnect_timeout = reconnect_timeout
        self.outages = outages if outages is not None else OutageLog()
        self.counts = CaptureCounts()
        self.reconnecting = False
        self._size = LIVE_QUEUE_SIZE if source.live else FILE_QUEUE_SIZE
        self._queue: collections.deque[Frame | End] = collections.deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._grab_started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"capture-{role}", daemon=True)

    @property
    def live(self) -> bool:
        """Whether the source is live (host-clock timestamps, keep-newest queue)."""
        return self.source.live

    def start(self) -> None:
        """Start reading."""
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end, wait for it briefly, and close the source."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.ident is None:  # never started
            self.source.close()
            return
        self._thread.join(timeout=LIVE_TIMEOUT_MS / 1000.0 + 1.0 if self.source.live else 2.0)
        if not self._thread.is_alive():
            self.source.close()

    def get(self, timeout: float) -> Frame | End | None:
        """The next frame, an :class:`End` marker, or ``None`` when none came within ``timeout``."""
        with self._cond:
            if not self._queue:
                self._cond.wait(timeout)
            if not self._queue:
                return None
            item = self._queue.popleft()
            self._cond.notify_all()
            return item

    def queued_frames(self) -> int:
        """Frames read and not handed out by :meth:`get` yet."""
        with self._cond:
            return sum(isinstance(item, Frame) for item in self._queue)

    def lower_bound(self) -> float | None:
        """For a live source: no frame still to come will be stamped earlier than this.

        Frames are stamped after their grab starts; when nothing is queued, every frame still to
        come belongs to the current grab or a later one (or, while reconnecting, comes after
        now). ``None`` when this cannot be said (a
        finite source, or frames waiting in the queue).
        """
        if not self.source.live:
            return None
        started = time.monotonic() if self.reconnecting else self._grab_started
        with self._cond:
            return started if not self._queue else None

    def _put(self, item: Frame | End) -> None:
        with self._cond:
            if self.source.live:
                while len(self._queue) >= self._size and isinstance(self._queue[0], Frame):
                    self._queue.popleft()
                    self.counts.dropped += 1
            else:
                while len(self._queue) >= self._size and not self._stop.is_set():
                    self._cond.wait(0.1)
            self._queue.append(item)
            self._cond.notify_all()

    def _run(self) -> None:
        try:
            reason = self._loop()
        except FnetError as err:  # a source that cannot go on (a camera giving the wrong format)
            reason = str(err)
            log.error("%s source %s stopped: %s", self.role, self.source.name, reason)
        except Exception as err:  # a bug or an unexpected library error: end with its message
            reason = f"{type(err).__name__}: {err}"
            log.error("%s source %s stopped: %s", self.role, self.source.name, reason)
        self._put(End(reason))

    def _loop(self) -> str | None:
        while not self._stop.is_set():
            self._grab_started = time.monotonic()
            try:
                frame = self.source.read()
            except CorruptFrame as err:
                self.counts.corrupt += 1
                log.warning("%s source %s: skipped corrupt %s", self.role, self.source.name, err)
                continue
            except SourceLost as err:
                if not self._reconnect(str(err)):
                    return f"lost and not back within {self.reconnect_timeout:g} s ({err})"
                continue
            if frame is None:
                return self.source.ended_early
            self.counts.read += 1
            self._put(frame)
        return None

    def _reconnect(self, problem: str) -> bool:
        """Reopen a lost live source with capped exponential backoff; ``False`` when it gives up
        (never while ``reconnect_timeout`` is infinite, unless asked to stop)."""
        self.reconnecting = True
        lost_at = time.monotonic()
        self.outages.lost(self.role, lost_at)
        forever = math.isinf(self.reconnect_timeout)
        deadline = lost_at + self.reconnect_timeout
        delay = BACKOFF_START
        attempt = 0
        reported = lost_at
        how_long = "forever" if forever else f"for up to {self.reconnect_timeout:g} s"
        log.warning(
            "%s source %s lost (%s); reconnecting %s",
            self.role,
            self.source.name,
            problem,
            how_long,
        )
        self.source.close()
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if self._stop.wait(min(delay, remaining)):
                break
            attempt += 1
            try:
                self.source.open()
            except FnetError as err:
                now = time.monotonic()
                if attempt <= 3 or now - reported >= RETRY_REPORT_SECONDS:
                    reported = now
                    log.warning(
                        "%s source: reconnect attempt %d failed after %.0f s lost (%s)",
                        self.role,
                        attempt,
                        now - lost_at,
                        err,
                    )
                delay = min(delay * 2.0, BACKOFF_MAX)
                continue
            self.counts.reconnects += 1
            self.reconnecting = False
            seconds = self.outages.back(self.role, time.monotonic())
            log.warning(
                "%s source %s reconnected after %.1f s (attempt %d)",
                self.role,
                self.source.name,
                seconds,
                attempt,
            )
            return True
        self.reconnecting = False
        return False
