"""Video sinks: video files, folders of frames, a window, GStreamer and RTSP outputs, a browser
view.

Sinks take uint8 frames (H x W grey or H x W x 3 BGR) of one fixed size, open on the first frame,
and must be closed: closing a file sink finalises the container (an MP4 without its index does not
play) and moves it into place, so a file either plays or is not there. Served sinks (the RTSP
server of :mod:`~fnet_deploy.runtime.rtsp_server`, the browser view of
:mod:`~fnet_deploy.runtime.web_view`) listen from the moment they are made, so that an address in
use is refused before any work.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import re
import sys
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np

from fnet_deploy.data.images import write_image
from fnet_deploy.helpers.atomic import check_writable
from fnet_deploy.helpers.errors import FnetError, InputError
from fnet_deploy.runtime.capabilities import gstreamer_element, require_gstreamer
from fnet_deploy.runtime.gst_pipelines import (
    DEFAULT_BITRATE_KBITS,
    choose_encoder,
    push_pipeline,
)
from fnet_deploy.runtime.h264 import H264Writer, h264_encoder
from fnet_deploy.runtime.stats import RunStats
from fnet_deploy.runtime.uri import URI, VIDEO_SUFFIXES

if TYPE_CHECKING:
    from fnet_deploy.runtime.prometheus import StreamMetrics

FOURCC_BY_SUFFIX = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "FFV1"}
"""Codecs OpenCV's FFmpeg backend writes (and reads back) in the PyPI wheels; H.264 is not one."""
CODEC_OF_FOURCC = {"mp4v": "mpeg4", "MJPG": "mjpeg", "FFV1": "ffv1"}
"""The codec of each FOURCC as FFmpeg (and ffprobe) names it."""
H264_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov"}
"""Suffixes written in H.264 where PyAV has an encoder (:mod:`~fnet_deploy.runtime.h264`), and
FFmpeg's muxer for each."""

log = logging.getLogger("fnet_deploy.runtime")


class Sink(abc.ABC):
    """Where fused frames go. ``write`` frames, then ``close`` (or use as a context manager).

    ``fps`` is the output frame rate; ``None`` until the pipeline sets it from the visible
    source (it must be set before the first frame of a video sink).
    """

    def __init__(self, uri: URI, fps: float | None = None) -> None:
        self.uri = uri
        self.fps = fps
        self.written = 0
        self.stop_requested = False

    @property
    def name(self) -> str:
        """The URI as the user wrote it."""
        return self.uri.text

    def write(self, image: np.ndarray) -> None:
        """Write one uint8 frame (H x W, or H x W x 3 BGR)."""
        self._write(image)
        self.written += 1

    @abc.abstractmethod
    def _write(self, image: np.ndarray) -> None: ...

    @abc.abstractmethod
    def close(self) -> None:
        """Finish the output; idempotent."""

    def observe(self, stats: RunStats) -> None:
        """Called by the pipeline a few times a second with the run's statistics (counts up to
        date); sinks that show them (the browser view) take them here, others ignore them."""
        del stats

    def attach(self, stats: RunStats, metrics: StreamMetrics | None) -> None:
        """Give the sink the run's statistics and metrics, before the run starts; sinks that
        serve them (the browser view's ``/stats.json`` and ``/metrics``) keep them, others
        ignore them."""
        del stats, metrics

    def codecs(self) -> dict[str, str]:
        """The codec (FFmpeg's name: ``h264``, ``mpeg4`` ...) of each video file this sink
        writes, by output name; empty for other outputs."""
        return {}

    def __enter__(self) -> Sink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _FrameWriter(Protocol):
    """What a :class:`_WriterSink` writes through: ``cv2.VideoWriter`` or
    :class:`~fnet_deploy.runtime.h264.H264Writer`."""

    def write(self, image: np.ndarray, /) -> object: ...

    def release(self) -> object: ...


class _WriterSink(Sink):
    """A sink backed by a video writer (``cv2.VideoWriter``, or PyAV's H.264 encoder) opened on
    the first frame (its size fixes the video).

    Encoders with 4:2:0 chroma need even sizes: of a frame with an odd width or height the last
    column or row is not written (said once in the log), as FFmpeg would do silently.
    """

    def __init__(self, uri: URI, fps: float | None = None) -> None:
        super().__init__(uri, fps)
        self._writer: _FrameWriter | None = None
        self._size: tuple[int, int] | None = None

    @abc.abstractmethod
    def _open_writer(self, size: tuple[int, int]) -> _FrameWriter: ...

    @property
    def frame_rate(self) -> float:
        """The rate to write at (``fps``, which must be set by now)."""
        if not self.fps or self.fps <= 0:
            raise FnetError(f"{self.name}: no output frame rate set")
        return float(self.fps)

    def _write(self, image: np.ndarray) -> None:
        size = (image.shape[1], image.shape[0])
        if self._writer is None:
            even = (size[0] - size[0] % 2, size[1] - size[1] % 2)
            if even != size:
                log.info(
                    "%s: frames are %dx%d; writing %dx%d (video needs even sizes)",
                    self.name,
                    *size,
                    *even,
                )
            self._writer = self._open_writer(even)
            self._size = size
        elif size != self._size:
            raise FnetError(f"{self.name}: frame size changed from {self._size} to {size}")
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        height, width = image.shape[0] - image.shape[0] % 2, image.shape[1] - image.shape[1] % 2
        self._writer.write(np.ascontiguousarray(image[:height, :width]))

    def _release(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.release()


class VideoFileSink(_WriterSink):
    """A video file: ``.mp4``/``.m4v``/``.mov`` in H.264 (PyAV's encoder; where PyAV or its
    encoder is missing, MPEG-4 Part 2 through OpenCV, said in one line when the video opens),
    ``.avi`` MJPEG, ``.mkv`` FFV1.

    Frames go to a hidden ``.<stem>.partial<suffix>`` beside the target; :meth:`close` finalises
    it and renames it into place. A run that wrote no frame leaves no file.

    Attributes:
        codec: the codec written, as FFmpeg names it (``h264``, ``mpeg4``, ``mjpeg``, ``ffv1``).
        encoder: the PyAV H.264 encoder used, or ``None`` (OpenCV writes the video).
    """

    def __init__(self, uri: URI, fps: float | None = None) -> None:
        super().__init__(uri, fps)
        self.path = uri.path
        suffix = self.path.suffix.lower()
        if suffix not in FOURCC_BY_SUFFIX:
            raise InputError(
                self.path,
                f"unknown video suffix '{self.path.suffix}' (expected one of "
                f"{', '.join(sorted(VIDEO_SUFFIXES))})",
            )
        if self.path.is_dir():
            raise InputError(self.path, "is a folder; give a video file name such as fused.mp4")
        check_writable(self.path)
        self.fourcc = FOURCC_BY_SUFFIX[suffix]
        self.partial = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.container = H264_CONTAINERS.get(suffix)
        self.encoder = h264_encoder() if self.container is not None else None
        self.codec = "h264" if self.encoder is not None else CODEC_OF_FOURCC[self.fourcc]

    def codecs(self) -> dict[str, str]:
        """``{output name: codec}`` (see :attr:`codec`)."""
        return {self.name: self.codec}

    def _open_writer(self, size: tuple[int, int]) -> _FrameWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.encoder is not None and self.container is not None:
            return H264Writer(self.partial, size, self.frame_rate, self.encoder, self.container)
        if self.container is not None:
            log.warning(
                "%s: no H.264 encoder here (PyAV, `pip install av`): writing MPEG-4 Part 2 "
                "(mp4v), which browsers do not play",
                self.name,
            )
        writer = cv2.VideoWriter(
            str(self.partial),
            cv2.CAP_FFMPEG,
            cv2.VideoWriter.fourcc(*self.fourcc),
            self.frame_rate,
            size,
        )
        if not writer.isOpened():
            raise InputError(self.path, f"cannot write a '{self.fourcc}' video here")
        return writer

    def close(self) -> None:
        had_writer = self._writer is not None
        self._release()
        if had_writer and self.written:
            os.replace(self.partial, self.path)
        elif had_writer:
            with contextlib.suppress(FileNotFoundError):
                self.partial.unlink()


class FrameDirSink(Sink):
    """A folder of PNG frames ``000000.png``, ``000001.png`` ... each written atomically.

    A folder that already holds such frames (an earlier run) is refused, so that old and new
    frames never mix, unless the URI says ``?overwrite=1``: then the old frames are deleted
    when the first new frame is written (a run that writes nothing leaves them); other files in
    the folder are left alone.
    """

    FRAME_NAME = re.compile(r"\d{6}\.png")

    def __init__(self, uri: URI, fps: float | None = None) -> None:
        super().__init__(uri, fps)
        self.path = uri.path
        check_writable(self.path, folder=True)
        overwrite = uri.flag("overwrite")
        self.stale = sorted(
            entry
            for entry in (self.path.iterdir() if self.path.is_dir() else ())
            if self.FRAME_NAME.fullmatch(entry.name) and entry.is_file()
        )
        if self.stale and not overwrite:
            raise InputError(
                self.path,
                f"holds {len(self.stale)} frames of an earlier run; add ?overwrite=1 "
                f"(dir://{self.path}/?overwrite=1) to replace them, or choose another --out",
            )

    def _write(self, image: np.ndarray) -> None:
        for old in self.stale:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
        self.stale = []
        write_image(self.path / f"{self.written:06d}.png", image)

    def close(self) -> None:
        """Nothing to finish: every frame is complete once written."""


class DisplaySink(Sink):
    """A window on the local display; closing it or pressing ``q`` / Esc asks the run to stop."""

    WINDOW = "fnet-deploy stream"

    def __init__(self, uri: URI, fps: float | None = None) -> None:
        super().__init__(uri, fps)
        problem = display_problem()
        if problem:
            raise FnetError(f"{uri}: {problem}")
        self._open = False

    def _write(self, image: np.ndarray) -> None:
        if not self._open:
            cv2.namedWindow(self.WINDOW, cv2.WINDOW_NORMAL)
            self._open = True
        cv2.imshow(self.WINDOW, image)
        key = cv2.waitKey(1) & 0xFF
        closed = cv2.getWindowProperty(self.WINDOW, cv2.WND_PROP_VISIBLE) < 1
        if key in (ord("q"), 27) or closed:
            self.stop_requested = True

    def close(self) -> None:
        if self._open:
            cv2.destroyWindow(self.WINDOW)
            self._open = False


class GstSink(_WriterSink):
    """A GStreamer pipeline starting with ``appsrc`` (``gst://``), or an RTSP publisher.

    ``rtsp://host:port/path`` publishes H.264 to an external RTSP server (for example mediamtx)
    through :func:`~fnet_deploy.runtime.gst_pipelines.push_pipeline`, with the ``encoder`` asked
    for (default: the best one GStreamer has) at ``?bitrate=`` kbit/s; it needs
    ``rtspclientsink`` (Debian/Ubuntu: gstreamer1.0-rtsp).
    """

    def __init__(self, uri: URI, fps: float | None = None, encoder: str | None = None) -> None:
        super().__init__(uri, fps)
        require_gstreamer(uri.text)
        self.encoder = choose_encoder(encoder, gstreamer_element) if uri.scheme == "rtsp" else None
        self.pipeline = uri.location

    def _open_writer(self, size: tuple[int, int]) -> cv2.VideoWriter:
        if self.encoder is not None:
            bitrate = self.uri.integer("bitrate", DEFAULT_BITRATE_KBITS)
            self.pipeline = push_pipeline(self.uri.location, self.encoder, bitrate, self.frame_rate)
        writer = cv2.VideoWriter(self.pipeline, cv2.CAP_GSTREAMER, 0, self.frame_rate, size, True)
        if not writer.isOpened():
            raise FnetError(
                f"{self.name}: GStreamer could not start the pipeline {self.pipeline!r}"
            )
        return writer

    def close(self) -> None:
        self._release()


class TeeSink(Sink):
    """Several outputs of one run (``--out`` repeated): every frame goes to each, in order.

    E.g. a served ``rtsp://@:8554/fused`` for a recorder and an ``http://@:8080`` browser view.
    Setting ``fps`` sets it on every output; a stop asked by any output stops the run; closing
    closes every output, even when one fails, then raises the first failure.
    """

    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = sinks
        super().__init__(sinks[0].uri, sinks[0].fps)

    @property
    def name(self) -> str:
        """The outputs' URIs joined by `` + ``."""
        return " + ".join(sink.name for sink in self.sinks)

    @property
    def fps(self) -> float | None:
        """The output frame rate (the same for every output)."""
        return self.sinks[0].fps

    @fps.setter
    def fps(self, value: float | None) -> None:
        for sink in self.sinks:
            sink.fps = value

    @property
    def stop_requested(self) -> bool:
        """Whether any output asked the run to stop (a closed display window)."""
        return any(sink.stop_requested for sink in self.sinks)

    @stop_requested.setter
    def stop_requested(self, value: bool) -> None:
        for sink in self.sinks:
            sink.stop_requested = value

    def _write(self, image: np.ndarray) -> None:
        for sink in self.sinks:
            sink.write(image)

    def observe(self, stats: RunStats) -> None:
        for sink in self.sinks:
            sink.observe(stats)

    def attach(self, stats: RunStats, metrics: StreamMetrics | None) -> None:
        """Give every output the run's statistics and metrics (:meth:`Sink.attach`)."""
        for sink in self.sinks:
            sink.attach(stats, metrics)

    def codecs(self) -> dict[str, str]:
        """Every output's video codec (:meth:`Sink.codecs`)."""
        return {name: codec for sink in self.sinks for name, codec in sink.codecs().items()}

    def close(self) -> None:
        failure: BaseException | None = None
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as err:
                failure = failure or err
        if failure is not None:
            raise failure


def display_problem() -> str | None:
    """Why no window can be shown here, or ``None`` when one can."""
    gui = next(
        (
            line.split(":", 1)[1].strip()
            for line in cv2.getBuildInformation().splitlines()
            if line.strip().startswith("GUI:")
        ),
        "",
    )
    if gui.upper() == "NONE":
        return (
            "this OpenCV build has no GUI (opencv-python-headless); install opencv-python "
            "for display:// or write to a file"
        )
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return "no display available (DISPLAY and WAYLAND_DISPLAY are unset)"
    return None
