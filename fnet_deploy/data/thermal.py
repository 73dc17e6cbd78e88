"""Mapping thermal (IR) images of any bit depth to the network's [0, 1] range."""

from __future__ import annotations

from typing import Literal

import numpy as np

ThermalNorm = Literal["minmax", "percentile", "fixed"]
THERMAL_NORMS: tuple[ThermalNorm, ...] = ("minmax", "percentile", "fixed")


def normalize_thermal(
    image: np.ndarray,
    method: ThermalNorm = "percentile",
    percentiles: tuple[float, float] = (1.0, 99.0),
    fixed_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Map a single-channel thermal image to float32 [0, 1].

    8-bit images are always divided by 255 (as the model was trained). Deeper images (16-bit raw
    counts of radiometric cores) use ``method``:

    - ``minmax``: the image's own minimum -> 0 and maximum -> 1;
    - ``percentile``: the ``percentiles`` (low, high) values -> 0 and 1, clipped outside, which
      ignores hot or dead pixels;
    - ``fixed``: ``fixed_range`` (low, high raw counts) -> 0 and 1, clipped outside; without
      one, divided by the type's full scale (65535 for 16-bit).

    Args:
        image: H x W, uint8, uint16 or float.
        method: mapping for images deeper than 8 bits.
        percentiles: (low, high) in [0, 100] for ``percentile``.
        fixed_range: (low, high) raw counts for ``fixed`` (e.g. ``(0, 16383)`` for a 14-bit
            core), or ``None``.

    Returns:
        H x W float32 in [0, 1]. A constant image maps to zeros.
    """
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    data = image.astype(np.float32)
    if method == "fixed":
        if fixed_range is None:
            integer = np.issubdtype(image.dtype, np.integer)
            full = float(np.iinfo(image.dtype).max) if integer else 1.0
            return np.clip(data / full, 0.0, 1.0)
        low, high = fixed_range
    elif method == "minmax":
        low, high = float(data.min()), float(data.max())
    elif method == "percentile":
        lo_pct, hi_pct = percentiles
        if not 0.0 <= lo_pct < hi_pct <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
        low, high = (float(v) for v in np.percentile(data, [lo_pct, hi_pct]))
    else:
        raise ValueError(f"unknown thermal normalisation {method!r}; choose from {THERMAL_NORMS}")
    if high <= low:
        return np.zeros_like(data)
    return np.clip((data - low) / (high - low), 0.0, 1.0)
