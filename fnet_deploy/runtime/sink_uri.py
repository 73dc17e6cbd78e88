"""Which sink an output URI opens: the one place that knows every kind of output.

Kept apart from :mod:`fnet_deploy.runtime.sinks` (the sink interface and the local outputs), so
that the served outputs (:mod:`~fnet_deploy.runtime.web_view`,
:mod:`~fnet_deploy.runtime.rtsp_server`) build on that interface without a cycle.
"""

from __future__ import annotations

from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.runtime.gst_pipelines import ENCODER_NAMES
from fnet_deploy.runtime.sinks import DisplaySink, FrameDirSink, GstSink, Sink, VideoFileSink
from fnet_deploy.runtime.uri import URI


def check_encoder_name(encoder: str | None) -> None:
    """Refuse an ``--encoder`` that is not ``auto`` or one of :data:`ENCODER_NAMES`.

    Raises:
        FnetError: one line listing the encoders.
    """
    if encoder not in (None, "auto", *ENCODER_NAMES):
        raise FnetError(
            f"--encoder: unknown encoder {encoder!r} (choose from auto, {', '.join(ENCODER_NAMES)})"
        )


def open_sink(uri: URI, fps: float | None = None, encoder: str | None = None) -> Sink:
    """The sink for ``uri`` (checked now, opened on its first frame; served ones listen now).

    Args:
        uri: a parsed sink URI.
        fps: output frame rate (``None``: set by the pipeline from the visible source).
        encoder: H.264 encoder of ``rtsp://`` outputs (``--encoder``; ``None``: the best one
            present); refused for other outputs.

    Raises:
        FnetError: a sink that cannot be made here (one line).
    """
    check_encoder_name(encoder)
    if encoder not in (None, "auto") and uri.scheme != "rtsp":
        raise FnetError(f"--encoder {encoder}: only rtsp:// outputs are encoded here, not {uri}")
    if uri.scheme == "file":
        return VideoFileSink(uri, fps)
    if uri.scheme == "dir":
        return FrameDirSink(uri, fps)
    if uri.scheme == "display":
        return DisplaySink(uri, fps)
    if uri.scheme == "http":
        from fnet_deploy.runtime.web_view import WebViewSink

        return WebViewSink(uri, fps)
    if uri.scheme == "rtsp" and uri.serves:
        from fnet_deploy.runtime.rtsp_server import RtspServerSink

        return RtspServerSink(uri, fps, encoder)
    if uri.scheme in ("gst", "rtsp"):
        return GstSink(uri, fps, encoder)
    raise FnetError(f"{uri}: '{uri.scheme}://' is not an output")
