"""Real videos for the runtime tests: written with OpenCV, counted by reading them back."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def write_video(path: Path, fps: float, count: int, size: tuple[int, int] = (64, 48)) -> Path:
    """An OpenCV-written video (MJPEG in AVI, else mp4v) of ``count`` frames of moving noise."""
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, size)
    rng = np.random.default_rng(int(fps))
    base = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    for i in range(count):
        writer.write(np.roll(base, 2 * i, axis=1))
    writer.release()
    return path


def count_frames(path: Path) -> int:
    """Frames that OpenCV decodes from ``path`` (0 for an unplayable file)."""
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count
