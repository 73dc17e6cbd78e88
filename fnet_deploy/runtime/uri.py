"""Naming video sources and sinks by URI, in the style of jetson-utils' videoSource/videoOutput.

Sources:

- ``file://clip.mp4`` (relative) or ``file:///abs/clip.mp4``: a video file;
- ``dir://frames/``: a folder of images played in name order, at ``?fps=N`` (default: the
  ``--fps`` option) or at the times listed in ``?timestamps=times.txt``;
- ``v4l2:///dev/video0`` (or ``v4l2://0``): a V4L2 camera; ``?width=640&height=512&fps=30``
  ask for a mode and ``?format=Y16`` for a pixel format (FOURCC; the single-channel ones,
  ``Y16``, ``Y12``, ``Y10`` and ``GREY``, are read raw: 16-bit frames stay 16-bit);
- ``csi://0``: a Jetson MIPI CSI camera (sensor 0) through ``nvarguscamerasrc``, with
  ``?width=&height=&fps=`` and ``?flip=0..7`` (needs OpenCV with GStreamer, as on JetPack);
- ``rtsp://host:port/path``: a network stream; ``?transport=tcp|udp|udp_multicast|http`` and
  ``?latency=MS`` (the jitter buffer) are read here, any other query parameter belongs to the
  camera's URL and is sent to it (``cam/realmonitor?channel=1``), except a near miss of one of
  ours (``?latncy=``), refused as a typo;
- ``gst://<pipeline>``: a GStreamer pipeline ending in ``appsink`` (needs OpenCV with GStreamer).

Sinks: ``file://out.mp4``, ``dir://out/`` (``?overwrite=1`` to replace the frames of an earlier
run there), ``display://0``, ``gst://<pipeline starting with appsrc>``,
``rtsp://@:8554/fused`` (served here: an RTSP server on every interface, or on one with
``rtsp://@ADDRESS:PORT/path``), ``rtsp://host:port/path`` (pushed to an external RTSP server),
both with ``?bitrate=KBITS``; ``http://@:8080`` or ``http://ADDRESS:8080`` (a browser view: the
fused stream as MJPEG beside the run's live statistics; ``http://:8080`` or ``http://`` serve on
127.0.0.1 only; ``?quality=1..100`` for its JPEG frames).

Options go in the query (``?key=value&...``); an option the scheme does not take is refused in one
line that lists those it does. A bare path is a file or a folder by what it is (for a sink that
does not exist yet: a folder when it has no suffix), and a bare ``/dev/videoN`` is a V4L2 camera.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, unquote

from fnet_deploy.helpers.errors import FnetError, InputError

Role = Literal["source", "sink"]

SOURCE_SCHEMES = ("file", "dir", "v4l2", "csi", "rtsp", "gst")
SINK_SCHEMES = ("file", "dir", "display", "gst", "rtsp", "http")
LIVE_SCHEMES = frozenset({"v4l2", "csi", "rtsp", "gst"})
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv"})
MAX_URI_FPS = 1000.0
MAX_SIDE = 16384
RTSP_TRANSPORTS = ("tcp", "udp", "udp_multicast", "http")
DEFAULT_PORTS = {"rtsp": 8554, "http": 8080}


@dataclass(frozen=True)
class _Check:
    """How one option's value is checked: ``accepts(value)`` and what it must be, for messages."""

    accepts: Callable[[str], bool]
    must_be: str


def _whole(low: int, high: int) -> _Check:
    return _Check(
        lambda v: v.isdigit() and low <= int(v) <= high, f"a whole number from {low} to {high}"
    )


def _real(low: float, high: float) -> _Check:
    def accepts(value: str) -> bool:
        try:
            number = float(value)
        except ValueError:
            return False
        return math.isfinite(number) and low < number <= high

    return _Check(accepts, f"a number above {low:g} and at most {high:g}")


_FLAG = _Check(lambda v: v.lower() in ("", "1", "0", "true", "false", "yes", "no"), "1 or 0")
_ANY = _Check(lambda v: bool(v), "given")
_FOURCC = _Check(
    lambda v: 1 <= len(v) <= 4 and v.isascii() and v.isalnum(),
    "a pixel format of 1 to 4 letters or digits (FOURCC: Y16, GREY, YUYV, MJPG ...)",
)
_SIZE = _whole(1, MAX_SIDE)
_FPS = _real(0.0, MAX_URI_FPS)
OPTIONS: dict[tuple[Role, str], dict[str, _Check]] = {
    ("source", "dir"): {"fps": _FPS, "timestamps": _ANY},
    ("sink", "dir"): {"overwrite": _FLAG},
    ("source", "v4l2"): {"width": _SIZE, "height": _SIZE, "fps": _FPS, "format": _FOURCC},
    ("source", "csi"): {"width": _SIZE, "height": _SIZE, "fps": _FPS, "flip": _whole(0, 7)},
    ("source", "rtsp"): {
        "transport": _Check(lambda v: v in RTSP_TRANSPORTS, f"one of {', '.join(RTSP_TRANSPORTS)}"),
        "latency": _whole(0, 60_000),
    },
    ("sink", "rtsp"): {"bitrate": _whole(100, 1_000_000)},
    ("sink", "http"): {"quality": _whole(1, 100)},
}
"""The options each (role, scheme) takes and how their values are checked."""


@dataclass(frozen=True)
class URI:
    """A parsed source or sink name.

    Attributes:
        scheme: one of :data:`SOURCE_SCHEMES` or :data:`SINK_SCHEMES`.
        location: the path (file, dir, v4l2), URL without our options (rtsp), pipeline (gst),
            sensor number (csi), display number, or ``host:port`` to serve on (http).
        options: ``?key=value`` options of :data:`OPTIONS`, checked.
        text: the string as given, for messages.
    """

    scheme: str
    location: str
    text: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        """``location`` as a filesystem path (file, dir and v4l2 URIs)."""
        return Path(self.location)

    @property
    def is_live(self) -> bool:
        """Live sources (cameras, network streams) run on the host clock and drop old frames."""
        return self.scheme in LIVE_SCHEMES

    @property
    def serves(self) -> bool:
        """Whether this sink is served here (``http://``, ``rtsp://@...``) rather than written
        or pushed somewhere."""
        return self.scheme == "http" or (
            self.scheme == "rtsp" and self.location.startswith("rtsp://@")
        )

    def __str__(self) -> str:
        return self.text

    def flag(self, name: str) -> bool:
        """A yes/no option: absent, ``0``, ``false`` or ``no`` -> False; ``1``, ``true``,
        ``yes`` or empty (``?overwrite``) -> True.

        Raises:
            FnetError: any other value.
        """
        value = self.options.get(name)
        if value is None:
            return False
        if value.lower() in ("", "1", "true", "yes"):
            return True
        if value.lower() in ("0", "false", "no"):
            return False
        raise FnetError(f"{self.text}: option {name}={value!r} must be 1 or 0")

    def integer(self, name: str, default: int) -> int:
        """A whole-number option (checked when parsed), or ``default``."""
        return int(self.options[name]) if name in self.options else default

    def number(self, name: str, default: float) -> float:
        """A numeric option (checked when parsed), or ``default``."""
        return float(self.options[name]) if name in self.options else default


@dataclass(frozen=True)
class Endpoint:
    """Where a served sink listens: ``host`` (``0.0.0.0`` for every interface), ``port`` (0: any
    free port) and ``path`` (``/fused``)."""

    host: str
    port: int
    path: str


def parse_uri(text: str, role: Role) -> URI:
    """Parse a source or sink name (see the module docstring for the accepted forms).

    Raises:
        FnetError: an unknown scheme, an option the scheme does not take or a bad option value,
            an empty location, a bad address or port.
        InputError: a bare source path that does not exist.
    """
    text = text.strip()
    if not text:
        raise FnetError(f"empty {role} name")
    schemes = SOURCE_SCHEMES if role == "source" else SINK_SCHEMES
    scheme, sep, rest = text.partition("://")
    if not sep:
        return _bare_path(text, role)
    scheme = scheme.lower()
    if scheme not in schemes:
        raise FnetError(
            f"{text}: unknown {role} scheme '{scheme}://' (expected one of "
            f"{', '.join(s + '://' for s in schemes)})"
        )
    options: dict[str, str] = {}
    if scheme != "gst":
        rest, _, query = rest.partition("?")
        kept: list[str] = []
        if scheme == "rtsp" and role == "source":
            query, kept = _camera_query(text, query)
        options = dict(parse_qsl(query, keep_blank_values=True)) if query else {}
        _check_options(text, role, scheme, options)
        if scheme == "rtsp":
            rest = f"rtsp://{rest}" + (f"?{'&'.join(kept)}" if kept else "")
    if scheme == "v4l2" and rest.isdigit():
        rest = f"/dev/video{rest}"
    if scheme in ("display", "csi") and not rest:
        rest = "0"
    if scheme == "csi" and not rest.isdigit():
        raise FnetError(f"{text}: the camera is a sensor number (csi://0, csi://1 ...)")
    if scheme == "http":
        rest = _http_location(text, rest)
    if not rest:
        raise FnetError(f"{text}: nothing after '{scheme}://'")
    uri = URI(scheme=scheme, location=rest, text=text, options=options)
    if uri.serves:
        endpoint(uri)  # a bad address or port is refused now
    return uri


def endpoint(uri: URI) -> Endpoint:
    """The address, port and path a served sink (``http://``, ``rtsp://@...``) listens on.

    ``@`` alone means every interface (``0.0.0.0``); an ``http://`` URI without ``@`` or address
    serves on ``127.0.0.1``; the port defaults to :data:`DEFAULT_PORTS`.

    Raises:
        FnetError: a port that is not a number from 0 to 65535, an empty path to serve.
    """
    netloc, _, path = uri.location.removeprefix(f"{uri.scheme}://").partition("/")
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):  # [IPv6]:port
        host, _, port_text = hostport[1:].partition("]")
        port_text = port_text.removeprefix(":")
    else:
        host, _, port_text = hostport.partition(":")
    if not host:
        host = "0.0.0.0" if "@" in netloc else "127.0.0.1"
    if port_text and not (port_text.isdigit() and int(port_text) <= 65535):
        raise FnetError(f"{uri.text}: port {port_text!r} must be a number from 0 to 65535")
    port = int(port_text) if port_text else DEFAULT_PORTS[uri.scheme]
    if uri.scheme == "rtsp" and not path.strip("/"):
        raise FnetError(f"{uri.text}: give the path to serve the stream at (rtsp://@:8554/fused)")
    return Endpoint(host, port, "/" + path.strip("/"))


def _check_options(text: str, role: Role, scheme: str, options: dict[str, str]) -> None:
    allowed = OPTIONS.get((role, scheme), {})
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        accepted = ", ".join(sorted(allowed)) or "none"
        raise FnetError(f"{text}: unknown option(s) {unknown} ({scheme}:// takes: {accepted})")
    for name, value in options.items():
        check = allowed[name]
        if not check.accepts(value):
            raise FnetError(f"{text}: option {name}={value!r} must be {check.must_be}")


def _camera_query(text: str, query: str) -> tuple[str, list[str]]:
    """Split an RTSP source's query into our options and the camera's own parameters (kept
    as written); a near miss of one of our names is refused as a typo."""
    ours = OPTIONS[("source", "rtsp")]
    mine: list[str] = []
    kept: list[str] = []
    for piece in filter(None, query.split("&")):
        name = unquote(piece.partition("=")[0])
        if name in ours:
            mine.append(piece)
            continue
        near = [
            known
            for known in difflib.get_close_matches(name.lower(), ours, n=1, cutoff=0.75)
            if abs(len(known) - len(name)) <= 2
        ]
        if near:
            raise FnetError(
                f"{text}: unknown option {name!r}: did you mean {near[0]!r}? (rtsp:// takes: "
                f"{', '.join(sorted(ours))}; other parameters go to the camera as written)"
            )
        kept.append(piece)
    return "&".join(mine), kept


def _http_location(text: str, rest: str) -> str:
    netloc, _, path = rest.partition("/")
    if path.strip("/"):
        raise FnetError(
            f"{text}: the browser view is served at '/', not '/{path}' (http://:8080 or "
            "http://127.0.0.1:8080: this machine only; http://@:8080 or http://0.0.0.0:8080: "
            "every interface, reachable from the network)"
        )
    return f"http://{netloc}"


def _bare_path(text: str, role: Role) -> URI:
    path = Path(text).expanduser()
    if text.startswith("/dev/video"):
        if role == "sink":
            raise FnetError(f"{text}: a camera device cannot be an output")
        return URI(scheme="v4l2", location=text, text=text)
    if path.is_dir():
        return URI(scheme="dir", location=str(path), text=text)
    if path.exists():
        if role == "sink" and path.suffix.lower() not in VIDEO_SUFFIXES:
            raise InputError(path, _suffix_problem(path))
        return URI(scheme="file", location=str(path), text=text)
    if path.is_symlink():  # a link to nothing: a loop, or a target that is gone
        raise InputError(path, "is a symlink loop or a link to nothing")
    if role == "source":
        raise InputError(path, "not found (expected a video file, a folder of frames or a URI)")
    if not path.suffix:
        return URI(scheme="dir", location=str(path), text=text)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise InputError(path, _suffix_problem(path))
    return URI(scheme="file", location=str(path), text=text)


def _suffix_problem(path: Path) -> str:
    return (
        f"unknown video suffix '{path.suffix}' (expected one of "
        f"{', '.join(sorted(VIDEO_SUFFIXES))}, or a folder name for frames)"
    )


def sink_overwrites_source(sink: URI, sources: list[URI]) -> URI | None:
    """The source that writing ``sink`` would overwrite, if any.

    A file or folder sink overwrites a file or folder source that is the same path, or (for a
    folder sink, whose frames are numbered files) lies inside it.
    """
    if sink.scheme not in ("file", "dir"):
        return None
    target = sink.path.resolve()
    for source in sources:
        if source.scheme not in ("file", "dir"):
            continue
        path = source.path.resolve()
        if path == target or (sink.scheme == "dir" and target in path.parents):
            return source
    return None
