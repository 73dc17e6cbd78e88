"""Pairing visible frames with the infrared frame nearest in time (pure logic, no threads).

The visible stream leads: every visible frame at time ``t`` is paired with the IR frame whose
corrected time ``t_ir + ir_offset`` is nearest to ``t``, if that is within ``max_skew``; otherwise
it is dropped for lack of a partner. An IR frame may serve several visible frames (IR slower than
visible) or none (IR faster; counted as unused).

A decision for ``t`` is final once no IR frame still to come can be nearer: when the IR stream has
reached past ``t`` (its frames arrive in time order), when it has ended, or when a *watermark*
(a promise that no later IR frame is stamped earlier) has passed. Live sources give watermarks
from the host clock so that a stalled IR camera drops visible frames instead of stalling them.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass

from fnet_deploy.runtime.sources import Frame


@dataclass(frozen=True)
class Paired:
    """A visible frame and its IR partner; ``skew`` = corrected IR time - visible time (s)."""

    vis: Frame
    ir: Frame
    skew: float


@dataclass(frozen=True)
class Unpaired:
    """A visible frame without an IR frame within ``max_skew``.

    ``nearest`` is the distance to the nearest IR frame seen (s), ``None`` if there was none.
    """

    vis: Frame
    nearest: float | None


Decision = Paired | Unpaired


def default_max_skew(vis_fps: float | None, ir_fps: float | None, fallback_fps: float) -> float:
    """Half the frame period of the slower stream (rates unknown count as ``fallback_fps``)."""
    rates = [fps if fps and fps > 0 else fallback_fps for fps in (vis_fps, ir_fps)]
    return 0.5 / min(rates)


class FramePairer:
    """Online nearest-in-time pairing of visible frames with IR frames.

    Feed frames with :meth:`add_vis` / :meth:`add_ir` (each stream in time order), then collect
    decisions, in visible order, with :meth:`pop`.

    Args:
        max_skew: largest allowed ``|t_ir + ir_offset - t_vis|`` in seconds.
        ir_offset: seconds added to IR timestamps to put them on the visible clock (an IR camera
            whose frames are stamped 40 ms late takes ``-0.040``).
    """

    def __init__(self, max_skew: float, ir_offset: float = 0.0) -> None:
        if not max_skew >= 0:
            raise ValueError(f"max_skew must be >= 0, got {max_skew}")
        self.max_skew = max_skew
        self.ir_offset = ir_offset
        self.paired = 0
        self.unpaired = 0
        self.ir_unused = 0
        self.ir_out_of_order = 0
        self._vis: collections.deque[Frame] = collections.deque()
        self._ir: collections.deque[tuple[float, Frame, bool]] = collections.deque()
        self._watermark = -math.inf
        self._last_vis = -math.inf

    @property
    def waiting(self) -> bool:
        """Whether a visible frame waits for IR frames to be decided."""
        return bool(self._vis)

    @property
    def pending(self) -> int:
        """Visible frames added and not decided yet."""
        return len(self._vis)

    def add_vis(self, frame: Frame) -> None:
        """Queue a visible frame for pairing."""
        self._vis.append(frame)

    def add_ir(self, frame: Frame) -> None:
        """Offer an IR frame; one stamped earlier than the last one is ignored (and counted)."""
        corrected = frame.timestamp + self.ir_offset
        if self._ir and corrected < self._ir[-1][0]:
            self.ir_out_of_order += 1
            return
        self._ir.append((corrected, frame, False))
        self._watermark = max(self._watermark, corrected)

    def advance_ir(self, time: float) -> None:
        """Promise that no IR frame still to come has a corrected time before ``time``."""
        self._watermark = max(self._watermark, time)

    def end_ir(self) -> None:
        """The IR stream has ended: every waiting frame can be decided."""
        self._watermark = math.inf

    def pop(self) -> list[Decision]:
        """Decisions that are final now, in visible order."""
        decisions: list[Decision] = []
        while self._vis:
            decision = self._decide(self._vis[0])
            if decision is None:
                break
            self._vis.popleft()
            decisions.append(decision)
            self._last_vis = decision.vis.timestamp
            self._prune()
        return decisions

    def finish(self) -> list[Decision]:
        """End of the visible stream: decide what waits and count IR frames never used."""
        self.end_ir()
        decisions = self.pop()
        self.ir_unused += sum(1 for _, _, used in self._ir if not used)
        self._ir.clear()
        return decisions

    def _decide(self, vis: Frame) -> Decision | None:
        t = vis.timestamp
        best_index, best = -1, math.inf
        for i, (corrected, _, _) in enumerate(self._ir):
            distance = abs(corrected - t)
            if distance < best:
                best_index, best = i, distance
            elif corrected > t:
                break
        horizon = self._watermark - t
        if best > horizon and horizon <= self.max_skew:
            return None
        if best <= self.max_skew:
            corrected, frame, _ = self._ir[best_index]
            self._ir[best_index] = (corrected, frame, True)
            self.paired += 1
            return Paired(vis, frame, corrected - t)
        self.unpaired += 1
        return Unpaired(vis, None if best_index < 0 else best)

    def _prune(self) -> None:
        """Drop IR frames no later visible frame (time >= the last decided) can pair with."""
        t = self._last_vis
        while self._ir:
            corrected, _, used = self._ir[0]
            superseded = len(self._ir) > 1 and self._ir[1][0] <= t
            if not (superseded or corrected < t - self.max_skew):
                break
            self._ir.popleft()
            self.ir_unused += not used
