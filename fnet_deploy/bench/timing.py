"""Timing a runner: warm-up, repeated calls, latency percentiles."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fnet_deploy.backends.base import Runner


@dataclass
class Timing:
    """Latencies of repeated calls (seconds) and the summary statistics people report."""

    samples: list[float] = field(default_factory=list)
    batch: int = 1
    device_samples: list[float] = field(default_factory=list)
    """The runner's own device times of the same calls (CUDA events around the forward pass,
    without the host copies), where the runner measures them."""

    @property
    def median(self) -> float:
        return float(np.median(self.samples))

    def percentile(self, q: float) -> float:
        """``q``-th percentile latency (0 <= q <= 100), seconds."""
        return float(np.percentile(self.samples, q))

    @property
    def frames_per_second(self) -> float:
        """Pairs fused per second at the median latency."""
        return self.batch / self.median


def random_feed(batch: int, height: int, width: int) -> dict[str, np.ndarray]:
    """The timing input: ``{"ir": N x 1 x H x W, "vis": N x 1 x H x W}`` float32 in [0, 1),
    uniform noise from seed 0 (the same for every run, so that runs compare like for like)."""
    rng = np.random.default_rng(0)
    shape = (batch, 1, height, width)
    return {name: rng.random(shape, dtype=np.float32) for name in ("ir", "vis")}


def time_runner(
    runner: Runner,
    feed: dict[str, np.ndarray],
    warmup: int = 2,
    iterations: int = 10,
    max_seconds: float | None = None,
) -> Timing:
    """Call ``runner.infer(feed)`` ``warmup`` times untimed, then time up to ``iterations`` calls.

    Uses the runner's own :attr:`Runner.last_inference_time` (device-synchronised). Stops early
    after ``max_seconds`` of timed calls, keeping at least one sample.

    Args:
        runner: an activated runner.
        feed: ``{"ir": N x 1 x H x W, "vis": N x 1 x H x W}`` float32.
    """
    for _ in range(warmup):
        runner.infer(feed)
    timing = Timing(batch=int(feed["ir"].shape[0]))
    spent = 0.0
    for _ in range(iterations):
        runner.infer(feed)
        timing.samples.append(runner.last_inference_time)
        if runner.last_device_time is not None:
            timing.device_samples.append(runner.last_device_time)
        spent += runner.last_inference_time
        if max_seconds is not None and spent >= max_seconds:
            break
    return timing
