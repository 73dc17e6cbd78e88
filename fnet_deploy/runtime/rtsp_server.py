"""Serving the fused stream over RTSP: ``--out rtsp://@:8554/fused``, as jetson-utils does.

GStreamer's RTSP server library (gst-rtsp-server) runs in this process through PyGObject (the
``rtsp-server`` extra; the library and an H.264 encoder are system packages). ``@`` alone serves on
every interface, ``@ADDRESS`` on one (``rtsp://@127.0.0.1:8554/fused``); port 0 takes a free one.
All clients share one encoded stream (any number of them); a client that starts playing gets a
key frame at once. The media is made on the first
frame, whose size and the output rate fix its caps; until then a client is told the path is not
found, and frames written while nobody watches are not encoded.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import cv2
import numpy as np

from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.runtime.capabilities import gi_modules, gstreamer_element
from fnet_deploy.runtime.gst_pipelines import (
    DEFAULT_BITRATE_KBITS,
    choose_encoder,
    served_launch,
)
from fnet_deploy.runtime.sinks import Sink
from fnet_deploy.runtime.uri import URI, endpoint

log = logging.getLogger("fnet_deploy.runtime")

FORCE_KEY_UNIT = "GstForceKeyUnit, all-headers=(boolean)true"
"""GStreamer's upstream request for a key frame (with the stream headers), as encoders take it."""


class RtspServerSink(Sink):
    """An RTSP server in this process serving the fused frames as H.264.

    It listens from construction (an address in use, a missing library or encoder is refused
    before any work) until :meth:`close`.

    Args:
        uri: ``rtsp://@[ADDRESS]:PORT/path[?bitrate=KBITS]``.
        fps: output frame rate (``None``: set by the pipeline before the first frame).
        encoder: an ``--encoder`` name; ``None``: the best one GStreamer has.

    Attributes:
        url: where clients connect (``0.0.0.0`` when serving on every interface).
        encoder: the chosen :class:`~fnet_deploy.runtime.gst_pipelines.Encoder`.
        clients: clients that connected so far.
        launch: the media's pipeline (after the first frame).
    """

    def __init__(self, uri: URI, fps: float | None = None, encoder: str | None = None) -> None:
        super().__init__(uri, fps)
        self._gst, self._rtsp, glib = gi_modules("Gst", "GstRtspServer", "GLib")
        self.encoder = choose_encoder(encoder, gstreamer_element)
        where = endpoint(uri)
        self.path = where.path
        self.bitrate = uri.integer("bitrate", DEFAULT_BITRATE_KBITS)
        self.clients = 0
        self.launch: str | None = None
        self._size: tuple[int, int] | None = None
        self._sources: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False
        self._server = self._rtsp.RTSPServer.new()
        self._server.set_address(where.host)
        self._server.set_service(str(where.port))
        try:
            self._watch: Any = self._server.create_source(None)
        except glib.Error as err:
            raise FnetError(f"{uri}: cannot serve RTSP ({err.message})") from None
        self._server.connect("client-connected", self._client_connected)
        self._context = glib.MainContext.new()
        self._watch.attach(self._context)
        self._loop = glib.MainLoop.new(self._context, False)
        self._thread = threading.Thread(target=self._loop.run, name="rtsp-server", daemon=True)
        self._thread.start()
        port = self._server.get_bound_port()
        shown = f"[{where.host}]" if ":" in where.host else where.host
        self.url = f"rtsp://{shown}:{port}{self.path}"

    @property
    def name(self) -> str:
        """Where it serves, with the port the system chose for ``:0`` (the URI as written
        says ``:0``, which no client can connect to)."""
        return self.url

    def _write(self, image: np.ndarray) -> None:
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        height, width = image.shape[0] - image.shape[0] % 2, image.shape[1] - image.shape[1] % 2
        if self._size is None:
            self._mount(width, height, image.shape[1], image.shape[0])
        elif self._size != (image.shape[1], image.shape[0]):
            raise FnetError(
                f"{self.name}: frame size changed from {self._size} to "
                f"{(image.shape[1], image.shape[0])}"
            )
        with self._lock:
            sources = list(self._sources)
        if not sources:
            return
        data = np.ascontiguousarray(image[:height, :width]).tobytes()
        for source in sources:
            source.emit("push-buffer", self._gst.Buffer.new_wrapped(data))

    def _mount(self, width: int, height: int, full_width: int, full_height: int) -> None:
        if not self.fps or self.fps <= 0:
            raise FnetError(f"{self.name}: no output frame rate set")
        if (width, height) != (full_width, full_height):
            log.info(
                "%s: frames are %dx%d; serving %dx%d (H.264 needs even sizes)",
                self.name,
                full_width,
                full_height,
                width,
                height,
            )
        self.launch = served_launch(width, height, float(self.fps), self.encoder, self.bitrate)
        factory = self._rtsp.RTSPMediaFactory.new()
        factory.set_launch(self.launch)
        factory.set_shared(True)
        factory.connect("media-configure", self._media_configure)
        self._server.get_mount_points().add_factory(self.path, factory)
        self._size = (full_width, full_height)
        log.info(
            "serving %s (%dx%d at %g fps, H.264 by %s)",
            self.url,
            width,
            height,
            self.fps,
            self.encoder.element,
        )

    def _media_configure(self, factory: Any, media: Any) -> None:
        """A client made the shared media: frames go to its ``appsrc`` until it is unprepared
        (every client gone)."""
        source = media.get_element().get_by_name_recurse_up("src")
        with self._lock:
            if self._closed:
                return
            self._sources.append(source)

        def unprepared(_media: Any) -> None:
            with self._lock:
                if source in self._sources:
                    self._sources.remove(source)

        media.connect("unprepared", unprepared)

    def _client_connected(self, server: Any, client: Any) -> None:
        self.clients += 1
        client.connect("play-request", self._play_request)

    def _play_request(self, client: Any, context: Any) -> None:
        """A client starts playing: the encoder makes its next frame a key frame, so that the
        client need not wait for the next one of the regular interval (counted in frames, so
        longer than :data:`~fnet_deploy.runtime.gst_pipelines.KEYFRAME_SECONDS` when frames
        come slower than the output rate)."""
        with self._lock:
            sources = list(self._sources)
        for source in sources:
            request = self._gst.Event.new_custom(
                self._gst.EventType.CUSTOM_UPSTREAM,
                self._gst.Structure.new_from_string(FORCE_KEY_UNIT),
            )
            payloader = source.get_parent().get_by_name("pay0")
            payloader.get_static_pad("sink").push_event(request)

    def close(self) -> None:
        """Stop serving: the stream ends for every client and the port is released."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            sources, self._sources = self._sources, []
        for source in sources:
            source.emit("end-of-stream")
        if self._size is not None:
            self._server.get_mount_points().remove_factory(self.path)
        self._server.client_filter(lambda _server, _client: self._rtsp.RTSPFilterResult.REMOVE)
        self._watch.destroy()
        self._watch = None  # the last reference to the listening socket: the port is released
        self._loop.quit()
        self._thread.join(timeout=5)
