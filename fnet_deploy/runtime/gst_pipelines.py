"""GStreamer pipeline descriptions: Jetson CSI cameras, H.264 encoders, RTSP outputs.

Pure functions from settings to ``gst-launch`` syntax, so that what runs on a Jetson is the same
text the tests check here. Which encoder is present is asked of GStreamer
(:func:`~fnet_deploy.runtime.capabilities.gstreamer_element`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from fnet_deploy.helpers.errors import FnetError

CSI_DEFAULTS = {"width": 1280, "height": 720, "fps": 30.0, "flip": 0}
"""Mode of a ``csi://`` camera without options (jetson-utils' default)."""
DEFAULT_BITRATE_KBITS = 4000
KEYFRAME_SECONDS = 1.0
"""Seconds between key frames: how long a client joining a stream waits for its first picture."""


def csi_pipeline(sensor: int, width: int, height: int, fps: float, flip: int = 0) -> str:
    """A Jetson MIPI CSI camera through ``nvarguscamerasrc`` into OpenCV's ``appsink`` as BGR.

    ``nvvidconv`` moves the frames out of NVMM (GPU) memory and converts to BGRx, which
    ``videoconvert`` turns into the BGR OpenCV expects; the appsink keeps only the newest frame.

    Args:
        sensor: the ``sensor-id`` (``csi://0`` -> 0).
        width, height: the sensor mode to ask for.
        fps: frames per second (a fraction such as 30000/1001 is written as such).
        flip: ``nvvidconv flip-method``: 0 none, 1 90 deg. CCW, 2 180 deg., 3 90 deg. CW,
            4 horizontal, 5 upper-right diagonal, 6 vertical, 7 upper-left diagonal.
    """
    return (
        f"nvarguscamerasrc sensor-id={sensor} ! "
        f"video/x-raw(memory:NVMM), width=(int){width}, height=(int){height}, "
        f"framerate=(fraction){fraction(fps)}, format=(string)NV12 ! "
        f"nvvidconv flip-method={flip} ! video/x-raw, format=(string)BGRx ! "
        "videoconvert ! video/x-raw, format=(string)BGR ! "
        "appsink drop=true max-buffers=1 sync=false"
    )


def fraction(fps: float) -> str:
    """A frame rate as GStreamer's ``N/D``: 30 -> ``30/1``, 12.5 -> ``25/2``, and the NTSC
    rates written to two decimals as what they stand for (29.97 -> ``30000/1001``)."""
    if fps == round(fps):
        return f"{round(fps)}/1"
    ntsc = fps * 1.001
    if abs(ntsc - round(ntsc)) < 0.005:
        return f"{round(ntsc) * 1000}/1001"
    exact = Fraction(fps).limit_denominator(1000)
    return f"{exact.numerator}/{exact.denominator}"


@dataclass(frozen=True)
class Encoder:
    """One H.264 encoder: ``--encoder`` name, the element it needs, where it runs, and the
    pipeline segment from BGR frames to an H.264 stream (``{kbits}``, ``{bits}``, ``{gop}``
    are filled in)."""

    name: str
    element: str
    runs_on: str
    segment: str

    def describe(self, bitrate_kbits: int, fps: float) -> str:
        """The segment for ``bitrate_kbits`` kbit/s with a key frame every
        :data:`KEYFRAME_SECONDS` at ``fps``."""
        gop = max(1, round(fps * KEYFRAME_SECONDS))
        return self.segment.format(kbits=bitrate_kbits, bits=bitrate_kbits * 1000, gop=gop)


ENCODERS: tuple[Encoder, ...] = (
    Encoder(
        "nvv4l2h264",
        "nvv4l2h264enc",
        "Jetson hardware encoder (JetPack)",
        "videoconvert ! video/x-raw, format=(string)BGRx ! nvvidconv ! "
        "video/x-raw(memory:NVMM), format=(string)NV12 ! "
        "nvv4l2h264enc bitrate={bits} iframeinterval={gop} idrinterval={gop} "
        "insert-sps-pps=true maxperf-enable=true ! h264parse",
    ),
    Encoder(
        "nvh264",
        "nvh264enc",
        "NVIDIA GPU hardware encoder (NVENC)",
        "videoconvert ! video/x-raw, format=(string)NV12 ! "
        "nvh264enc bitrate={kbits} gop-size={gop} ! h264parse",
    ),
    Encoder(
        "vaapih264",
        "vaapih264enc",
        "Intel/AMD hardware encoder (VA-API)",
        "videoconvert ! vaapih264enc bitrate={kbits} keyframe-period={gop} ! h264parse",
    ),
    Encoder(
        "v4l2h264",
        "v4l2h264enc",
        "V4L2 memory-to-memory hardware encoder (Raspberry Pi and other SoCs)",
        "videoconvert ! video/x-raw, format=(string)I420 ! "
        'v4l2h264enc extra-controls="controls,video_bitrate={bits},h264_i_frame_period={gop}" ! '
        "video/x-h264, level=(string)4 ! h264parse",
    ),
    Encoder(
        "x264",
        "x264enc",
        "CPU (x264, GStreamer's 'ugly' plugins)",
        "videoconvert ! video/x-raw, format=(string)I420 ! "
        "x264enc tune=zerolatency speed-preset=ultrafast bitrate={kbits} key-int-max={gop}",
    ),
    Encoder(
        "openh264",
        "openh264enc",
        "CPU (OpenH264)",
        "videoconvert ! video/x-raw, format=(string)I420 ! "
        "openh264enc bitrate={bits} gop-size={gop} complexity=low",
    ),
)
"""Every encoder ``--encoder`` can name, best first (hardware before software)."""
ENCODER_NAMES = tuple(encoder.name for encoder in ENCODERS)


def choose_encoder(requested: str | None, present: Callable[[str], bool | None]) -> Encoder:
    """The encoder to use: ``requested`` (an :data:`ENCODER_NAMES` name) if GStreamer has it, or
    by default the first of :data:`ENCODERS` that it has.

    Args:
        requested: ``--encoder``'s value; ``None`` or ``"auto"`` picks the best one present.
        present: whether GStreamer has an element (``None``: cannot be told, then a requested
            encoder is trusted and the default is x264).

    Raises:
        FnetError: an unknown name, a requested encoder that is absent, no encoder at all.
    """
    if requested not in (None, "auto"):
        encoder = next((e for e in ENCODERS if e.name == requested), None)
        if encoder is None:
            raise FnetError(
                f"--encoder: unknown encoder {requested!r} (choose from auto, "
                f"{', '.join(ENCODER_NAMES)})"
            )
        if present(encoder.element) is False:
            available = [e.name for e in ENCODERS if present(e.element)]
            raise FnetError(
                f"--encoder {encoder.name}: GStreamer has no {encoder.element} here "
                f"({encoder.runs_on}); present: {', '.join(available) or 'none'}"
            )
        return encoder
    answers = [(encoder, present(encoder.element)) for encoder in ENCODERS]
    if all(found is None for _, found in answers):
        return next(e for e in ENCODERS if e.name == "x264")
    for encoder, found in answers:
        if found:
            return encoder
    raise FnetError(
        "no H.264 encoder in GStreamer here (looked for "
        f"{', '.join(e.element for e in ENCODERS)}); on Debian/Ubuntu: apt install "
        "gstreamer1.0-plugins-ugly (x264enc)"
    )


def push_pipeline(url: str, encoder: Encoder, bitrate_kbits: int, fps: float) -> str:
    """OpenCV ``appsrc`` (BGR) -> H.264 -> ``rtspclientsink``: publishes to an RTSP server
    (mediamtx and the like) at ``url``."""
    return (
        f"appsrc ! {encoder.describe(bitrate_kbits, fps)} ! rtspclientsink location={url} latency=0"
    )


def served_launch(width: int, height: int, fps: float, encoder: Encoder, bitrate_kbits: int) -> str:
    """The media of GStreamer's RTSP server: BGR frames pushed into ``appsrc name=src`` ->
    H.264 -> RTP (``pay0``). A leaky queue drops frames rather than delaying the pipeline when
    the encoder falls behind."""
    caps = (
        f"video/x-raw, format=(string)BGR, width=(int){width}, height=(int){height}, "
        f"framerate=(fraction){fraction(fps)}"
    )
    return (
        f'( appsrc name=src is-live=true format=time do-timestamp=true caps="{caps}" ! '
        "queue leaky=downstream max-size-buffers=2 ! "
        f"{encoder.describe(bitrate_kbits, fps)} ! "
        "rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
