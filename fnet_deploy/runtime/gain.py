"""Thermal gain control for video: raw IR counts to [0, 1], steady from frame to frame.

Per-image normalisation (:func:`fnet_deploy.data.thermal.normalize_thermal`) makes a video
flicker: one hot object entering the view changes the range of every pixel. :class:`ThermalGain`
computes the same ranges but follows them with an exponential moving average across frames.

8-bit frames are divided by 255 whatever the mode (the camera applied its own gain and the model
was trained on such images), as in :func:`normalize_thermal`; the modes apply to deeper frames
(raw 14- or 16-bit counts of radiometric cores).
"""

from __future__ import annotations

import numpy as np

from fnet_deploy.data.thermal import THERMAL_NORMS, ThermalNorm


class ThermalGain:
    """Maps single-channel thermal frames to float32 [0, 1].

    Args:
        mode: ``fixed`` (a fixed range: ``fixed_range``, or the type's full scale), ``minmax``
            (each frame's minimum and maximum) or ``percentile`` (the ``percentiles`` of each
            frame, ignoring hot and dead pixels).
        percentiles: (low, high) in [0, 100] for ``percentile``.
        smoothing: weight of the previous range in the moving average, in [0, 1): 0 follows each
            frame at once (identical to ``normalize_thermal``), 0.9 settles over about ten
            frames.
        fixed_range: (low, high) raw counts for ``fixed`` (e.g. ``(0, 16383)`` for a 14-bit
            core); ``None`` uses the full scale of the frame's type.
    """

    def __init__(
        self,
        mode: ThermalNorm = "percentile",
        percentiles: tuple[float, float] = (1.0, 99.0),
        smoothing: float = 0.9,
        fixed_range: tuple[float, float] | None = None,
    ) -> None:
        if mode not in THERMAL_NORMS:
            raise ValueError(f"unknown gain mode {mode!r}; choose from {THERMAL_NORMS}")
        low_pct, high_pct = percentiles
        if not 0.0 <= low_pct < high_pct <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        if fixed_range is not None and not fixed_range[0] < fixed_range[1]:
            raise ValueError(f"fixed range must have low < high, got {fixed_range}")
        self.mode = mode
        self.percentiles = percentiles
        self.smoothing = smoothing
        self.fixed_range = fixed_range
        self.range: tuple[float, float] | None = None

    def reset(self) -> None:
        """Forget the smoothed range (after a cut or a reconnected camera)."""
        self.range = None

    def frame_range(self, image: np.ndarray) -> tuple[float, float]:
        """The (low, high) raw values this frame alone maps to 0 and 1."""
        if self.mode == "fixed":
            if self.fixed_range is not None:
                return self.fixed_range
            if np.issubdtype(image.dtype, np.integer):
                return 0.0, float(np.iinfo(image.dtype).max)
            return 0.0, 1.0
        if self.mode == "minmax":
            return float(image.min()), float(image.max())
        low, high = np.percentile(image, self.percentiles)
        return float(low), float(high)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Map one frame.

        Args:
            image: H x W, uint8, uint16 or float.

        Returns:
            H x W float32 in [0, 1]; a frame whose range is empty maps to zeros.
        """
        if image.dtype == np.uint8:
            return image.astype(np.float32) / 255.0
        low, high = self.frame_range(image)
        if self.range is not None and self.mode != "fixed":
            a = self.smoothing
            low = a * self.range[0] + (1.0 - a) * low
            high = a * self.range[1] + (1.0 - a) * high
        self.range = (low, high)
        data = image.astype(np.float32)
        if high <= low:
            return np.zeros_like(data)
        return np.clip((data - low) / (high - low), 0.0, 1.0)
