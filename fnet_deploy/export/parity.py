"""Parity of an exported model against the PyTorch reference, in grey levels.

Both outputs are taken as the user sees them: ``clamp(fused, 0, 1) * 255``, before rounding, so a
difference of 1.0 is one grey level of the written 8-bit image. Statistics are accumulated in a
fine histogram, so the p99.9 over millions of pixels needs no big buffers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from fnet_deploy.backends.base import INPUT_NAMES, OUTPUT_NAME, Runner
from fnet_deploy.data.color import Luminance
from fnet_deploy.data.images import read_ir, read_visible, require_same_size
from fnet_deploy.data.pairs import pair_folders
from fnet_deploy.helpers.errors import FnetError, InputError

ErrorStat = Literal["max", "mean", "p99.9"]
ERROR_STATS: tuple[ErrorStat, ...] = ("max", "mean", "p99.9")

DEFAULT_TOLERANCE: dict[str, float] = {"fp32": 0.5, "fp16": 2.0, "int8": 2.0}
"""Default pass/fail tolerance (grey levels, on p99.9) by the precision of the tested model.

fp32: rounding only (ONNX Runtime's approximate Sigmoid costs up to 0.3, docs/performance.md).
fp16 and int8: reduced precision is held to one visual criterion, at most 2 grey levels on 99.9 %
of the pixels of the written 8-bit image. The tolerance says what output is acceptable, not what a
precision achieves: an INT8 model that exceeds it on some images is not fit for them
(docs/performance.md, "INT8", measures every real pair set)."""

_BIN = 1.0 / 1024.0
_BINS = int(256 / _BIN)


@dataclass
class ErrorStats:
    """Running statistics of absolute grey-level errors.

    Quantiles come from a histogram of 1/1024 grey-level bins (exact to that resolution); the
    maximum and mean are exact. Pixels where the candidate is NaN or infinite are counted in
    :attr:`nonfinite` and excluded from the other statistics.
    """

    pixels: int = 0
    nonfinite: int = 0
    total: float = 0.0
    max: float = 0.0
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(_BINS + 1, np.int64))

    def add(self, reference: np.ndarray, candidate: np.ndarray) -> None:
        """Accumulate the errors of ``candidate`` against ``reference`` (same shape, any)."""
        if reference.shape != candidate.shape:
            raise ValueError(f"shapes differ: {reference.shape} vs {candidate.shape}")
        finite = np.isfinite(candidate)
        self.nonfinite += int(finite.size - np.count_nonzero(finite))
        ref = np.clip(reference[finite].astype(np.float64), 0.0, 1.0)
        cand = np.clip(candidate[finite].astype(np.float64), 0.0, 1.0)
        error = np.abs(ref - cand) * 255.0
        self.pixels += int(error.size)
        if error.size:
            self.total += float(error.sum())
            self.max = max(self.max, float(error.max()))
            bins = np.minimum((error / _BIN).astype(np.int64), _BINS)
            self.histogram += np.bincount(bins, minlength=_BINS + 1)

    def merge(self, other: ErrorStats) -> None:
        """Add another accumulator's counts to this one."""
        self.pixels += other.pixels
        self.nonfinite += other.nonfinite
        self.total += other.total
        self.max = max(self.max, other.max)
        self.histogram += other.histogram

    @property
    def mean(self) -> float:
        """Mean absolute error in grey levels (0 when empty)."""
        return self.total / self.pixels if self.pixels else 0.0

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (0..1) of the absolute error, rounded up to its histogram bin."""
        if not self.pixels:
            return 0.0
        rank = int(np.ceil(q * self.pixels))
        index = int(np.searchsorted(np.cumsum(self.histogram), max(rank, 1)))
        return min((index + 1) * _BIN, self.max)

    def fraction_within(self, grey_levels: float) -> float:
        """Fraction of finite pixels whose error is at most ``grey_levels`` (bin resolution)."""
        if not self.pixels:
            return 1.0
        upto = int(np.floor(grey_levels / _BIN))
        return float(self.histogram[:upto].sum()) / self.pixels

    def stat(self, name: ErrorStat) -> float:
        """``max``, ``mean`` or ``p99.9``."""
        if name == "max":
            return self.max
        if name == "mean":
            return self.mean
        return self.quantile(0.999)

    def passed(self, stat: ErrorStat, tolerance: float) -> bool:
        """No non-finite output and ``stat`` at most ``tolerance`` grey levels."""
        return self.nonfinite == 0 and self.stat(stat) <= tolerance

    def describe(self) -> str:
        """One line: max / mean / p99.9 in grey levels, and non-finite pixels if any."""
        text = (
            f"max {self.max:.4f}  mean {self.mean:.5f}  p99.9 {self.quantile(0.999):.4f} "
            "grey levels"
        )
        return text + (f"  ({self.nonfinite} NaN/inf pixels)" if self.nonfinite else "")


@dataclass
class ImagePair:
    """One preprocessed pair: ``ir`` and ``vis`` are H x W float32 in [0, 1]."""

    name: str
    ir: np.ndarray
    vis: np.ndarray

    def feed(self, batch: int = 1) -> dict[str, np.ndarray]:
        """The runner feed: ``batch`` x 1 x H x W float32 ``ir`` and ``vis`` (repeated)."""
        return {
            name: np.ascontiguousarray(
                np.repeat(getattr(self, name)[None, None], batch, axis=0), np.float32
            )
            for name in INPUT_NAMES
        }

    def resized(self, height: int, width: int) -> ImagePair:
        """This pair resized to ``height`` x ``width`` (for fixed-shape models)."""
        if self.ir.shape == (height, width):
            return self
        size = (width, height)
        return ImagePair(
            f"{self.name} (resized to {width}x{height})",
            cv2.resize(self.ir, size, interpolation=cv2.INTER_AREA),
            cv2.resize(self.vis, size, interpolation=cv2.INTER_AREA),
        )


def read_pair(ir_path: Path, vis_path: Path, luminance: Luminance, name: str = "") -> ImagePair:
    """Read one IR / visible pair as network inputs (visible luminance by ``luminance``).

    Raises:
        InputError: a file is unreadable, or the two images differ in size.
    """
    ir = read_ir(ir_path)
    vis = read_visible(vis_path, luminance).luma
    require_same_size(ir_path, ir, vis_path, vis, "parity needs registered pairs")
    return ImagePair(name or ir_path.stem, ir, vis)


def iter_pairs(ir: Path, vis: Path, luminance: Luminance) -> Iterator[ImagePair]:
    """Pairs from two image files, or from two folders paired by file name."""
    if ir.is_dir() != vis.is_dir():
        raise FnetError("--ir and --vis must both be files or both be folders")
    if not ir.is_dir():
        yield read_pair(ir, vis, luminance)
        return
    listing = pair_folders(ir, vis)
    if not listing.pairs:
        raise InputError(ir, f"no image shares a file name with one in {vis}")
    for pair in listing.pairs:
        yield read_pair(pair.ir, pair.vis, luminance, pair.name)


@dataclass
class ParityReport:
    """Errors per pair and over all pairs."""

    per_pair: list[tuple[str, ErrorStats]] = field(default_factory=list)
    overall: ErrorStats = field(default_factory=ErrorStats)


def compare_runners(
    reference: Runner,
    candidates: Sequence[Runner],
    pairs: Iterable[ImagePair],
    on_pair: Callable[[str], None] | None = None,
    batch: int = 1,
) -> list[ParityReport]:
    """Run the reference once and every candidate on each pair; collect grey-level errors.

    Args:
        reference: the PyTorch reference runner (active).
        candidates: the runners under test (active); one report each, in this order.
        pairs: the inputs, one pair per inference.
        on_pair: called with the pair's name after all runners are done with it (progress).
        batch: each pair is repeated to this batch size (for fixed-batch models).
    """
    reports = [ParityReport() for _ in candidates]
    for pair in pairs:
        feed = pair.feed(batch)
        expected = reference.infer(feed)[OUTPUT_NAME]
        for candidate, report in zip(candidates, reports, strict=True):
            actual = candidate.infer(feed)[OUTPUT_NAME]
            if actual.shape != expected.shape:
                raise FnetError(
                    f"{candidate.name}: output shape {actual.shape} for {pair.name}, "
                    f"expected {expected.shape}"
                )
            stats = ErrorStats()
            stats.add(expected, actual)
            report.per_pair.append((pair.name, stats))
            report.overall.merge(stats)
        if on_pair is not None:
            on_pair(pair.name)
    return reports


def pair_error(reference: Runner, candidate: Runner, pair: ImagePair, batch: int = 1) -> ErrorStats:
    """The error of ``candidate`` against ``reference`` (active) on one pair; ``candidate`` is
    activated for the comparison and released after it."""
    with candidate:
        return compare_runners(reference, [candidate], [pair], batch=batch)[0].overall
