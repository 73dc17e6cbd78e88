"""Time all fusion metrics on real 480x640 triples, and the classical baselines per frame.

Usage: python benchmarks/bench_metrics.py [--data DIR] [--pairs N] [--repeat R]

DIR holds ``ir/`` and ``vi/`` folders of paired images (default: the shared MSRS_test set, 480x640).
The fused image of each pair is the Laplacian-pyramid baseline's output, rounded to uint8. Reports
the median wall time of ``compute_metrics`` (all metrics) per triple for each convention, the
median time of each metric, and the median per-frame time of each baseline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from fnet_deploy.metrics import CONVENTIONS, METRICS, compute_metrics
from fnet_deploy.metrics.baselines import BASELINES, laplacian_pyramid
from fnet_deploy.metrics.report import read_gray

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "MSRS_test"


def median_seconds(function: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``repeat`` calls, after one warm-up call."""
    function()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load_pairs(data: Path, count: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The first ``count`` (name, ir, vis) pairs of ``data`` as uint8 grey images."""
    names = sorted(path.name for path in (data / "ir").iterdir())[:count]
    if not names:
        raise SystemExit(f"no images in {data / 'ir'}")
    return [(name, read_gray(data / "ir" / name), read_gray(data / "vi" / name)) for name in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with ir/ and vi/")
    parser.add_argument("--pairs", type=int, default=5, help="number of image pairs")
    parser.add_argument("--repeat", type=int, default=3, help="timed calls per measurement")
    args = parser.parse_args()

    pairs = load_pairs(args.data, args.pairs)
    height, width = pairs[0][1].shape
    print(f"{len(pairs)} pairs of {height}x{width} from {args.data}; {os.cpu_count()} CPU cores")

    triples = []
    for _, ir, vis in pairs:
        fused = laplacian_pyramid(ir.astype(np.float32) / 255, vis.astype(np.float32) / 255)
        triples.append((np.rint(fused * 255).astype(np.uint8), ir, vis))

    print("\nAll metrics per triple (median over pairs of the median of repeats):")
    for convention in CONVENTIONS:
        seconds = statistics.median(
            median_seconds(partial(compute_metrics, *t, convention), args.repeat) for t in triples
        )
        print(f"  {convention:<9} {seconds * 1000:8.1f} ms")

    print("\nPer metric, paper convention (first triple):")
    fused, ir, vis = triples[0]
    for name, spec in METRICS.items():
        seconds = median_seconds(partial(spec.function, fused, ir, vis, "paper"), args.repeat)
        print(f"  {name:<5} {seconds * 1000:8.1f} ms")

    print("\nBaselines per frame (float32 in [0, 1]):")
    frames = [(ir.astype(np.float32) / 255, vis.astype(np.float32) / 255) for _, ir, vis in pairs]
    for name, baseline in BASELINES.items():
        seconds = statistics.median(
            median_seconds(partial(baseline, *p), max(args.repeat, 10)) for p in frames
        )
        print(f"  {name:<9} {seconds * 1000:8.2f} ms  ({1 / seconds:7.0f} frames/s)")


if __name__ == "__main__":
    main()
