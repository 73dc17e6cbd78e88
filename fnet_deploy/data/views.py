"""Composite views of a fusion result for judging it at a glance.

:func:`compose_view` lays out the visible input, the IR input and the fused output with a small
labelled header band above each pane:

- ``fused``: the fused image alone (as 3-channel BGR), no header.
- ``side-by-side``: ``visible | infrared | fused`` in one row.
- ``grid``: 2 x 2, ``visible | infrared`` over ``fused | |fused - visible|``. The fourth pane is
  the absolute luminance difference between the fused image and the visible input, false-coloured
  (inferno, black = unchanged) on a fixed scale so that video frames stay comparable: it shows
  where, and how strongly, the fusion brought in thermal content that the visible image lacks.

Panes are separated by :data:`GAP` pixels. :func:`pane_boxes` gives every pane's image area in the
composite, so that callers (and tests) can find the panes again.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

Layout = Literal["fused", "side-by-side", "grid"]
LAYOUTS: tuple[Layout, ...] = ("fused", "side-by-side", "grid")

PANE_LABELS: dict[str, str] = {
    "visible": "visible",
    "infrared": "infrared",
    "fused": "fused",
    "difference": "|fused - visible|",
}
"""Header text of each pane, by pane name."""

GAP = 2
"""Pixels between neighbouring panes."""

BACKGROUND = (40, 40, 40)
"""BGR colour of the header bands and of the gaps between panes."""

TEXT_COLOUR = (255, 255, 255)

_ORDER: dict[Layout, tuple[tuple[str, ...], ...]] = {
    "fused": (("fused",),),
    "side-by-side": (("visible", "infrared", "fused"),),
    "grid": (("visible", "infrared"), ("fused", "difference")),
}

Box = tuple[int, int, int, int]
"""``(top, left, bottom, right)`` in pixels, bottom and right exclusive."""


def header_height(image_height: int) -> int:
    """Height in pixels of the label band above a pane of ``image_height`` rows (16..40)."""
    return int(np.clip(round(image_height * 0.08), 16, 40))


def pane_boxes(height: int, width: int, layout: Layout) -> dict[str, Box]:
    """Where each pane's image lies in a composite of ``height`` x ``width`` panes.

    Args:
        height: rows of one pane's image (the fused image's height).
        width: columns of one pane's image.
        layout: one of :data:`LAYOUTS`.

    Returns:
        Pane name -> its image area (header band excluded) in the composite.
    """
    if layout not in _ORDER:
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    band = 0 if layout == "fused" else header_height(height)
    boxes: dict[str, Box] = {}
    for row, names in enumerate(_ORDER[layout]):
        top = row * (band + height + GAP) + band
        for col, name in enumerate(names):
            left = col * (width + GAP)
            boxes[name] = (top, left, top + height, left + width)
    return boxes


def compose_view(
    fused: np.ndarray,
    visible: np.ndarray,
    infrared: np.ndarray,
    layout: Layout,
    diff_range: int = 128,
) -> np.ndarray:
    """Lay out visible, infrared and fused images as one labelled uint8 BGR picture.

    Args:
        fused: the fused output, H x W (grey) or H x W x 3 (BGR) uint8; it fixes the pane size.
        visible: the visible input, grey or BGR uint8; resized to H x W if its size differs.
        infrared: the IR input as the network saw it, grey or BGR uint8; resized likewise.
        layout: ``fused``, ``side-by-side`` or ``grid`` (see the module docstring).
        diff_range: grey-level difference shown at full colour in the grid's difference pane;
            larger differences saturate.

    Returns:
        uint8 BGR image: H x W x 3 for ``fused``; (band + H) x (3 W + 2 GAP) x 3 for
        ``side-by-side``; (2 band + 2 H + GAP) x (2 W + GAP) x 3 for ``grid``, where band is
        :func:`header_height` (H).
    """
    fused_bgr = _as_bgr(fused, "fused")
    height, width = fused_bgr.shape[:2]
    if layout == "fused":
        return fused_bgr
    boxes = pane_boxes(height, width, layout)
    panes = {
        "visible": _fit(_as_bgr(visible, "visible"), height, width),
        "infrared": _fit(_as_bgr(infrared, "infrared"), height, width),
        "fused": fused_bgr,
    }
    if "difference" in boxes:
        panes["difference"] = _difference(fused_bgr, panes["visible"], diff_range)
    canvas_h = max(box[2] for box in boxes.values())
    canvas_w = max(box[3] for box in boxes.values())
    canvas = np.empty((canvas_h, canvas_w, 3), np.uint8)
    canvas[:] = BACKGROUND
    band = header_height(height)
    for name, (top, left, bottom, right) in boxes.items():
        canvas[top:bottom, left:right] = panes[name]
        _draw_label(canvas, PANE_LABELS[name], top - band, left, band, width)
    return canvas


def _as_bgr(image: np.ndarray, name: str) -> np.ndarray:
    if image.dtype != np.uint8:
        raise ValueError(f"{name}: expected a uint8 image, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image)
    raise ValueError(f"{name}: expected H x W or H x W x 3, got shape {image.shape}")


def _fit(image: np.ndarray, height: int, width: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    shrinking = height * width < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def _difference(fused_bgr: np.ndarray, visible_bgr: np.ndarray, diff_range: int) -> np.ndarray:
    if diff_range < 1:
        raise ValueError(f"diff_range must be >= 1, got {diff_range}")
    fused_y = cv2.cvtColor(fused_bgr, cv2.COLOR_BGR2GRAY).astype(np.int16)
    visible_y = cv2.cvtColor(visible_bgr, cv2.COLOR_BGR2GRAY).astype(np.int16)
    scaled = np.abs(fused_y - visible_y).astype(np.float32) * (255.0 / diff_range)
    level = np.rint(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)
    return cv2.applyColorMap(level, cv2.COLORMAP_INFERNO)


def _draw_label(canvas: np.ndarray, text: str, top: int, left: int, band: int, width: int) -> None:
    """Write ``text`` into the band ``top..top+band`` above a pane ``width`` wide, nowhere else."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    pad = max(2, band // 6)
    scale = band / 40.0
    (text_w, text_h), descent = cv2.getTextSize(text, font, scale, 1)
    if text_w > width - 2 * pad:
        scale *= (width - 2 * pad) / text_w
        (text_w, text_h), descent = cv2.getTextSize(text, font, scale, 1)
    strip = np.empty((band, width, 3), np.uint8)
    strip[:] = BACKGROUND
    baseline = (band + text_h - descent) // 2
    cv2.putText(strip, text, (pad, baseline), font, scale, TEXT_COLOUR, 1, cv2.LINE_AA)
    canvas[top : top + band, left : left + width] = strip
