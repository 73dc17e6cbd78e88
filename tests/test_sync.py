"""Nearest-in-time pairing of visible and IR frames (pure logic, exact timestamps)."""

from __future__ import annotations

import numpy as np
import pytest

from fnet_deploy.runtime.sources import Frame
from fnet_deploy.runtime.sync import FramePairer, Paired, Unpaired, default_max_skew

_IMAGE = np.zeros((2, 2), np.uint8)


def frame(t: float, index: int) -> Frame:
    return Frame(_IMAGE, t, index, 0.0)


def stream(fps: float, count: int, start: float = 0.0) -> list[Frame]:
    return [frame(start + i / fps, i) for i in range(count)]


def run_online(
    vis: list[Frame], ir: list[Frame], max_skew: float, offset: float = 0.0
) -> tuple[list[Paired | Unpaired], FramePairer, int]:
    """Feed both streams the way the pipeline does: IR only while a visible frame waits.

    Returns the decisions, the pairer and how many IR frames it was given.
    """
    pairer = FramePairer(max_skew, offset)
    decisions: list[Paired | Unpaired] = []
    fed = 0
    ir_iter = iter(ir)
    for v in vis:
        pairer.add_vis(v)
        while pairer.waiting:
            decisions += pairer.pop()
            if not pairer.waiting:
                break
            nxt = next(ir_iter, None)
            if nxt is None:
                pairer.end_ir()
            else:
                pairer.add_ir(nxt)
                fed += 1
    decisions += pairer.finish()
    return decisions, pairer, fed


def nearest_offline(t: float, ir: list[Frame], offset: float) -> tuple[int, float]:
    distances = [abs(f.timestamp + offset - t) for f in ir]
    best = int(np.argmin(distances))
    return ir[best].index, distances[best]


def test_equal_rates_pair_one_to_one() -> None:
    decisions, pairer, _fed = run_online(stream(25, 20), stream(25, 20), max_skew=0.02)
    assert [(d.vis.index, d.ir.index) for d in decisions if isinstance(d, Paired)] == [
        (i, i) for i in range(20)
    ]
    assert (pairer.paired, pairer.unpaired, pairer.ir_unused) == (20, 0, 0)


def test_faster_visible_reuses_slower_ir_frames() -> None:
    vis, ir = stream(25, 48), stream(10, 20)
    skew = default_max_skew(25, 10, 30)
    assert skew == pytest.approx(0.05)
    decisions, pairer, _fed = run_online(vis, ir, skew)
    assert all(isinstance(d, Paired) for d in decisions)
    for d in decisions:
        assert isinstance(d, Paired)
        index, distance = nearest_offline(d.vis.timestamp, ir, 0.0)
        assert d.ir.index == index
        assert abs(d.skew) == pytest.approx(distance) and abs(d.skew) <= skew
    # 48 visible frames at 25 fps span 0..1.88 s: IR frames 0..19 are all someone's nearest.
    assert len({d.ir.index for d in decisions if isinstance(d, Paired)}) == 20
    assert pairer.ir_unused == 0


def test_faster_ir_leaves_frames_unused() -> None:
    vis, ir = stream(9, 9), stream(30, 30)
    decisions, pairer, fed = run_online(vis, ir, default_max_skew(9, 30, 30))
    used = [d.ir.index for d in decisions if isinstance(d, Paired)]
    assert used == [round(i * 30 / 9) for i in range(9)]
    # Frames after the last visible one's partner are never read; of those read, the
    # ones no visible frame chose are unused.
    assert fed == used[-1] + 1
    assert pairer.ir_unused == fed - len(set(used))


def test_constant_offset_is_compensated() -> None:
    # The IR camera stamps its frames 40 ms late; with -40 ms they pair exactly.
    vis = stream(10, 10)
    ir = stream(10, 10, start=0.040)
    late, _, _ = run_online(vis, ir, max_skew=0.03)
    assert all(isinstance(d, Unpaired) for d in late)
    fixed, _, _ = run_online(vis, ir, max_skew=0.03, offset=-0.040)
    assert [d.skew for d in fixed if isinstance(d, Paired)] == pytest.approx([0.0] * 10)


def test_gaps_in_ir_drop_visible_frames() -> None:
    vis = stream(10, 30)
    ir = [f for f in stream(10, 30) if not 10 <= f.index < 15]
    decisions, pairer, _fed = run_online(vis, ir, max_skew=0.05)
    dropped = [d.vis.index for d in decisions if isinstance(d, Unpaired)]
    assert dropped == [10, 11, 12, 13, 14]
    assert pairer.paired == 25 and pairer.unpaired == 5
    nearest = {d.vis.index: d.nearest for d in decisions if isinstance(d, Unpaired)}
    assert nearest[12] == pytest.approx(0.3)


def test_matches_offline_nearest_on_irregular_timestamps() -> None:
    rng = np.random.default_rng(3)
    vis = [frame(t, i) for i, t in enumerate(np.cumsum(rng.uniform(0.02, 0.06, 200)))]
    ir = [frame(t, i) for i, t in enumerate(np.cumsum(rng.uniform(0.05, 0.15, 80)))]
    offset, skew = 0.013, 0.04
    decisions, _, _ = run_online(vis, ir, skew, offset)
    assert [d.vis.index for d in decisions] == list(range(200))
    for d in decisions:
        index, distance = nearest_offline(d.vis.timestamp, ir, offset)
        if distance <= skew:
            assert isinstance(d, Paired) and d.ir.index == index
        else:
            assert isinstance(d, Unpaired)


def test_waits_until_ir_reaches_past_the_visible_frame() -> None:
    pairer = FramePairer(max_skew=0.05)
    pairer.add_vis(frame(1.00, 0))
    pairer.add_ir(frame(0.97, 0))
    assert pairer.pop() == [] and pairer.waiting  # an IR frame at 0.99 could still come
    pairer.add_ir(frame(1.02, 1))
    (decision,) = pairer.pop()
    assert isinstance(decision, Paired) and decision.ir.index == 1
    assert decision.skew == pytest.approx(0.02)


def test_watermark_decides_without_further_ir() -> None:
    pairer = FramePairer(max_skew=0.05)
    pairer.add_vis(frame(1.0, 0))
    pairer.advance_ir(1.04)  # an IR frame at 1.04 would still be within the skew
    assert pairer.pop() == []
    pairer.advance_ir(1.06)
    (decision,) = pairer.pop()
    assert isinstance(decision, Unpaired) and decision.nearest is None
    # A frame already held is final once no later frame can be nearer.
    pairer.add_ir(frame(1.18, 0))
    pairer.add_vis(frame(1.2, 1))
    pairer.advance_ir(1.22)
    (decision,) = pairer.pop()
    assert isinstance(decision, Paired) and decision.skew == pytest.approx(-0.02)


def test_out_of_order_ir_frames_are_ignored() -> None:
    pairer = FramePairer(max_skew=0.05)
    pairer.add_ir(frame(1.0, 0))
    pairer.add_ir(frame(0.5, 1))
    assert pairer.ir_out_of_order == 1
    pairer.add_vis(frame(0.5, 0))
    pairer.end_ir()
    (decision,) = pairer.pop()
    assert isinstance(decision, Unpaired) and decision.nearest == pytest.approx(0.5)


def test_default_max_skew_and_validation() -> None:
    assert default_max_skew(60, 9, 30) == pytest.approx(0.5 / 9)
    assert default_max_skew(None, 25, 30) == pytest.approx(0.5 / 25)
    assert default_max_skew(None, None, 30) == pytest.approx(0.5 / 30)
    with pytest.raises(ValueError):
        FramePairer(max_skew=-1.0)
    assert not FramePairer(0.1).waiting
