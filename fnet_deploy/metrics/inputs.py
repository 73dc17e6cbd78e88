"""Input checks shared by the metrics, and the two metric conventions.

Every metric takes grey images as 2-D arrays of the same shape with values in the uint8 range
[0, 255] (``uint8`` or any real dtype). They are converted to ``float64`` before any arithmetic.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

Convention = Literal["paper", "standard"]
"""``paper``: the numbers fusion papers publish (the CDDFuse ``utils/Evaluator.py`` conventions for
most metrics, the VIFB MATLAB code for Qcb and CE). ``standard``: the textbook form of each metric.
See ``docs/metrics.md`` for what differs, metric by metric."""

CONVENTIONS: tuple[Convention, ...] = get_args(Convention)


def check_convention(convention: str) -> Convention:
    """Return ``convention`` if it names a convention, else raise ``ValueError``."""
    for known in CONVENTIONS:
        if convention == known:
            return known
    raise ValueError(f"unknown metric convention {convention!r}; expected one of {CONVENTIONS}")


def as_gray(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Check one grey image (H x W, both at least 2, values in [0, 255]); return it as ``float64``.

    Raises ``ValueError`` for other shapes, non-finite values or values outside [0, 255].
    """
    array = np.asarray(image)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D grey image, got shape {array.shape}")
    if min(array.shape) < 2:
        raise ValueError(f"{name} must be at least 2 x 2 pixels, got {array.shape}")
    out = array.astype(np.float64, copy=False)
    low, high = float(out.min()), float(out.max())
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError(f"{name} has non-finite values")
    if low < 0.0 or high > 255.0:
        raise ValueError(
            f"{name} has values in [{low:g}, {high:g}], outside the uint8 range [0, 255]"
        )
    return out


def as_triple(
    fused: np.ndarray, ir: np.ndarray, vis: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check fused F and sources A (IR), B (visible): same H x W, values in [0, 255].

    Returns the three images as ``float64`` in the order (F, A, B).
    """
    f = as_gray(fused, "fused")
    a = as_gray(ir, "ir")
    b = as_gray(vis, "vis")
    if not f.shape == a.shape == b.shape:
        raise ValueError(
            f"fused {f.shape}, ir {a.shape} and vis {b.shape} images must have the same shape"
        )
    return f, a, b


def grey_levels(image: np.ndarray) -> np.ndarray:
    """Integer grey levels 0..255 (``int64``) of a checked image, rounded half to even."""
    return np.rint(image).astype(np.int64)
