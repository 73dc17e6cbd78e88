"""Turning registered video frames into the network's inputs (and its output into a frame).

The visible frame gives the ``vis`` input (luminance) and the chroma to put back; the IR frame
gives the ``ir`` input through a :class:`~fnet_deploy.runtime.gain.ThermalGain`.
"""

from __future__ import annotations

import cv2
import numpy as np

from fnet_deploy.data.color import Luminance, bgr_to_luma_chroma
from fnet_deploy.data.images import compose_output

GREY_TOLERANCE = 2
"""A colour frame whose channels differ by at most this many 8-bit levels everywhere is grey
(grey video stored as colour, with codec noise)."""


def to_single_channel(image: np.ndarray) -> np.ndarray:
    """H x W x 3 BGR -> H x W with OpenCV's full-range grayscale; H x W is returned as is."""
    if image.ndim == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return image


class VisibleConverter:
    """Splits visible frames into luminance and chroma, like ``data.images.read_visible``.

    Whether the stream is colour is decided on its first frame and kept, so that the output
    does not switch between grey and colour.

    Args:
        luminance: ``ycbcr`` (BT.601 studio-range Y fused, chroma kept: how FNet was trained) or
            ``gray`` (OpenCV full-range grayscale, grey output).
    """

    def __init__(self, luminance: Luminance = "ycbcr") -> None:
        self.luminance = luminance
        self.colour: bool | None = None

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Convert one frame.

        Args:
            image: H x W or H x W x 3 BGR, uint8 or uint16.

        Returns:
            ``(luma, chroma)``: H x W float32 in [0, 1], and H x W x 2 (Cb, Cr) float32 in
            [0, 1] for colour streams in the ``ycbcr`` convention, else ``None``.
        """
        scale = 65535.0 if image.dtype == np.uint16 else 255.0
        if self.colour is None:
            self.colour = image.ndim == 3 and not _is_grey(image, scale)
        if not self.colour or self.luminance == "gray":
            return to_single_channel(image).astype(np.float32) / scale, None
        return bgr_to_luma_chroma(image, scale)


def postprocess(fused: np.ndarray, chroma: np.ndarray | None) -> np.ndarray:
    """Network output (1 x 1 x H x W, unclamped) + chroma -> uint8 frame (H x W or H x W x 3)."""
    return compose_output(fused[0, 0], chroma)


def _is_grey(image: np.ndarray, scale: float) -> bool:
    tolerance = GREY_TOLERANCE * scale / 255.0
    channels = image[:, :, :3].astype(np.int32)
    spread = channels.max(axis=2) - channels.min(axis=2)
    return bool(spread.max() <= tolerance)
