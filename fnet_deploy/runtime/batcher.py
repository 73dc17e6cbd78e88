"""Batching frames of several camera pairs into one runner call (as nvstreammux does).

Every pair (a *lane*) hands one prepared frame at a time to the :class:`Batcher` through its
:class:`LaneRunner` and waits for the fused result; one thread (:meth:`Batcher.serve`) runs the
model. Frames of the same size (H x W) form a batch; frames of different sizes are never padded
into one batch: each size is its own group and gets its own calls.

A group's batch is pushed when

- it is *full*: every lane expected for that size has a frame waiting (or ``max_batch`` frames
  wait), or
- its oldest frame has waited ``timeout`` seconds (nvstreammux's ``batched-push-timeout``): a
  late lane never holds the others back longer than that.

Expected lanes are the running lanes of that size (or of a size not known yet, before their
first frame) that were not *late*: a lane missing from a batch pushed by the timeout is not
waited for again until it hands in its next frame, so a dead camera costs the others one timeout,
not one per batch.

Faults stay with their lane: when a batched call fails, each of its frames is run again alone,
so only the lane whose frame fails gets the error.

A stop request ends the batching at once: the batch in progress finishes, the frames still
waiting and any handed in later get :class:`BatcherClosed` (counted in
:attr:`Batcher.dropped_on_stop`), so a stop with many lanes costs one call, not one per waiting
batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fnet_deploy.backends.base import OUTPUT_NAME, Runner
from fnet_deploy.data.images import Size
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.runtime.stats import LatencySeries

POLL_SECONDS = 0.05


class BatcherClosed(FnetError):
    """The batcher stopped batching (a stop request, an interrupt) before this frame was fused."""


@dataclass
class _Item:
    """One lane's frame waiting for its batch: inputs 1 x 1 x H x W, and then its result."""

    lane: LaneRunner
    ir: np.ndarray
    vis: np.ndarray
    submitted: float
    done: threading.Event = field(default_factory=threading.Event)
    output: np.ndarray | None = None
    error: Exception | None = None
    wait_seconds: float = 0.0
    infer_seconds: float = 0.0

    @property
    def size(self) -> Size:
        """``(width, height)`` of the frame."""
        return self.ir.shape[3], self.ir.shape[2]


@dataclass
class GroupStats:
    """Accounting of the batches of one frame size.

    Attributes:
        calls: runner calls made for full or timed-out batches (retries of a failed batch apart).
        frames: frames those calls fused.
        capacity: sum over calls of the batch size the group could have had: its running lanes
            (capped at ``max_batch``).
        by_timeout: calls pushed by the timeout rather than full.
        failed_calls: batched calls that failed and were run again one frame at a time.
        sizes: number of calls per batch size.
        infer: wall time of each call.
    """

    calls: int = 0
    frames: int = 0
    capacity: int = 0
    by_timeout: int = 0
    failed_calls: int = 0
    sizes: dict[int, int] = field(default_factory=dict)
    infer: LatencySeries = field(default_factory=LatencySeries)

    def add(self, other: GroupStats) -> None:
        """Add ``other``'s counts (not its latencies) to these."""
        self.calls += other.calls
        self.frames += other.frames
        self.capacity += other.capacity
        self.by_timeout += other.by_timeout
        self.failed_calls += other.failed_calls
        for size, count in other.sizes.items():
            self.sizes[size] = self.sizes.get(size, 0) + count

    def to_dict(self) -> dict[str, Any]:
        """Counts, mean batch size, fill ratio (frames / capacity) and call times (ms)."""
        return {
            "calls": self.calls,
            "frames": self.frames,
            "mean_batch": round(self.frames / self.calls, 3) if self.calls else None,
            "fill_ratio": round(self.frames / self.capacity, 4) if self.capacity else None,
            "pushed_by_timeout": self.by_timeout,
            "failed_calls": self.failed_calls,
            "batch_sizes": {str(size): self.sizes[size] for size in sorted(self.sizes)},
            "infer_ms": self.infer.summary(),
        }


class LaneRunner(Runner):
    """What one pair's pipeline sees as its runner: each call waits for the batch its frame
    joins. Created by :meth:`Batcher.lane`; active from the start (the batcher's runner is).

    After each call, :attr:`last_inference_time` is the wall time of the batched runner call
    that fused the frame; :attr:`waits` records how long each fused frame waited for its batch.
    """

    def __init__(self, batcher: Batcher, name: str) -> None:
        super().__init__()
        self.name = batcher.runner.name
        self.lane_name = name
        self.batcher = batcher
        self.is_active = True
        self.waits = LatencySeries()
        self.size: Size | None = None
        self.open = True
        self.late = False
        self._last: _Item | None = None

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Fuse one frame (``feed``: ``ir``, ``vis`` 1 x 1 x H x W float32) in a batch."""
        out = super().infer(feed)
        assert self._last is not None
        self.last_inference_time = self._last.infer_seconds
        self.waits.add(self._last.wait_seconds)
        return out

    def close(self) -> None:
        """The lane's pipeline has ended: batches no longer wait for it."""
        self.batcher.close_lane(self)

    def _activate(self) -> None:
        """Nothing to load: the batcher's runner is activated by its owner."""

    def _deactivate(self) -> None:
        """Nothing to release (see :meth:`_activate`)."""

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        item = self.batcher.submit(self, feed["ir"], feed["vis"])
        self._last = item
        if item.error is not None:
            raise item.error
        assert item.output is not None
        return {OUTPUT_NAME: item.output}


class Batcher:
    """Collects the lanes' frames into batches and runs them on one runner.

    Args:
        runner: an activated runner taking N x 1 x H x W inputs.
        timeout: seconds the oldest frame of a batch may wait for the rest of it.
        max_batch: most frames in one call (``None``: as many as there are lanes).

    Attributes:
        dropped_on_stop: frames refused because batching had stopped: those waiting for their
            batch at the stop, those handed in after it, and those of a call an interrupt cut
            short.
    """

    def __init__(self, runner: Runner, timeout: float, max_batch: int | None = None) -> None:
        if not timeout >= 0:
            raise ValueError(f"timeout must be >= 0, got {timeout}")
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.runner = runner
        self.timeout = timeout
        self.max_batch = max_batch
        self.groups: dict[Size, GroupStats] = {}
        self.dropped_on_stop = 0
        self._lanes: list[LaneRunner] = []
        self._pending: list[_Item] = []
        self._cond = threading.Condition()
        self._closed = False

    def lane(self, name: str) -> LaneRunner:
        """A new lane (one per camera pair), expected in batches until :meth:`close_lane`."""
        lane = LaneRunner(self, name)
        with self._cond:
            self._lanes.append(lane)
        return lane

    def close_lane(self, lane: LaneRunner) -> None:
        """``lane`` will hand in no more frames (its pipeline ended)."""
        with self._cond:
            lane.open = False
            self._cond.notify_all()

    def submit(self, lane: LaneRunner, ir: np.ndarray, vis: np.ndarray) -> _Item:
        """Hand in one frame (1 x 1 x H x W each) and wait until its batch has run.

        Returns:
            The item, with ``output`` (1 x 1 x H x W float32) or ``error`` set.
        """
        item = _Item(lane, ir, vis, time.monotonic())
        with self._cond:
            if self._closed:
                self._refuse(item)
                return item
            lane.size = item.size
            lane.late = False
            self._pending.append(item)
            self._cond.notify_all()
        item.done.wait()
        return item

    def serve(
        self,
        tick: Callable[[], None] | None = None,
        tick_seconds: float = POLL_SECONDS,
        failing: Callable[[BaseException], None] | None = None,
        stopping: Callable[[], bool] | None = None,
    ) -> None:
        """Run batches until every lane is closed; call ``tick`` about every ``tick_seconds``.

        Once ``stopping()`` is true (checked before each batch is taken), no batch starts any
        more: the frames waiting get :class:`BatcherClosed`, as do those handed in later, while
        ``tick`` goes on until every lane is closed. However it ends (an interrupt, an exception
        in ``tick``), frames still waiting get :class:`BatcherClosed` and later ones are refused,
        so no lane waits forever; when it ends on an exception, ``failing(exception)`` is called
        first (to stop the lanes).
        """
        last_tick = time.monotonic()
        try:
            while True:
                batch = self._next_batch(min(POLL_SECONDS, tick_seconds), stopping)
                if batch:
                    self._run(batch)
                now = time.monotonic()
                if tick is not None and now - last_tick >= tick_seconds:
                    tick()
                    last_tick = now
                if batch is None:
                    return
        except BaseException as err:
            if failing is not None:
                failing(err)
            raise
        finally:
            self._close()

    def summary(self) -> GroupStats:
        """All groups' counts together (call times are per group only)."""
        total = GroupStats()
        for group in self.groups.values():
            total.add(group)
        return total

    def _close(self) -> None:
        """Refuse the waiting frames and any later ones (the lock is reentrant)."""
        with self._cond:
            self._closed = True
            stranded, self._pending = self._pending, []
            for item in stranded:
                self._refuse(item)
        for item in stranded:
            item.done.set()

    def _refuse(self, item: _Item) -> None:
        """Give ``item`` :class:`BatcherClosed` and count it (under the lock)."""
        item.error = _closed(item.lane)
        self.dropped_on_stop += 1

    def _capacity(self, size: Size) -> int:
        """Frames a batch of ``size`` could hold now: its running lanes, capped."""
        lanes = sum(lane.open and lane.size in (size, None) for lane in self._lanes)
        return min(lanes, self.max_batch or lanes)

    def _expected(self, size: Size) -> int:
        """Frames to wait for before a batch of ``size`` is full (late lanes not waited for)."""
        lanes = sum(
            lane.open and lane.size in (size, None) and not lane.late for lane in self._lanes
        )
        return min(lanes, self.max_batch or lanes)

    def _next_batch(
        self, wait: float, stopping: Callable[[], bool] | None = None
    ) -> list[_Item] | None:
        """A batch ready to run, ``[]`` when none is ready within ``wait``, ``None`` when every
        lane is closed and nothing waits; once ``stopping()`` is true, never a batch."""
        with self._cond:
            deadline = time.monotonic() + wait
            while True:
                if not self._closed and stopping is not None and stopping():
                    self._close()
                if not self._pending and not any(lane.open for lane in self._lanes):
                    return None
                now = time.monotonic()
                soonest = deadline
                for size in dict.fromkeys(item.size for item in self._pending):
                    items = [item for item in self._pending if item.size == size]
                    full = len(items) >= max(self._expected(size), 1)
                    timed_out = now - items[0].submitted >= self.timeout
                    if full or timed_out:
                        batch = items[: self.max_batch or len(items)]
                        return self._take(size, batch, timed_out and not full)
                    soonest = min(soonest, items[0].submitted + self.timeout)
                if now >= deadline:
                    return []
                self._cond.wait(max(0.0, min(soonest, deadline) - now))

    def _take(self, size: Size, batch: list[_Item], by_timeout: bool) -> list[_Item]:
        """Remove ``batch`` from the waiting frames and count it (under the lock)."""
        taken = {id(item) for item in batch}
        self._pending = [item for item in self._pending if id(item) not in taken]
        group = self.groups.setdefault(size, GroupStats())
        group.calls += 1
        group.frames += len(batch)
        group.capacity += max(self._capacity(size), len(batch))
        group.sizes[len(batch)] = group.sizes.get(len(batch), 0) + 1
        if by_timeout:
            group.by_timeout += 1
            present = {id(item.lane) for item in batch}
            for lane in self._lanes:
                if lane.open and lane.size in (size, None) and id(lane) not in present:
                    lane.late = True
        return batch

    def _run(self, batch: list[_Item]) -> None:
        """One runner call for the batch; if it fails, each frame alone."""
        started = time.monotonic()
        group = self.groups[batch[0].size]
        try:
            self._call(batch, started)
            group.infer.add(self.runner.last_inference_time)
        except Exception as err:
            if len(batch) == 1:
                batch[0].error = err
            else:
                group.failed_calls += 1
                for item in batch:
                    try:
                        self._call([item], started)
                    except Exception as alone:
                        item.error = alone
        finally:  # an interrupt during the call still releases the lanes
            with self._cond:
                for item in batch:
                    if item.output is None and item.error is None:
                        self._refuse(item)
            for item in batch:
                item.done.set()

    def _call(self, batch: list[_Item], started: float) -> None:
        feed = {
            "ir": np.concatenate([item.ir for item in batch]),
            "vis": np.concatenate([item.vis for item in batch]),
        }
        fused = self.runner.infer(feed)[OUTPUT_NAME]
        seconds = self.runner.last_inference_time
        for i, item in enumerate(batch):
            # copied: a runner may reuse its output buffer on the next call
            item.output = fused[i : i + 1].copy()
            item.wait_seconds = started - item.submitted
            item.infer_seconds = seconds


def _closed(lane: LaneRunner) -> BatcherClosed:
    return BatcherClosed(f"the run stopped before a frame of pair {lane.lane_name} was fused")
