"""Registration: mapping IR pixels onto visible pixels, the calibration file, the per-frame warp.

The map is a 3 x 3 matrix ``M`` (a homography; an affine map or a translation has last row
``0 0 1``) taking an IR pixel ``(x, y, 1)`` to visible pixel coordinates (pixel centres at
integer coordinates, as in OpenCV). At run time the IR frame is warped into the visible frame,
both are cropped to the largest axis-aligned rectangle the warped IR covers, and both are resized
to the model size.

Calibration file (JSON, written by ``fnet-deploy calibrate``)::

    {
      "format": "fnet-deploy/registration/1",
      "transform": "homography" | "affine" | "translation",
      "ir_to_vis": [[m00, m01, m02], [m10, m11, m12], [m20, m21, m22]],
      "ir_size": [width, height],
      "vis_size": [width, height],
      "valid_crop": [x, y, width, height],
      "fit": {"method": "points" | "orb" | "sift" | "ecc", ...}
    }

``valid_crop`` may be left out (it is then computed from the map); ``fit`` is informative only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from fnet_deploy.data.images import Size
from fnet_deploy.helpers.atomic import write_text_atomic
from fnet_deploy.helpers.errors import FnetError, InputError

Transform = Literal["homography", "affine", "translation"]
TRANSFORMS: tuple[Transform, ...] = ("homography", "affine", "translation")
FORMAT_NAME = "fnet-deploy/registration/1"
Rect = tuple[int, int, int, int]


@dataclass(frozen=True)
class Registration:
    """An IR-to-visible map with the frame sizes it belongs to and its valid crop (``path``: the
    calibration file it was loaded from, for messages)."""

    matrix: np.ndarray
    transform: Transform
    ir_size: Size
    vis_size: Size
    valid_crop: Rect
    fit: dict[str, Any] = field(default_factory=dict)
    path: Path | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The calibration file's JSON document."""
        return {
            "format": FORMAT_NAME,
            "transform": self.transform,
            "ir_to_vis": [[float(v) for v in row] for row in self.matrix],
            "ir_size": list(self.ir_size),
            "vis_size": list(self.vis_size),
            "valid_crop": list(self.valid_crop),
            "fit": self.fit,
        }

    def save(self, path: str | Path) -> None:
        """Write the calibration file atomically."""
        write_text_atomic(path, _format_json(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> Registration:
        """Read and check a calibration file.

        Raises:
            InputError: missing, not JSON, wrong format, or an unusable matrix.
        """
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(path, "calibration file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputError(path, f"not a readable JSON calibration file ({err})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
            found = doc.get("format") if isinstance(doc, dict) else None
            raise InputError(path, f"format is {found!r}, expected {FORMAT_NAME!r}")
        try:
            matrix = np.asarray(doc["ir_to_vis"], dtype=np.float64)
            transform = doc["transform"]
            ir_size = _size(doc["ir_size"])
            vis_size = _size(doc["vis_size"])
            crop = doc.get("valid_crop")
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(path, f"missing or malformed field ({err})") from None
        if transform not in TRANSFORMS:
            raise InputError(path, f"transform must be one of {TRANSFORMS}, got {transform!r}")
        if matrix.shape != (3, 3) or not np.isfinite(matrix).all():
            raise InputError(path, "ir_to_vis must be a 3 x 3 matrix of finite numbers")
        if abs(np.linalg.det(matrix)) < 1e-12:
            raise InputError(path, "ir_to_vis is singular")
        matrix = matrix / matrix[2, 2]
        valid = covered_rectangle(matrix, ir_size, vis_size) if crop is None else _rect(crop)
        x, y, w, h = valid
        if w < 1 or h < 1 or x < 0 or y < 0 or x + w > vis_size[0] or y + h > vis_size[1]:
            raise InputError(path, f"valid_crop {list(valid)} is outside the visible frame")
        return cls(matrix, transform, ir_size, vis_size, valid, dict(doc.get("fit", {})), path)


def _text(size: Size) -> str:
    return f"{size[0]}x{size[1]}"


def identity_registration(size: Size) -> Registration:
    """The map of a pair that is already registered at the same size."""
    return Registration(np.eye(3), "affine", size, size, (0, 0, size[0], size[1]))


def scaling_registration(ir_size: Size, vis_size: Size) -> Registration:
    """Stretch the IR frame onto the visible frame (same field of view, different sizes)."""
    sx = vis_size[0] / ir_size[0]
    sy = vis_size[1] / ir_size[1]
    matrix = np.array([[sx, 0, (sx - 1) / 2], [0, sy, (sy - 1) / 2], [0, 0, 1]], dtype=np.float64)
    return Registration(matrix, "affine", ir_size, vis_size, (0, 0, vis_size[0], vis_size[1]))


def project(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 3 x 3 map to N x 2 points; returns N x 2."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    hom = np.hstack([pts, np.ones((len(pts), 1))]) @ matrix.T
    return hom[:, :2] / hom[:, 2:3]


def largest_rectangle(mask: np.ndarray) -> Rect:
    """Largest axis-aligned rectangle of true pixels in a boolean H x W mask: ``(x, y, w, h)``.

    Exact (row-by-row largest rectangle under a histogram) for masks up to 512 pixels on a side;
    larger masks are searched on a grid of ``f x f`` cells that count as true only when all their
    pixels are, so the result stays inside the mask and is at most ``f - 1`` pixels short per side.
    """
    height, width = mask.shape
    factor = max(1, -(-max(height, width) // 512))
    if factor > 1:
        padded = np.zeros((-(-height // factor) * factor, -(-width // factor) * factor), bool)
        padded[:height, :width] = mask
        cells = padded.reshape(padded.shape[0] // factor, factor, -1, factor)
        x, y, w, h = largest_rectangle(np.asarray(cells.all(axis=(1, 3))))
        return x * factor, y * factor, w * factor, h * factor
    heights = [0] * (width + 1)
    best: Rect = (0, 0, 0, 0)
    best_area = 0
    for row in range(height):
        line = mask[row].tolist()
        for col in range(width):
            heights[col] = heights[col] + 1 if line[col] else 0
        stack: list[int] = []
        for col in range(width + 1):
            while stack and heights[stack[-1]] >= heights[col]:
                top = heights[stack.pop()]
                left = stack[-1] + 1 if stack else 0
                if top * (col - left) > best_area:
                    best_area = top * (col - left)
                    best = (left, row - top + 1, col - left, top)
            stack.append(col)
    return best


class Registrar:
    """Applies a registration to each frame pair and brings both to the model size.

    Args:
        registration: the map, or ``None`` to decide from the first pair's sizes (identity for
            equal sizes, else the IR frame is stretched onto the visible frame).
        out_size: ``(width, height)`` given to the model; ``None`` keeps the crop's size.
    """

    def __init__(self, registration: Registration | None, out_size: Size | None = None) -> None:
        self.registration = registration
        self.calibrated = registration is not None
        self.out_size = out_size
        self._ir_map: np.ndarray | None = None
        self._crop: Rect = (0, 0, 0, 0)
        self._size: Size = (0, 0)

    @property
    def size(self) -> Size:
        """``(width, height)`` of the registered frames (after the first call)."""
        return self._size

    def _prepare(self, ir_size: Size, vis_size: Size) -> None:
        reg = self.registration
        if reg is None:
            same = ir_size == vis_size
            reg = (
                identity_registration(vis_size) if same else scaling_registration(ir_size, vis_size)
            )
            self.registration = reg
        if reg.ir_size != ir_size or reg.vis_size != vis_size:
            now = f"IR {_text(ir_size)} and visible {_text(vis_size)}"
            if not self.calibrated:
                raise FnetError(
                    f"the frame size changed mid-stream, from IR {_text(reg.ir_size)} and "
                    f"visible {_text(reg.vis_size)} to {now}; a run keeps the size of its first "
                    "pair: give sources of one size"
                )
            raise FnetError(
                f"{reg.path or 'the calibration'} is for IR {_text(reg.ir_size)} and visible "
                f"{_text(reg.vis_size)} frames, the sources deliver {now}; calibrate these "
                "cameras (fnet-deploy calibrate) or give their calibration"
            )
        x, y, w, h = reg.valid_crop
        out_w, out_h = self.out_size or (w, h)
        to_out = np.array(
            [[out_w / w, 0, (out_w / w - 1) / 2], [0, out_h / h, (out_h / h - 1) / 2], [0, 0, 1]]
        ) @ np.array([[1, 0, -x], [0, 1, -y], [0, 0, 1]], np.float64)
        self._ir_map = to_out @ reg.matrix
        self._crop = reg.valid_crop
        self._size = (out_w, out_h)

    def __call__(self, ir: np.ndarray, vis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Register one pair.

        Args:
            ir: H_ir x W_ir single-channel IR frame (uint8, uint16 or float32).
            vis: H x W or H x W x 3 visible frame.

        Returns:
            ``(ir, vis)`` of ``size``, same dtypes and channel counts as given.
        """
        ir_size = (ir.shape[1], ir.shape[0])
        vis_size = (vis.shape[1], vis.shape[0])
        if (
            self._ir_map is None
            or self.registration is None
            or (self.registration.ir_size != ir_size or self.registration.vis_size != vis_size)
        ):
            self._prepare(ir_size, vis_size)
        assert self._ir_map is not None
        width, height = self._size
        if np.allclose(self._ir_map, np.eye(3)) and ir_size == self._size:
            ir_out = ir
        else:
            ir_out = cv2.warpPerspective(
                ir, self._ir_map, (width, height), flags=cv2.INTER_LINEAR, borderValue=0
            )
        x, y, w, h = self._crop
        vis_out = vis[y : y + h, x : x + w]
        if (w, h) != self._size:
            shrinking = width * height < w * h
            interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
            vis_out = cv2.resize(vis_out, (width, height), interpolation=interpolation)
        return ir_out, vis_out


def covered_rectangle(matrix: np.ndarray, ir_size: Size, vis_size: Size) -> Rect:
    """Largest rectangle of the visible frame that the warped IR frame covers completely."""
    ones = np.ones((ir_size[1], ir_size[0]), np.uint8)
    covered = cv2.warpPerspective(
        ones, matrix, vis_size, flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT
    )
    covered = cv2.erode(covered, np.ones((3, 3), np.uint8), borderValue=1)
    return largest_rectangle(covered.astype(bool))


def _format_json(doc: dict[str, Any]) -> str:
    """The calibration document with one line per field and per matrix row."""
    fields = []
    for key, value in doc.items():
        if key == "ir_to_vis":
            rows = ",\n    ".join(json.dumps(row) for row in value)
            fields.append(f'  "{key}": [\n    {rows}\n  ]')
        else:
            fields.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(fields) + "\n}\n"


def _size(value: Any) -> Size:
    width, height = (int(v) for v in value)
    if width < 1 or height < 1:
        raise ValueError(f"size must be positive, got {value}")
    return width, height


def _rect(value: Any) -> Rect:
    x, y, w, h = (int(v) for v in value)
    return x, y, w, h
