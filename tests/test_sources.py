"""URIs, sources (files, folders, live through FFmpeg) and capture threads, on real media."""

from __future__ import annotations

import math
import os
import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from fnet_deploy.helpers.errors import FnetError, InputError
from fnet_deploy.runtime import capture as capture_module
from fnet_deploy.runtime.capabilities import has_gstreamer
from fnet_deploy.runtime.capture import Capture, End
from fnet_deploy.runtime.gst_pipelines import csi_pipeline, fraction
from fnet_deploy.runtime.sources import (
    CorruptFrame,
    DirSource,
    FileSource,
    Frame,
    RtspSource,
    Source,
    SourceLost,
    V4L2Source,
    ffmpeg_capture_options,
    open_source,
    v4l2_settings,
)
from fnet_deploy.runtime.stats import OutageLog
from fnet_deploy.runtime.uri import URI, endpoint, parse_uri, sink_overwrites_source
from tests.conftest import NATO, nato
from tests.rtsp_server import RtspServer, encode_frame


def write_video(path: Path, fps: float, count: int, size: tuple[int, int] = (96, 64)) -> Path:
    """A video whose frame i is uniformly grey at level 8 * i (mod 256), written by OpenCV."""
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, size)
    assert writer.isOpened()
    for i in range(count):
        writer.write(np.full((size[1], size[0], 3), (8 * i) % 256, np.uint8))
    writer.release()
    return path


def read_all(source: FileSource | DirSource) -> list[Frame]:
    source.open()
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    source.close()
    return frames


# --- URIs -----------------------------------------------------------------------------------


def test_parse_source_uris(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.avi", 10, 2)
    assert parse_uri(f"file://{clip}", "source") == URI("file", str(clip), f"file://{clip}")
    uri = parse_uri(f"dir://{tmp_path}?fps=9", "source")
    assert (uri.scheme, uri.path, uri.options) == ("dir", tmp_path, {"fps": "9"})
    assert parse_uri("v4l2:///dev/video0", "source").location == "/dev/video0"
    assert parse_uri("v4l2://2", "source").location == "/dev/video2"
    assert parse_uri("/dev/video1", "source").scheme == "v4l2"
    rtsp = parse_uri("rtsp://cam.local:8554/ir?x=1", "source")
    assert rtsp.location == "rtsp://cam.local:8554/ir?x=1" and rtsp.is_live
    gst = parse_uri("gst://videotestsrc ! appsink", "source")
    assert gst.location == "videotestsrc ! appsink" and gst.is_live
    assert parse_uri(str(clip), "source").scheme == "file"
    assert parse_uri(str(tmp_path), "source").scheme == "dir"
    assert not parse_uri(str(clip), "source").is_live


def test_parse_sink_uris(tmp_path: Path) -> None:
    assert parse_uri("out.mp4", "sink").scheme == "file"
    assert parse_uri(str(tmp_path / "frames"), "sink").scheme == "dir"
    assert parse_uri("display://", "sink").location == "0"
    assert parse_uri("rtsp://server:8554/fused", "sink").scheme == "rtsp"


@pytest.mark.parametrize(
    ("text", "role", "message"),
    [
        ("http://x/y.mp4", "source", "unknown source scheme 'http://'"),
        ("display://0", "source", "unknown source scheme"),
        ("v4l2:///dev/video0", "sink", "unknown sink scheme"),
        ("dir://frames?speed=2", "source", "unknown option(s) ['speed']"),
        ("file://", "source", "nothing after 'file://'"),
        ("out.png", "sink", "unknown video suffix '.png'"),
        ("", "source", "empty source name"),
    ],
)
def test_bad_uris_have_clear_errors(text: str, role: str, message: str) -> None:
    with pytest.raises(FnetError, match=re.escape(message)):
        parse_uri(text, role)  # type: ignore[arg-type]


def test_a_sink_that_would_overwrite_a_source_is_found(tmp_path: Path) -> None:
    frames = tmp_path / "seq" / "vi"
    frames.mkdir(parents=True)
    video = tmp_path / "in.mp4"
    video.write_bytes(b"")
    sources = [parse_uri(str(frames), "source"), parse_uri(str(video), "source")]
    assert sink_overwrites_source(parse_uri(f"dir://{frames}", "sink"), sources) == sources[0]
    assert sink_overwrites_source(parse_uri(str(video), "sink"), sources) == sources[1]
    assert sink_overwrites_source(parse_uri(f"dir://{tmp_path}", "sink"), sources) == sources[0]
    assert sink_overwrites_source(parse_uri(str(tmp_path / "out.mp4"), "sink"), sources) is None
    assert sink_overwrites_source(parse_uri("display://0", "sink"), sources) is None


def test_missing_bare_source_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        parse_uri(str(tmp_path / "nope.mp4"), "source")


# --- finite sources ---------------------------------------------------------------------------


def test_file_source_stamps_frames_with_stream_position(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.mp4", 25, 12)
    source = FileSource(parse_uri(str(clip), "source"))
    frames = read_all(source)
    assert source.fps == pytest.approx(25)
    assert [f.index for f in frames] == list(range(12))
    assert [f.timestamp for f in frames] == pytest.approx([i / 25 for i in range(12)])
    assert source.ended_early is None
    assert frames[5].image.shape == (64, 96, 3)
    assert all(f.read_seconds >= 0 and f.grabbed_at > 0 for f in frames)


def test_truncated_video_ends_early_and_says_so(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.avi", 10, 30, (320, 240))
    data = clip.read_bytes()
    clip.write_bytes(data[: len(data) // 2])
    source = FileSource(parse_uri(str(clip), "source"))
    frames = read_all(source)
    assert 0 < len(frames) < 30
    assert source.ended_early == f"ended after {len(frames)} of 30 frames (truncated or corrupt)"


def test_unreadable_video_is_an_input_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(InputError, match="cannot open as a video"):
        FileSource(parse_uri(str(bad), "source")).open()


def test_dir_source_on_the_real_sequence() -> None:
    source = DirSource(parse_uri(f"dir://{NATO / 'ir'}?fps=9", "source"))
    frames = read_all(source)
    assert len(frames) == 12 and source.fps == 9
    assert frames[3].timestamp == pytest.approx(3 / 9)
    assert frames[0].image.shape == (270, 360) and frames[0].image.dtype == np.uint8


def test_dir_source_timestamps_file_orders_and_selects(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        cv2.imwrite(str(tmp_path / f"{name}.png"), np.full((8, 8), ord(name), np.uint8))
    times = tmp_path / "times.txt"
    times.write_text("# name seconds\nc.png 0.25\na.png 0.0\n")
    frames = read_all(DirSource(parse_uri(f"dir://{tmp_path}?timestamps={times}", "source")))
    assert [(f.timestamp, int(f.image[0, 0])) for f in frames] == [(0.0, 97), (0.25, 99)]
    times.write_text("a.png soon\n")
    with pytest.raises(InputError, match="line 1: expected '<file name> <seconds>'"):
        DirSource(parse_uri(f"dir://{tmp_path}?timestamps={times}", "source")).open()


def test_dir_source_skips_a_corrupt_frame(tmp_path: Path) -> None:
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.full((8, 8), i, np.uint8))
    (tmp_path / "002.png").write_bytes(b"\x89PNG broken")
    source = DirSource(parse_uri(str(tmp_path), "source"), fps=5)
    source.open()
    got = [source.read(), source.read()]
    with pytest.raises(CorruptFrame, match=r"002\.png"):
        source.read()
    got.append(source.read())
    assert source.read() is None
    assert [(f.index, f.timestamp) for f in got if f] == [(0, 0.0), (1, 0.2), (3, 0.6)]


def test_dir_source_keeps_16_bit(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "0.png"), np.full((4, 4), 40000, np.uint16))
    (frame,) = read_all(DirSource(parse_uri(str(tmp_path), "source")))
    assert frame.image.dtype == np.uint16 and frame.image[0, 0] == 40000


def test_empty_folder_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no image files"):
        DirSource(parse_uri(f"dir://{tmp_path}", "source")).open()


# --- live sources -----------------------------------------------------------------------------


def test_missing_camera_has_a_clear_error() -> None:
    with pytest.raises(FnetError, match="cannot open: /dev/video99 does not exist"):
        open_source(parse_uri("v4l2:///dev/video99", "source"))  # before any work
    source = V4L2Source(parse_uri("v4l2:///dev/video99", "source"))
    assert source.live
    with pytest.raises(FnetError, match="cannot open"):
        source.open()


def test_gstreamer_absent_has_a_clear_error() -> None:
    if has_gstreamer():
        pytest.skip("this OpenCV has GStreamer")
    with pytest.raises(FnetError, match="needs OpenCV built with GStreamer"):
        open_source(parse_uri("gst://videotestsrc ! appsink", "source"))


def _stream_from_file(path: Path) -> RtspSource:
    """A live FFmpeg source reading a local file: it "drops" when the file ends."""
    return RtspSource(URI("rtsp", str(path), str(path)))


def test_live_source_stamps_with_host_clock_and_raises_when_lost(tmp_path: Path) -> None:
    source = _stream_from_file(write_video(tmp_path / "live.avi", 30, 3))
    source.open()
    before = time.monotonic()
    frames = [source.read() for _ in range(3)]
    assert all(f is not None and before <= f.timestamp <= time.monotonic() for f in frames)
    with pytest.raises(SourceLost):
        source.read()
    source.close()


# --- capture threads --------------------------------------------------------------------------


def drain(capture: Capture, delay: float = 0.0, limit: float = 20.0) -> tuple[list[Frame], End]:
    frames: list[Frame] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        item = capture.get(0.1)
        if isinstance(item, End):
            return frames, item
        if item is not None:
            frames.append(item)
            time.sleep(delay)
    raise AssertionError("capture did not end")


def test_file_capture_loses_nothing_with_a_slow_consumer(tmp_path: Path) -> None:
    source = FileSource(parse_uri(str(write_video(tmp_path / "c.avi", 25, 20)), "source"))
    source.open()
    capture = Capture(source, "vis")
    capture.start()
    frames, end = drain(capture, delay=0.01)
    capture.stop()
    assert [f.index for f in frames] == list(range(20))
    assert end.reason is None
    assert (capture.counts.read, capture.counts.dropped) == (20, 0)


def test_capture_reports_a_truncated_file(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "t.avi", 10, 30, (320, 240))
    clip.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    source = FileSource(parse_uri(str(clip), "source"))
    source.open()
    capture = Capture(source, "ir")
    capture.start()
    frames, end = drain(capture)
    capture.stop()
    assert end.reason is not None and end.reason.startswith(f"ended after {len(frames)} of 30")


def test_live_capture_keeps_only_the_newest_frame(tmp_path: Path) -> None:
    source = _stream_from_file(write_video(tmp_path / "l.avi", 30, 60))
    source.open()
    capture = Capture(source, "vis", reconnect_timeout=0.0)
    capture.start()
    frames, end = drain(capture, delay=0.05)
    capture.stop()
    indices = [f.index for f in frames]
    assert indices == sorted(indices) and len(indices) < 60
    assert capture.counts.dropped == 60 - len(indices)
    assert end.reason is not None and "lost and not back within 0 s" in end.reason


def test_live_capture_reconnects_after_a_drop(tmp_path: Path) -> None:
    # The "stream" drops at the end of the file; reopening it brings the frames back.
    source = _stream_from_file(write_video(tmp_path / "r.avi", 30, 5))
    source.open()
    capture = Capture(source, "ir", reconnect_timeout=5.0)
    capture.start()
    frames: list[Frame] = []
    deadline = time.monotonic() + 10
    while capture.counts.reconnects < 2 and time.monotonic() < deadline:
        if isinstance(item := capture.get(0.05), Frame):
            frames.append(item)
    capture.stop()
    assert capture.counts.reconnects >= 2
    assert capture.counts.read >= 10  # frames after each reconnection too
    assert [f.timestamp for f in frames] == sorted(f.timestamp for f in frames)


def test_live_capture_gives_up_on_a_device_that_stays_away() -> None:
    source = V4L2Source(parse_uri("v4l2:///dev/video99", "source"))
    capture = Capture(source, "vis", reconnect_timeout=1.0)  # never opened: read() says lost
    start = time.monotonic()
    capture.start()
    frames, end = drain(capture)
    capture.stop()
    assert frames == [] and capture.counts.reconnects == 0
    assert end.reason is not None and end.reason.startswith("lost and not back within 1 s")
    assert time.monotonic() - start >= 0.9  # it waited the timeout (the upper bound: a hang)


# --- edge I/O: URI options, cameras, RTSP options, outages ---------------------------------------


def test_camera_and_stream_options_are_parsed_and_checked() -> None:
    v4l2 = parse_uri("v4l2://1?width=640&height=512&fps=30&format=Y16", "source")
    assert (v4l2.location, v4l2.integer("width", 0), v4l2.number("fps", 0.0)) == (
        "/dev/video1",
        640,
        30.0,
    )
    csi = parse_uri("csi://1?flip=2", "source")
    assert (csi.scheme, csi.location, csi.is_live, csi.options) == ("csi", "1", True, {"flip": "2"})
    assert parse_uri("csi://", "source").location == "0"
    # Our options are taken out of an RTSP URL; the camera's own parameters stay in it, in order.
    rtsp = parse_uri("rtsp://cam:554/cam/realmonitor?channel=1&latency=50&subtype=0", "source")
    assert rtsp.location == "rtsp://cam:554/cam/realmonitor?channel=1&subtype=0"
    assert rtsp.options == {"latency": "50"}
    hikvision = parse_uri("rtsp://cam/Streaming/Channels/101?transportmode=unicast", "source")
    assert hikvision.location.endswith("?transportmode=unicast") and hikvision.options == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("v4l2:///dev/video0?widht=640", "unknown option(s) ['widht'] (v4l2:// takes: format, fps"),
        ("v4l2:///dev/video0?fps=inf", "option fps='inf' must be a number above 0"),
        ("v4l2:///dev/video0?format=Y16_BE", "option format='Y16_BE' must be a pixel format"),
        ("csi://0?flip=8", "option flip='8' must be a whole number from 0 to 7"),
        ("csi://0?exposure=3", "(csi:// takes: flip, fps, height, width)"),
        ("csi://front", "the camera is a sensor number"),
        ("rtsp://cam/x?transport=quic", "must be one of tcp, udp, udp_multicast, http"),
        ("rtsp://cam/x?latency=-5", "option latency='-5' must be a whole number from 0"),
        ("rtsp://cam/x?Latency=5", "unknown option 'Latency': did you mean 'latency'?"),
        ("rtsp://cam/x?transprot=tcp", "did you mean 'transport'?"),
        ("file://clip.mp4?fps=3", "(file:// takes: none)"),
    ],
)
def test_bad_source_options_are_one_line_naming_them(text: str, message: str) -> None:
    with pytest.raises(FnetError, match=re.escape(message)):
        parse_uri(text, "source")


def test_served_outputs_listen_where_asked() -> None:
    def where(text: str) -> tuple[str, int, str]:
        uri = parse_uri(text, "sink")
        assert uri.serves
        found = endpoint(uri)
        return found.host, found.port, found.path

    assert where("http://") == ("127.0.0.1", 8080, "/")  # this machine only, unless asked
    assert where("http://:9000") == ("127.0.0.1", 9000, "/")
    assert where("http://@:8080") == ("0.0.0.0", 8080, "/")  # jetson-utils: '@' = every interface
    assert where("http://0.0.0.0:8080/") == ("0.0.0.0", 8080, "/")
    assert where("http://[::1]:81") == ("::1", 81, "/")
    assert where("rtsp://@:8554/fused") == ("0.0.0.0", 8554, "/fused")
    assert where("rtsp://@127.0.0.1/cams/fused/") == ("127.0.0.1", 8554, "/cams/fused")
    # Without '@' an rtsp:// output is pushed to a server elsewhere (credentials included).
    for pushed in ("rtsp://mediamtx:8554/fused", "rtsp://user:secret@host/fused?bitrate=2000"):
        uri = parse_uri(pushed, "sink")
        assert not uri.serves and uri.location == pushed.partition("?")[0]
    for text, message in (
        ("http://:70000", "port '70000' must be a number from 0 to 65535"),
        ("http://:80/viewer", "served at '/', not '/viewer'"),
        ("rtsp://@:8554/", "give the path to serve the stream at"),
        ("rtsp://@:8554/fused?bitrate=9", "option bitrate='9' must be a whole number from 100"),
        ("rtsp://@:8554/fused?latency=9", "(rtsp:// takes: bitrate)"),
    ):
        with pytest.raises(FnetError, match=re.escape(message)):
            parse_uri(text, "sink")


def test_v4l2_settings_ask_for_the_mode_and_keep_y16_raw() -> None:
    uri = parse_uri("v4l2:///dev/video0?format=y16&width=640&height=512&fps=60", "source")
    assert v4l2_settings(uri) == [
        (cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc("Y", "1", "6", " ")),
        (cv2.CAP_PROP_FRAME_WIDTH, 640),
        (cv2.CAP_PROP_FRAME_HEIGHT, 512),
        (cv2.CAP_PROP_FPS, 60.0),
        (cv2.CAP_PROP_CONVERT_RGB, 0),  # OpenCV would shift Y16 down to 8 bits
        (cv2.CAP_PROP_BUFFERSIZE, 1),
    ]
    mjpg = v4l2_settings(parse_uri("v4l2://0?format=MJPG", "source"))
    assert (cv2.CAP_PROP_CONVERT_RGB, 0) not in mjpg  # colour formats are converted to BGR
    assert v4l2_settings(parse_uri("v4l2://0", "source")) == [(cv2.CAP_PROP_BUFFERSIZE, 1)]
    with pytest.raises(FnetError, match="give both width and height"):
        V4L2Source(parse_uri("v4l2://0?width=640", "source"))


class FakeCamera:
    """Stands in for ``cv2.VideoCapture`` on a V4L2 device (none exists on a test machine): it
    records the properties set, keeps the pixel format it was given when it can produce it, and
    returns frames as OpenCV's V4L2 backend would (raw H x W uint16 for Y16 with conversion off,
    else BGR)."""

    def __init__(self, formats: tuple[str, ...], counts: np.ndarray) -> None:
        self.formats = formats
        self.counts = counts
        self.props: dict[int, float] = {cv2.CAP_PROP_FOURCC: fourcc(formats[0])}
        self.calls: list[tuple[int, float]] = []

    def __call__(self, target: str, backend: int, params: list[int]) -> FakeCamera:
        assert backend == cv2.CAP_V4L2
        return self

    def isOpened(self) -> bool:
        return True

    def set(self, prop: int, value: float) -> bool:
        self.calls.append((prop, value))
        if prop == cv2.CAP_PROP_FOURCC and int(value) not in map(fourcc, self.formats):
            return False
        self.props[prop] = value
        return True

    def get(self, prop: int) -> float:
        height, width = self.counts.shape
        sizes = {cv2.CAP_PROP_FRAME_WIDTH: width, cv2.CAP_PROP_FRAME_HEIGHT: height}
        return float(self.props.get(prop, sizes.get(prop, 0.0)))

    def grab(self) -> bool:
        time.sleep(0.02)  # a 50 fps camera
        return True

    def retrieve(self) -> tuple[bool, np.ndarray]:
        y16 = int(self.props[cv2.CAP_PROP_FOURCC]) == fourcc("Y16")
        if y16 and self.props.get(cv2.CAP_PROP_CONVERT_RGB, 1) == 0:
            return True, self.counts.copy()
        eight = (self.counts >> 8).astype(np.uint8) if y16 else self.counts.astype(np.uint8)
        return True, cv2.cvtColor(eight, cv2.COLOR_GRAY2BGR)

    def release(self) -> None:
        """Nothing to release."""


def fourcc(name: str) -> int:
    return int(cv2.VideoWriter.fourcc(*name.ljust(4)))


def thermal_counts() -> np.ndarray:
    """A 14-bit radiometric frame: the Nato camp IR frame spread over counts 3000..11000."""
    return (3000 + nato("ir").astype(np.uint16) * 31).astype(np.uint16)


def test_y16_camera_frames_stay_16_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    camera = FakeCamera(("YUYV", "Y16"), thermal_counts())
    monkeypatch.setattr(cv2, "VideoCapture", camera)
    source = V4L2Source(parse_uri("v4l2:///dev/video0?format=Y16", "source"))
    source.open()
    frame = source.read()
    assert frame is not None and frame.image.dtype == np.uint16 and frame.image.ndim == 2
    np.testing.assert_array_equal(frame.image, camera.counts)
    assert (cv2.CAP_PROP_CONVERT_RGB, 0) in camera.calls
    # Without format=Y16 the same camera's frames arrive as OpenCV's 8-bit BGR.
    plain = V4L2Source(parse_uri("v4l2:///dev/video0", "source"))
    camera.props = {cv2.CAP_PROP_FOURCC: fourcc("Y16")}
    plain.open()
    eight = plain.read()
    assert eight is not None and eight.image.dtype == np.uint8 and eight.image.shape[2] == 3


def test_a_format_the_camera_does_not_take_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cv2, "VideoCapture", FakeCamera(("YUYV", "MJPG"), thermal_counts()))
    source = V4L2Source(parse_uri("v4l2:///dev/video0?format=Y16", "source"))
    with pytest.raises(FnetError, match=r"did not take format=Y16 \(it gives YUYV; list its"):
        source.open()


def test_csi_pipeline_for_nvargus() -> None:
    text = csi_pipeline(1, 1920, 1080, 29.97, flip=2)
    assert text.startswith("nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM), ")
    assert "width=(int)1920, height=(int)1080, framerate=(fraction)30000/1001" in text
    assert "nvvidconv flip-method=2 ! video/x-raw, format=(string)BGRx ! videoconvert" in text
    assert text.endswith("appsink drop=true max-buffers=1 sync=false")
    rates = (30, 25.0, 59.94, 23.976, 12.5, 7.3)
    assert [fraction(f) for f in rates] == [
        "30/1",
        "25/1",
        "60000/1001",
        "24000/1001",
        "25/2",
        "73/10",
    ]


def test_csi_without_gstreamer_is_one_clear_line() -> None:
    if has_gstreamer():
        pytest.skip("this OpenCV has GStreamer")
    with pytest.raises(
        FnetError, match=r"^csi://0: needs OpenCV built with GStreamer, as on JetPack"
    ):
        open_source(parse_uri("csi://0", "source"))


def test_ffmpeg_options_of_rtsp_sources() -> None:
    def options(query: str) -> str:
        return ffmpeg_capture_options(parse_uri(f"rtsp://cam/x{query}", "source"))

    assert options("") == "rtsp_flags;prefer_tcp"  # OpenCV's own default, kept
    assert options("?transport=udp&latency=200") == "rtsp_transport;udp|max_delay;200000"


def serve_frames(count: int = 6) -> RtspServer:
    frames = [encode_frame(nato("ir", n)[:264]) for n in range(2, 2 + count)]
    server = RtspServer(frames, 25.0, time.monotonic())
    server.start()
    return server


def test_rtsp_transport_reaches_ffmpeg() -> None:
    """The loopback camera speaks RTP over TCP only (it answers UDP with 461): forced UDP cannot
    open it, forced TCP with a jitter buffer can, and the options do not leak to later opens."""
    server = serve_frames()
    before = os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS")
    try:
        udp = open_source(parse_uri(server.url("ir") + "?transport=udp", "source"))
        with pytest.raises(FnetError, match=r"\?transport=udp: cannot open"):
            udp.open()
        tcp = open_source(parse_uri(server.url("ir") + "?transport=tcp&latency=100", "source"))
        tcp.open()
        frame = tcp.read()
        tcp.close()
    finally:
        server.stop()
    assert frame is not None and frame.image.shape == (264, 360, 3)
    assert os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS") == before


def test_outage_log_counts_each_outage_and_its_length() -> None:
    outages = OutageLog()
    outages.lost("ir", 10.0)
    outages.lost("ir", 10.5)  # the same outage, reported again
    assert outages.back("ir", 12.5) == pytest.approx(2.5)
    outages.lost("vis", 20.0)
    summary = outages.summary(started=5.0, now=21.0)
    assert (summary["count"], summary["total_s"], summary["longest_s"]) == (2, 3.5, 2.5)
    assert summary["recent"] == [
        {"source": "ir", "lost_at_s": 5.0, "seconds": 2.5, "ongoing": False},
        {"source": "vis", "lost_at_s": 15.0, "seconds": 1.0, "ongoing": True},
    ]


class Flaky(Source):
    """A live source that is lost after each ``frames`` frames and cannot be reopened for its
    first ``refusals`` attempts each time."""

    live = True

    def __init__(self, frames: int, refusals: int) -> None:
        super().__init__(URI("rtsp", "rtsp://flaky/x", "rtsp://flaky/x"))
        self.frames, self.refusals = frames, refusals
        self.left = frames
        self.refused = 0
        self.opened = True
        self.index = 0

    @property
    def fps(self) -> float | None:
        return 100.0

    def open(self) -> None:
        if self.refused < self.refusals:
            self.refused += 1
            raise FnetError(f"{self.name}: cannot open (refused {self.refused})")
        self.refused, self.left, self.opened = 0, self.frames, True

    def read(self) -> Frame | None:
        if not self.opened or self.left == 0:
            self.opened = False
            raise SourceLost("gone")
        self.left -= 1
        self.index += 1
        now = time.monotonic()
        return Frame(np.zeros((8, 8), np.uint8), now, self.index, now)

    def close(self) -> None:
        self.opened = False


def test_reconnect_forever_backs_off_and_records_every_outage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(capture_module, "BACKOFF_START", 0.01)
    monkeypatch.setattr(capture_module, "BACKOFF_MAX", 0.04)
    source = Flaky(frames=3, refusals=4)
    capture = Capture(source, "ir", reconnect_timeout=math.inf)
    capture.start()
    deadline = time.monotonic() + 10
    while capture.counts.reconnects < 3 and time.monotonic() < deadline:
        capture.get(0.05)
    capture.stop()
    assert capture.counts.reconnects >= 3 and capture.counts.read >= 9
    summary = capture.outages.summary(0.0, time.monotonic())
    assert summary["count"] >= 3
    # Four refusals with a capped backoff of 10, 20, 40, 40 ms before the fifth attempt opens.
    finished = [entry for entry in summary["recent"] if not entry["ongoing"]]
    assert len(finished) >= 3 and all(entry["seconds"] >= 0.1 for entry in finished)
