"""Video sources: files, folders of frames, V4L2 and Jetson CSI cameras, RTSP and GStreamer
streams.

Every source yields :class:`Frame` objects carrying the decoded image, a timestamp and an index.
Files and folders are stamped with their stream position (so they pair exactly, at any playback
speed); live sources with the host's monotonic clock at grab time.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fnet_deploy.data.images import IMAGE_SUFFIXES, quiet_native_stderr
from fnet_deploy.helpers.errors import FnetError, InputError
from fnet_deploy.runtime.capabilities import require_gstreamer
from fnet_deploy.runtime.gst_pipelines import CSI_DEFAULTS, csi_pipeline
from fnet_deploy.runtime.uri import URI

log = logging.getLogger("fnet_deploy.runtime")

DEFAULT_DIR_FPS = 10.0
"""Frame rate of a folder of frames without ``fps`` or ``timestamps`` (the TNO sequences do not
state theirs)."""

LIVE_TIMEOUT_MS = 5000
"""How long a live source may take to open or to deliver a frame before it counts as lost."""


@dataclass
class Frame:
    """One decoded frame.

    Attributes:
        image: H x W (grey) or H x W x 3 (BGR) array, uint8 or uint16 as decoded.
        timestamp: seconds; the position in the stream for files and folders, the host's
            monotonic clock at grab time for live sources.
        index: position of the frame in its source (0-based; frames skipped as corrupt count).
        grabbed_at: host ``time.monotonic()`` when the frame was read, for latency accounting.
        read_seconds: time spent reading and decoding it.
    """

    image: np.ndarray
    timestamp: float
    index: int
    grabbed_at: float
    read_seconds: float = 0.0


class CorruptFrame(Exception):
    """Frame ``index`` could not be decoded; the source can go on with the next one."""

    def __init__(self, index: int, reason: str) -> None:
        self.index = index
        super().__init__(f"frame {index}: {reason}")


class SourceLost(Exception):
    """A live source stopped delivering frames (unplugged camera, dropped stream)."""


class Source(abc.ABC):
    """A stream of frames: ``open``, then ``read`` until it returns ``None``, then ``close``.

    ``read`` raises :class:`CorruptFrame` for a frame it skips and, for live sources,
    :class:`SourceLost` when the device or stream is gone (a capture thread then reopens it).
    """

    live = False

    def __init__(self, uri: URI) -> None:
        self.uri = uri
        self.ended_early: str | None = None

    @property
    def name(self) -> str:
        """The URI as the user wrote it."""
        return self.uri.text

    @property
    @abc.abstractmethod
    def fps(self) -> float | None:
        """Nominal frame rate, when the source knows it (after :meth:`open`)."""

    @abc.abstractmethod
    def open(self) -> None:
        """Open (or reopen) the source; raises :class:`FnetError` with a clear message."""

    def check_present(self) -> None:
        """Refuse, before any work, a source that cannot be there (a camera device file that
        does not exist); what only opening tells is left to :meth:`open`."""
        return None

    @abc.abstractmethod
    def read(self) -> Frame | None:
        """The next frame, or ``None`` at the end of a finite source."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the device or file; idempotent."""


class FileSource(Source):
    """A video file read through OpenCV's FFmpeg backend; frames stamped with their position."""

    def __init__(self, uri: URI) -> None:
        super().__init__(uri)
        self._capture: cv2.VideoCapture | None = None
        self._fps: float | None = None
        self._count = 0
        self._index = 0

    @property
    def fps(self) -> float | None:
        return self._fps

    def open(self) -> None:
        path = self.uri.path
        if not path.is_file():
            raise InputError(path, "video file not found" if not path.exists() else "not a file")
        with quiet_native_stderr():  # FFmpeg and OpenCV print their own lines for broken files
            capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        if not capture.isOpened():
            raise InputError(path, "cannot open as a video (corrupt, truncated or unknown format)")
        fps = capture.get(cv2.CAP_PROP_FPS)
        self._fps = fps if fps > 0 else None
        self._count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self._capture = capture
        self._index = 0

    def read(self) -> Frame | None:
        if self._capture is None:
            raise RuntimeError("read() before open()")
        start = time.monotonic()
        ok, image = self._capture.read()
        if not ok or image is None:
            if self._count > 0 and self._index < self._count:
                self.ended_early = (
                    f"ended after {self._index} of {self._count} frames (truncated or corrupt)"
                )
            return None
        position = self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        if position <= 0.0 and self._index > 0:
            position = self._index / (self._fps or DEFAULT_DIR_FPS)
        now = time.monotonic()
        frame = Frame(image, position, self._index, now, now - start)
        self._index += 1
        return frame

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class DirSource(Source):
    """A folder of images in name order (8- or 16-bit, grey or colour).

    Frame ``i`` is stamped ``i / fps``, or with the time its file has in a timestamps file: one
    ``<file name> <seconds>`` line per frame (``#`` starts a comment); then only the listed files
    are played, in time order.
    """

    def __init__(self, uri: URI, fps: float = DEFAULT_DIR_FPS) -> None:
        super().__init__(uri)
        self._default_fps = fps
        self._files: list[Path] = []
        self._times: list[float] = []
        self._fps: float | None = None
        self._index = 0

    @property
    def fps(self) -> float | None:
        return self._fps

    def open(self) -> None:
        folder = self.uri.path
        if not folder.is_dir():
            raise InputError(folder, "folder of frames not found")
        files = sorted(
            p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise InputError(folder, "no image files (expected .png, .jpg, .bmp, .tif ...)")
        options = self.uri.options
        if "timestamps" in options:
            self._files, self._times = _read_timestamps(Path(options["timestamps"]), folder)
            span = self._times[-1] - self._times[0]
            self._fps = (len(self._times) - 1) / span if span > 0 else None
        else:
            fps = _parse_fps(options["fps"], self.uri) if "fps" in options else self._default_fps
            self._files = files
            self._times = [i / fps for i in range(len(files))]
            self._fps = fps
        self._index = 0

    def read(self) -> Frame | None:
        if self._index >= len(self._files):
            return None
        index, path = self._index, self._files[self._index]
        self._index += 1
        start = time.monotonic()
        try:
            data = np.fromfile(path, dtype=np.uint8)
        except OSError as err:
            raise CorruptFrame(index, f"{path.name}: cannot read ({err.strerror or err})") from None
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        if image is None or image.size == 0:
            raise CorruptFrame(index, f"{path.name}: cannot decode (truncated or not an image)")
        if image.dtype not in (np.uint8, np.uint16):
            raise CorruptFrame(index, f"{path.name}: unsupported pixel type {image.dtype}")
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        elif image.ndim == 3 and image.shape[2] == 4:
            image = image[:, :, :3]
        now = time.monotonic()
        return Frame(image, self._times[index], index, now, now - start)

    def close(self) -> None:
        self._index = len(self._files)


class CaptureSource(Source):
    """A live source opened through ``cv2.VideoCapture`` with a given backend."""

    live = True
    backend = cv2.CAP_ANY

    def __init__(self, uri: URI) -> None:
        super().__init__(uri)
        self._capture: cv2.VideoCapture | None = None
        self._fps: float | None = None
        self._index = 0

    @property
    def fps(self) -> float | None:
        return self._fps

    def _target(self) -> str:
        return self.uri.location

    def _configure(self, capture: cv2.VideoCapture) -> None:
        """Backend-specific properties set right after opening."""

    def open(self) -> None:
        self.close()
        params = (
            [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                LIVE_TIMEOUT_MS,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                LIVE_TIMEOUT_MS,
            ]
            if self.backend != cv2.CAP_GSTREAMER
            else []  # left out: whether OpenCV's GStreamer backend takes them varies by version
        )
        capture = cv2.VideoCapture(self._target(), self.backend, params)
        if not capture.isOpened():
            capture.release()
            raise FnetError(f"{self.name}: cannot open (device missing, busy or unreachable)")
        try:
            self._configure(capture)
        except BaseException:
            capture.release()
            raise
        fps = capture.get(cv2.CAP_PROP_FPS)
        self._fps = fps if 0 < fps < 1000 else None
        self._capture = capture

    def read(self) -> Frame | None:
        if self._capture is None:
            raise SourceLost(f"{self.name}: not open")
        start = time.monotonic()
        if not self._capture.grab():
            raise SourceLost(f"{self.name}: no frame within {LIVE_TIMEOUT_MS} ms")
        grabbed = time.monotonic()
        ok, image = self._capture.retrieve()
        index = self._index
        self._index += 1
        if not ok or image is None or image.size == 0:
            raise CorruptFrame(index, "grabbed but could not be decoded")
        return Frame(image, grabbed, index, grabbed, time.monotonic() - start)

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


RAW_FORMATS = {"Y16": np.uint16, "Y12": np.uint16, "Y10": np.uint16, "GREY": np.uint8}
"""V4L2 pixel formats read raw (OpenCV's RGB conversion off): single-channel frames of this type
(Y10 and Y12 in 16-bit words), so a radiometric core's counts reach the thermal gain whole."""


def fourcc_code(name: str) -> int:
    """A FOURCC name as V4L2 and OpenCV number it (``Y16`` is ``'Y16 '``)."""
    return int(cv2.VideoWriter.fourcc(*name.ljust(4)[:4]))


def fourcc_name(code: float) -> str:
    """The name of a FOURCC number (as ``CAP_PROP_FOURCC`` reports it)."""
    value = int(code)
    return "".join(chr((value >> (8 * i)) & 0xFF) for i in range(4)).strip("\0 ")


def v4l2_settings(uri: URI) -> list[tuple[int, float]]:
    """The ``(property, value)`` pairs :class:`V4L2Source` sets right after opening, in order.

    The pixel format first (it resets the device), then the size (OpenCV applies width and
    height together), the frame rate, RGB conversion off for :data:`RAW_FORMATS`, and one buffer
    (the newest frame, not a stale one).
    """
    settings: list[tuple[int, float]] = []
    pixel_format = uri.options.get("format", "").upper()
    if pixel_format:
        settings.append((cv2.CAP_PROP_FOURCC, fourcc_code(pixel_format)))
    if "width" in uri.options:
        settings.append((cv2.CAP_PROP_FRAME_WIDTH, uri.integer("width", 0)))
    if "height" in uri.options:
        settings.append((cv2.CAP_PROP_FRAME_HEIGHT, uri.integer("height", 0)))
    if "fps" in uri.options:
        settings.append((cv2.CAP_PROP_FPS, uri.number("fps", 0.0)))
    if pixel_format in RAW_FORMATS:
        settings.append((cv2.CAP_PROP_CONVERT_RGB, 0))
    settings.append((cv2.CAP_PROP_BUFFERSIZE, 1))
    return settings


class V4L2Source(CaptureSource):
    """A V4L2 camera (``v4l2:///dev/video0?width=640&height=512&fps=30&format=Y16``).

    Options ask the camera for a mode (see :func:`v4l2_settings`); a pixel format the camera does
    not take is an error (V4L2 would silently pick another), a size or rate it adjusts is
    reported. Frames of :data:`RAW_FORMATS` arrive as H x W arrays of their own type (uint16 for
    Y16): the 16-bit counts of a thermal core go on to the thermal gain unchanged.
    """

    backend = cv2.CAP_V4L2

    def __init__(self, uri: URI) -> None:
        super().__init__(uri)
        if ("width" in uri.options) != ("height" in uri.options):
            raise FnetError(f"{uri}: give both width and height (V4L2 sets them together)")
        self.pixel_format = uri.options.get("format", "").upper()
        self.raw_type = RAW_FORMATS.get(self.pixel_format)

    def check_present(self) -> None:
        device = self.uri.location
        if device.startswith("/") and not os.path.exists(device):
            raise FnetError(f"{self.name}: cannot open: {device} does not exist (device missing)")

    def _configure(self, capture: cv2.VideoCapture) -> None:
        for prop, value in v4l2_settings(self.uri):
            capture.set(prop, value)
        if self.pixel_format:
            got = fourcc_name(capture.get(cv2.CAP_PROP_FOURCC))
            if got != self.pixel_format:
                raise FnetError(
                    f"{self.name}: the camera did not take format={self.pixel_format} (it gives "
                    f"{got or 'an unknown format'}; list its formats with v4l2-ctl -d "
                    f"{self.uri.location} --list-formats-ext)"
                )
        wanted = [self.uri.options.get(key) for key in ("width", "height")]
        size = [
            int(capture.get(prop)) for prop in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT)
        ]
        if any(w is not None and int(w) != got for w, got in zip(wanted, size, strict=True)):
            log.warning("%s: the camera gives %dx%d frames", self.name, *size)

    def read(self) -> Frame | None:
        frame = super().read()
        if frame is not None and self.raw_type is not None:
            image = frame.image
            if image.ndim != 2 or image.dtype != self.raw_type:
                raise FnetError(
                    f"{self.name}: format={self.pixel_format} frames came as {image.dtype} "
                    f"{'x'.join(map(str, image.shape))}, not single-channel "
                    f"{np.dtype(self.raw_type).name} (this OpenCV build's V4L2 backend does not "
                    "read it raw)"
                )
        return frame


class CsiSource(CaptureSource):
    """A Jetson MIPI CSI camera (``csi://0?width=1920&height=1080&fps=30&flip=2``) through
    ``nvarguscamerasrc`` (:func:`~fnet_deploy.runtime.gst_pipelines.csi_pipeline`); needs
    OpenCV with GStreamer, as JetPack's."""

    backend = cv2.CAP_GSTREAMER

    def __init__(self, uri: URI) -> None:
        super().__init__(uri)
        require_gstreamer(uri.text)
        self.pipeline = csi_pipeline(
            int(uri.location),
            uri.integer("width", int(CSI_DEFAULTS["width"])),
            uri.integer("height", int(CSI_DEFAULTS["height"])),
            uri.number("fps", CSI_DEFAULTS["fps"]),
            uri.integer("flip", int(CSI_DEFAULTS["flip"])),
        )

    def _target(self) -> str:
        return self.pipeline


_FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_ffmpeg_options_lock = threading.Lock()


def ffmpeg_capture_options(uri: URI) -> str:
    """FFmpeg's RTSP options for ``uri`` in OpenCV's ``key;value|key;value`` syntax.

    ``transport`` becomes ``rtsp_transport``; without it TCP is preferred with a fall-back to
    UDP, as OpenCV does by default. ``latency`` (ms) becomes ``max_delay`` (us), the time FFmpeg
    may hold packets to put them back in order.
    """
    pairs = []
    if "transport" in uri.options:
        pairs.append(("rtsp_transport", uri.options["transport"]))
    else:
        pairs.append(("rtsp_flags", "prefer_tcp"))
    if "latency" in uri.options:
        pairs.append(("max_delay", str(uri.integer("latency", 0) * 1000)))
    return "|".join(f"{key};{value}" for key, value in pairs)


@contextlib.contextmanager
def _ffmpeg_options(options: str) -> Iterator[None]:
    """OpenCV reads FFmpeg's options from the environment when a capture opens: set them for
    this opening only (one opening at a time), on top of any the user set."""
    with _ffmpeg_options_lock:
        before = os.environ.get(_FFMPEG_OPTIONS_ENV)
        os.environ[_FFMPEG_OPTIONS_ENV] = f"{before}|{options}" if before else options
        try:
            yield
        finally:
            if before is None:
                del os.environ[_FFMPEG_OPTIONS_ENV]
            else:
                os.environ[_FFMPEG_OPTIONS_ENV] = before


class RtspSource(CaptureSource):
    """An RTSP stream (``rtsp://...?transport=tcp&latency=200``) through OpenCV's FFmpeg
    backend (see :func:`ffmpeg_capture_options`)."""

    backend = cv2.CAP_FFMPEG

    def _target(self) -> str:
        return self.uri.location

    def open(self) -> None:
        with _ffmpeg_options(ffmpeg_capture_options(self.uri)):
            super().open()


class GstSource(CaptureSource):
    """A GStreamer pipeline ending in ``appsink`` (``gst://...``)."""

    backend = cv2.CAP_GSTREAMER

    def open(self) -> None:
        require_gstreamer(self.name)
        super().open()


def open_source(uri: URI, fps: float = DEFAULT_DIR_FPS) -> Source:
    """The source for ``uri`` (not opened yet, but checked to be there:
    :meth:`Source.check_present`); ``fps`` is the default rate of frame folders.

    Raises:
        FnetError: a source this OpenCV build cannot read (``csi://``, ``gst://`` without
            GStreamer), or a camera device that does not exist.
    """
    source = _source_for(uri, fps)
    source.check_present()
    return source


def _source_for(uri: URI, fps: float) -> Source:
    if uri.scheme == "file":
        return FileSource(uri)
    if uri.scheme == "dir":
        return DirSource(uri, fps)
    if uri.scheme == "v4l2":
        return V4L2Source(uri)
    if uri.scheme == "csi":
        return CsiSource(uri)
    if uri.scheme == "rtsp":
        return RtspSource(uri)
    if uri.scheme == "gst":
        require_gstreamer(uri.text)
        return GstSource(uri)
    raise FnetError(f"{uri}: '{uri.scheme}://' is not a source")


def _parse_fps(text: str, uri: URI) -> float:
    try:
        fps = float(text)
    except ValueError:
        fps = 0.0
    if not fps > 0:
        raise FnetError(f"{uri}: fps must be a positive number, got {text!r}")
    return fps


def _read_timestamps(path: Path, folder: Path) -> tuple[list[Path], list[float]]:
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise InputError(path, f"cannot read timestamps file ({err.strerror or err})") from None
    entries: list[tuple[float, Path]] = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        parts = text.rsplit(maxsplit=1)
        try:
            seconds = float(parts[1]) if len(parts) == 2 else float("nan")
        except ValueError:
            seconds = float("nan")
        if not np.isfinite(seconds):
            raise InputError(path, f"line {number}: expected '<file name> <seconds>'")
        frame = folder / parts[0]
        if not frame.is_file():
            raise InputError(path, f"line {number}: {frame} not found")
        entries.append((seconds, frame))
    if not entries:
        raise InputError(path, "no frames listed")
    entries.sort(key=lambda entry: entry[0])
    return [frame for _, frame in entries], [seconds for seconds, _ in entries]
