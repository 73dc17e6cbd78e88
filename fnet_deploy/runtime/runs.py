"""A run of camera pairs with one runner: the one road every ``stream`` takes.

A single pair (``--vis``/``--ir``) runs straight through the runner in the calling thread
(:class:`~fnet_deploy.runtime.pipeline.StreamPipeline`); pairs named by ``--pair``/``--pairs``
run each in a thread of its own, their frames batched
(:class:`~fnet_deploy.runtime.multi.MultiStream`). Both runs take a stop flag and a progress
call, finalise every output however they end, and keep one :class:`RunStats` per pair.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fnet_deploy.backends.base import Runner
from fnet_deploy.runtime.multi import BatchOptions, CameraPair, MultiStats, MultiStream
from fnet_deploy.runtime.pipeline import StreamPipeline
from fnet_deploy.runtime.stats import RunStats

StreamRun = StreamPipeline | MultiStream
"""Either run: ``run(stop, progress)`` runs it, ``stats`` is what it measured."""
StreamStats = RunStats | MultiStats
"""The statistics of either run (a pair's, or every pair's and their batches')."""


def open_run(
    pairs: list[CameraPair],
    runner: Runner,
    batch: BatchOptions | None,
    info: Mapping[str, Any],
) -> StreamRun:
    """The run of ``pairs`` with ``runner`` (activated).

    Args:
        pairs: the camera pairs (sources not opened yet).
        runner: the model, shared by every pair.
        batch: how the pairs' frames are batched; ``None``: exactly one pair, run straight
            through the runner a frame at a time.
        info: what the statistics record of the run (backend, model, device, precision).

    Raises:
        ValueError: ``batch`` is ``None`` with other than one pair, or two pairs share a name.
    """
    if batch is not None:
        return MultiStream(pairs, runner, batch, MultiStats(info=dict(info)))
    if len(pairs) != 1:
        raise ValueError(f"a run without batching takes one pair, got {len(pairs)}")
    pair = pairs[0]
    return StreamPipeline(
        pair.vis,
        pair.ir,
        runner,
        pair.sink,
        pair.registrar,
        pair.gain,
        pair.options,
        RunStats(info=dict(info)),
    )


def pair_stats(run: StreamRun, pairs: list[CameraPair]) -> dict[str, RunStats]:
    """Each pair's statistics by its name (a single pair's are the run's)."""
    if isinstance(run, MultiStream):
        return dict(run.stats.pairs)
    return {pairs[0].name: run.stats}
