"""What this machine's video stack can do, detected once per process.

OpenCV's backends (FFmpeg, GStreamer, V4L2) come from the ``cv2`` build in use; GStreamer
elements (H.264 encoders, ``nvarguscamerasrc``) from GStreamer itself, asked through PyGObject
when it is installed, else through ``gst-inspect-1.0``. A missing capability is one line that says
what needs it and how to get it.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import cv2

from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.helpers.optional import require

_BACKENDS = {"FFMPEG": cv2.CAP_FFMPEG, "GSTREAMER": cv2.CAP_GSTREAMER, "V4L2": cv2.CAP_V4L2}


@functools.cache
def opencv_backends() -> frozenset[str]:
    """The video I/O backends of this OpenCV build among FFMPEG, GSTREAMER and V4L2."""
    return frozenset(
        name for name, code in _BACKENDS.items() if cv2.videoio_registry.hasBackend(code)
    )


def has_gstreamer() -> bool:
    """Whether this OpenCV build can run GStreamer pipelines."""
    return "GSTREAMER" in opencv_backends()


def require_gstreamer(what: str, example: str = "") -> None:
    """Raise one clear line when ``what`` needs OpenCV's GStreamer backend and it is absent.

    Args:
        what: the URI or option that needs it, first in the message.
        example: where such a build comes from, for the message (default: JetPack).
    """
    if has_gstreamer():
        return
    raise FnetError(
        f"{what}: needs OpenCV built with GStreamer{example or ', as on JetPack'}; the OpenCV "
        f"{cv2.__version__} imported from {Path(cv2.__file__).parent} has none (PyPI's "
        "opencv-python wheels never do: on a Jetson use JetPack's OpenCV, see README 'Jetson'; "
        "elsewhere build OpenCV with -DWITH_GSTREAMER=ON)"
    )


GI_LIBRARIES = {
    "Gst": ("1.0", "gir1.2-gstreamer-1.0"),
    "GstRtspServer": ("1.0", "gir1.2-gst-rtsp-server-1.0"),
}
"""PyGObject bindings used here: (API version, the Debian/Ubuntu package with their data)."""


def gi_modules(*names: str) -> list[ModuleType]:
    """PyGObject's bindings ``names`` (``Gst``, ``GstRtspServer``, ``GLib``), GStreamer
    initialised.

    Raises:
        MissingDependencyError: PyGObject is not installed (names the extra).
        FnetError: a GStreamer library's introspection data is missing (names the package).
    """
    gi = require("gi")
    for name in names:
        if name in GI_LIBRARIES:
            version, package = GI_LIBRARIES[name]
            try:
                gi.require_version(name, version)
            except ValueError:
                raise FnetError(
                    f"GStreamer's {name} {version} library is not installed (on Debian/Ubuntu: "
                    f"apt install {package})"
                ) from None
    modules = [require(f"gi.repository.{name}") for name in names]
    gst = require("gi.repository.Gst") if "Gst" in names else None
    if gst is not None and not gst.is_initialized():
        gst.init(None)
    return modules


@functools.cache
def gstreamer_element(name: str) -> bool | None:
    """Whether GStreamer has the element factory ``name``; ``None`` when it cannot be told
    (neither PyGObject's GStreamer bindings nor ``gst-inspect-1.0`` are here)."""
    found = _ask_pygobject(name)
    return found if found is not None else _ask_gst_inspect(name)


def _ask_pygobject(name: str) -> bool | None:
    try:
        (gst,) = gi_modules("Gst")
    except FnetError:  # probed only: without the bindings gst-inspect-1.0 is asked instead
        return None
    return gst.ElementFactory.find(name) is not None


def _ask_gst_inspect(name: str) -> bool | None:
    inspect = shutil.which("gst-inspect-1.0")
    if inspect is None:
        return None
    try:
        done = subprocess.run([inspect, "--exists", name], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.returncode == 0
