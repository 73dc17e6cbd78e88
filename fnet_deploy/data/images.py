"""Reading and writing the images that go into and come out of the fusion network.

Reading returns float32 arrays in [0, 1]; every failure is an :class:`InputError` naming the file.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fnet_deploy.data.color import Luminance, bgr_to_luma_chroma, ycbcr_to_rgb
from fnet_deploy.data.thermal import ThermalNorm, normalize_thermal
from fnet_deploy.helpers.atomic import write_bytes_atomic
from fnet_deploy.helpers.errors import InputError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm"})


@dataclass
class VisibleImage:
    """A visible image split into the network's luminance input and the chroma to put back.

    Attributes:
        luma: H x W float32 in [0, 1], the network's ``vis`` input.
        chroma: H x W x 2 float32 (Cb, Cr) in [0, 1] for colour images fused in the ``ycbcr``
            convention, else ``None`` (the output is grayscale).
    """

    luma: np.ndarray
    chroma: np.ndarray | None


class _NativeStderr:
    """fd 2 sent to /dev/null while at least one thread is in a quiet section.

    The redirection is process-wide, so sections of several threads (capture threads opening
    videos at once) share it: the first to enter saves fd 2, the last to leave restores it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved: tuple[int, int] | None = None  # (fd, its saved duplicate)

    def enter(self, fd: int) -> None:
        with self._lock:
            if self._users == 0:
                saved = os.dup(fd)
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, fd)
                os.close(null)
                self._saved = (fd, saved)
            self._users += 1

    def leave(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0 and self._saved is not None:
                fd, saved = self._saved
                os.dup2(saved, fd)
                os.close(saved)
                self._saved = None


_NATIVE_STDERR = _NativeStderr()


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence C libraries (libpng, libjpeg, FFmpeg) that print to fd 2 while decoding broken
    files; safe to use from several threads at once."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    _NATIVE_STDERR.enter(fd)
    try:
        yield
    finally:
        _NATIVE_STDERR.leave()


def _read_bytes(path: Path) -> np.ndarray:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except IsADirectoryError:
        raise InputError(path, "is a directory, expected an image file") from None
    except OSError as err:
        raise InputError(path, f"cannot read file ({err.strerror or err})") from None
    if not data:
        raise InputError(path, "empty file")
    return np.frombuffer(data, dtype=np.uint8)


MAX_DECODE_PIXELS = 1 << 30
"""Largest image OpenCV decodes (its ``OPENCV_IO_MAX_IMAGE_PIXELS`` default)."""
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def header_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` that a PNG or JPEG header declares, read without decoding the image;
    ``None`` for other formats or a header that cannot be parsed."""
    if data.startswith(_PNG_SIGNATURE) and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if not data.startswith(b"\xff\xd8"):
        return None
    at = 2
    while at + 9 <= len(data):
        if data[at] != 0xFF:
            return None
        marker, length = data[at + 1], int.from_bytes(data[at + 2 : at + 4], "big")
        if marker in _JPEG_SOF:
            height = int.from_bytes(data[at + 5 : at + 7], "big")
            return int.from_bytes(data[at + 7 : at + 9], "big"), height
        at += 2 + length
    return None


Size = tuple[int, int]
"""An image's ``(width, height)`` in pixels: the order of WIDTHxHEIGHT on the command line, and
the one every module uses (arrays are H x W)."""


def image_size(path: str | Path) -> Size | None:
    """``(width, height)`` of an image file from its header (PNG, JPEG), ``None`` if unknown."""
    try:
        with open(path, "rb") as handle:
            return header_size(handle.read(1 << 16))
    except OSError:
        return None


def _decode(path: Path, buffer: np.ndarray, flags: int) -> np.ndarray:
    size = header_size(buffer[: 1 << 16].tobytes())
    if size is not None and size[0] * size[1] > MAX_DECODE_PIXELS:
        raise InputError(
            path,
            f"header declares {size[0]}x{size[1]} pixels, more than the "
            f"{MAX_DECODE_PIXELS / 1e6:.0f} Mpx an image may have here",
        )
    with quiet_native_stderr():
        try:
            image = cv2.imdecode(buffer, flags)
        except cv2.error:
            image = None
    if image is None or image.size == 0:
        raise InputError(path, "cannot decode image (truncated, corrupt or not an image)")
    return image


def _full_scale(image: np.ndarray) -> float:
    return 65535.0 if image.dtype == np.uint16 else 255.0


def read_ir(
    path: str | Path,
    norm: ThermalNorm = "percentile",
    percentiles: tuple[float, float] = (1.0, 99.0),
    fixed_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Read an infrared image as single-channel float32 [0, 1].

    Colour-stored files are converted to grayscale (OpenCV's full-range luminance); 8-bit images
    are divided by 255; 16-bit images are mapped by :func:`normalize_thermal` with ``norm``
    (``percentiles`` and ``fixed_range`` as it takes them).

    Returns:
        H x W float32 in [0, 1].
    """
    path = Path(path)
    image = _decode(path, _read_bytes(path), cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH)
    if image.dtype not in (np.uint8, np.uint16):
        raise InputError(path, f"unsupported pixel type {image.dtype} (expected 8- or 16-bit)")
    return normalize_thermal(image, norm, percentiles, fixed_range)


def require_same_size(
    ir_path: Path, ir: np.ndarray, vis_path: Path, vis: np.ndarray, advice: str
) -> None:
    """Refuse an IR / visible pair of different sizes (H x W arrays), naming the IR file.

    Raises:
        InputError: ``size WxH differs from <visible> WxH (W x H); <advice>``.
    """
    if ir.shape[:2] != vis.shape[:2]:
        raise InputError(
            ir_path,
            f"size {ir.shape[1]}x{ir.shape[0]} differs from {vis_path.name} "
            f"{vis.shape[1]}x{vis.shape[0]} (W x H); {advice}",
        )


def read_visible(path: str | Path, luminance: Luminance = "ycbcr") -> VisibleImage:
    """Read a visible image and split it into luminance and chroma.

    A single-channel image, or a 3-channel one whose channels are identical (grey stored as
    colour), is luminance as it is. A colour image gives BT.601 studio-range Y with its Cb, Cr
    kept (``ycbcr``, how FNet was trained), or OpenCV's full-range grayscale with no chroma
    (``gray``, how the authors' grayscale evaluation reads it).
    """
    path = Path(path)
    buffer = _read_bytes(path)
    image = _decode(path, buffer, cv2.IMREAD_UNCHANGED)
    if image.dtype not in (np.uint8, np.uint16):
        raise InputError(path, f"unsupported pixel type {image.dtype} (expected 8- or 16-bit)")
    scale = _full_scale(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3:
        bgr = image[:, :, :3]
        if np.array_equal(bgr[:, :, 0], bgr[:, :, 1]) and np.array_equal(
            bgr[:, :, 1], bgr[:, :, 2]
        ):
            image = bgr[:, :, 0]
        elif luminance == "gray":
            gray = _decode(path, buffer, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH)
            return VisibleImage(luma=gray.astype(np.float32) / scale, chroma=None)
        else:
            luma, chroma = bgr_to_luma_chroma(bgr, scale)
            return VisibleImage(luma=luma, chroma=chroma)
    return VisibleImage(luma=image.astype(np.float32) / scale, chroma=None)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """``round(clip(image, 0, 1) * 255)`` as uint8, any shape."""
    return np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def compose_output(fused_luma: np.ndarray, chroma: np.ndarray | None) -> np.ndarray:
    """Fused luminance (H x W, [0, 1]) plus optional chroma -> uint8 image to save.

    Returns:
        H x W uint8 (no chroma) or H x W x 3 uint8 BGR (chroma recombined through the inverse
        BT.601 transform, clipped to [0, 255]).
    """
    luma = np.clip(fused_luma, 0.0, 1.0)
    if chroma is None:
        return to_uint8(luma)
    rgb = ycbcr_to_rgb(np.concatenate([luma[:, :, None], chroma], axis=2))
    return to_uint8(rgb[:, :, ::-1])


def can_encode(path: str | Path) -> bool:
    """Whether :func:`write_image` can encode an image by ``path``'s suffix (no suffix: PNG)."""
    suffix = Path(path).suffix.lower() or ".png"
    return bool(cv2.haveImageWriter(f"image{suffix}"))


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Encode ``image`` (uint8, H x W or H x W x 3 BGR) by the path's suffix, atomically.

    The file appears complete or not at all: it is written to a temporary file in the same folder
    and renamed into place.
    """
    path = Path(path)
    suffix = path.suffix.lower() or ".png"
    try:
        ok, encoded = cv2.imencode(suffix, image)
    except cv2.error:
        ok = False
    if not ok:
        raise InputError(path, f"cannot encode an image as '{suffix}'")
    write_bytes_atomic(path, encoded.tobytes())
