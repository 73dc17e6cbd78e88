"""Classical fusion baselines that run in real time on a CPU.

Each baseline is a pure function ``(ir, vis) -> fused`` on H x W ``float32`` images with values
in [0, 1]; the result has the same shape and dtype and stays in [0, 1] when the inputs are.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

Baseline = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``(ir: H x W float32 in [0, 1], vis: same) -> fused: H x W float32 in [0, 1]``."""

PYRAMID_LEVELS = 4
"""Default number of Laplacian detail levels (pyrDown steps)."""


def _check_pair(ir: np.ndarray, vis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both images as ``float32``; ``ValueError`` unless both are 2-D with the same shape."""
    if ir.ndim != 2 or vis.ndim != 2:
        raise ValueError(f"ir {ir.shape} and vis {vis.shape} must be 2-D grey images")
    if ir.shape != vis.shape:
        raise ValueError(f"ir {ir.shape} and vis {vis.shape} must have the same shape")
    return ir.astype(np.float32, copy=False), vis.astype(np.float32, copy=False)


def average(ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """Pixel average (ir + vis) / 2. H x W float32 in [0, 1] -> same."""
    a, b = _check_pair(ir, vis)
    return (a + b) * np.float32(0.5)


def maximum(ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """Pixel maximum max(ir, vis): keeps the brighter source. H x W float32 in [0, 1] -> same."""
    a, b = _check_pair(ir, vis)
    return np.maximum(a, b)


def _laplacian_pyramid(image: np.ndarray, levels: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Detail levels (finest first) and the low-pass base of ``image``."""
    details = []
    current = image
    for _ in range(levels):
        smaller = cv2.pyrDown(current)
        height, width = current.shape
        details.append(current - cv2.pyrUp(smaller, dstsize=(width, height)))
        current = smaller
    return details, current


def laplacian_pyramid(ir: np.ndarray, vis: np.ndarray, levels: int = PYRAMID_LEVELS) -> np.ndarray:
    """Laplacian-pyramid fusion (Burt and Adelson, 1983; Burt and Kolczynski, 1993).

    Both images are decomposed with ``cv2.pyrDown``/``cv2.pyrUp`` into ``levels`` detail levels
    and a base; each detail coefficient is taken from the source with the larger absolute value,
    the bases are averaged, and the pyramid is collapsed. ``levels`` (>= 1) is reduced to
    floor(log2(min(H, W))) when the image is too small for it.
    H x W float32 in [0, 1] -> same, clipped to [0, 1].
    """
    if levels < 1:
        raise ValueError(f"levels must be at least 1, got {levels}")
    a, b = _check_pair(ir, vis)
    usable = max(int(np.log2(min(a.shape))), 1)
    details_a, base_a = _laplacian_pyramid(a, min(levels, usable))
    details_b, base_b = _laplacian_pyramid(b, min(levels, usable))
    fused = (base_a + base_b) * np.float32(0.5)
    for detail_a, detail_b in zip(reversed(details_a), reversed(details_b), strict=True):
        height, width = detail_a.shape
        detail = np.where(np.abs(detail_a) >= np.abs(detail_b), detail_a, detail_b)
        fused = cv2.pyrUp(fused, dstsize=(width, height)) + detail
    return np.clip(fused, 0.0, 1.0)


BASELINES: dict[str, Baseline] = {
    "average": average,
    "max": maximum,
    "laplacian": laplacian_pyramid,
}
"""Baseline name -> fusion function."""
