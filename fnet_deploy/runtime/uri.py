"""Naming video sources and sinks by URI, in the style of jetson-utils' videoSource/videoOutput.

Sources:

- ``file://clip.mp4`` (relative) or ``file:///abs/clip.mp4``: a video file;
- ``dir://frames/``: a folder of images played in name order, at ``?fps=N`` (default: the
  ``--fps`` option) or at the times listed in ``?timestamps=times.txt``;
- ``v4l2:///dev/video0`` (or ``v4l2://0``): a V4L2 camera;
- ``rtsp://host:port/path``: a network stream;
- ``gst://<pipeline>``: a GStreamer pipeline ending in ``appsink`` (needs OpenCV with GStreamer).

Sinks: ``file://out.mp4``, ``dir://out/`` (``?overwrite=1`` to replace the frames of an earlier
run there), ``display://0``, ``gst://<pipeline starting with
appsrc>``, ``rtsp://host:port/path`` (published through GStreamer's ``rtspclientsink``).

A bare path is a file or a folder by what it is (for a sink that does not exist yet: a folder when
it has no suffix), and a bare ``/dev/videoN`` is a V4L2 camera.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl

from fnet_deploy.errors import FnetError, InputError

Role = Literal["source", "sink"]

SOURCE_SCHEMES = ("file", "dir", "v4l2", "rtsp", "gst")
SINK_SCHEMES = ("file", "dir", "display", "gst", "rtsp")
LIVE_SCHEMES = frozenset({"v4l2", "rtsp", "gst"})
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv"})
_OPTIONS: dict[tuple[Role, str], frozenset[str]] = {
    ("source", "dir"): frozenset({"fps", "timestamps"}),
    ("sink", "dir"): frozenset({"overwrite"}),
}


@dataclass(frozen=True)
class URI:
    """A parsed source or sink name.

    Attributes:
        scheme: one of :data:`SOURCE_SCHEMES` or :data:`SINK_SCHEMES`.
        location: the path (file, dir, v4l2), URL (rtsp), pipeline (gst) or display number.
        options: ``?key=value`` options (only folders of frames take any: ``fps`` and
            ``timestamps`` as a source, ``overwrite`` as a sink).
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


def parse_uri(text: str, role: Role) -> URI:
    """Parse a source or sink name (see the module docstring for the accepted forms).

    Raises:
        FnetError: an unknown scheme, an option the scheme does not take, an empty location.
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
    if scheme in ("file", "dir"):
        rest, _, query = rest.partition("?")
        options = dict(parse_qsl(query, keep_blank_values=True)) if query else {}
        allowed = _OPTIONS.get((role, scheme), frozenset())
        unknown = sorted(set(options) - allowed)
        if unknown:
            accepted = ", ".join(sorted(allowed)) or "none"
            raise FnetError(f"{text}: unknown option(s) {unknown} (accepted: {accepted})")
    if scheme == "v4l2" and rest.isdigit():
        rest = f"/dev/video{rest}"
    if scheme == "rtsp":
        rest = text
    if scheme == "display" and not rest:
        rest = "0"
    if not rest:
        raise FnetError(f"{text}: nothing after '{scheme}://'")
    return URI(scheme=scheme, location=rest, text=text, options=options)


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
