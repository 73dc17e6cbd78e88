"""Colour conversions used to fuse luminance and keep chroma.

All functions take and return float32 arrays in [0, 1] (channels last, H x W x 3).
``ycbcr`` is ITU-R BT.601 studio range as MATLAB's ``rgb2ycbcr`` defines it (Y in [16, 235]/255,
Cb and Cr in [16, 240]/255); ``gray`` is OpenCV's full-range ``0.299 R + 0.587 G + 0.114 B``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Luminance = Literal["ycbcr", "gray"]
LUMINANCE_CONVENTIONS: tuple[Luminance, ...] = ("ycbcr", "gray")

_RGB_TO_YCBCR = (
    np.array(
        [
            [65.481, 128.553, 24.966],
            [-37.797, -74.203, 112.0],
            [112.0, -93.786, -18.214],
        ],
        dtype=np.float64,
    )
    / 255.0
)
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0]) / 255.0
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR)


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """BT.601 studio-range YCbCr of an RGB image.

    Args:
        rgb: H x W x 3, R, G, B in [0, 1].

    Returns:
        H x W x 3 float32 (Y, Cb, Cr), each scaled to [0, 1] (Y in [16/255, 235/255]).
    """
    out = rgb.astype(np.float64) @ _RGB_TO_YCBCR.T + _YCBCR_OFFSET
    return out.astype(np.float32)


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`, clipped to [0, 1].

    Args:
        ycbcr: H x W x 3 (Y, Cb, Cr) in [0, 1].

    Returns:
        H x W x 3 float32 RGB in [0, 1].
    """
    out = (ycbcr.astype(np.float64) - _YCBCR_OFFSET) @ _YCBCR_TO_RGB.T
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def bgr_to_luma_chroma(bgr: np.ndarray, scale: float = 255.0) -> tuple[np.ndarray, np.ndarray]:
    """Split a BGR image into BT.601 studio-range Y and its (Cb, Cr).

    Args:
        bgr: H x W x 3 (extra channels ignored), integer or float values in [0, ``scale``].
        scale: full-scale value of the input (255 for 8-bit, 65535 for 16-bit).

    Returns:
        ``(luma, chroma)``: H x W float32 and H x W x 2 float32, both in [0, 1].
    """
    rgb = bgr[:, :, 2::-1].astype(np.float32) / scale
    ycc = rgb_to_ycbcr(rgb)
    return np.ascontiguousarray(ycc[:, :, 0]), ycc[:, :, 1:]
