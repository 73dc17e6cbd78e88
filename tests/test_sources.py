"""URIs, sources (files, folders, live through FFmpeg) and capture threads, on real media."""

from __future__ import annotations

import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from fnet_deploy.errors import FnetError, InputError
from fnet_deploy.runtime.capabilities import has_gstreamer
from fnet_deploy.runtime.capture import Capture, End
from fnet_deploy.runtime.sources import (
    CorruptFrame,
    DirSource,
    FileSource,
    Frame,
    RtspSource,
    SourceLost,
    V4L2Source,
    open_source,
)
from fnet_deploy.runtime.uri import URI, parse_uri, sink_overwrites_source
from tests.conftest import NATO


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
    source = open_source(parse_uri("v4l2:///dev/video99", "source"))
    assert isinstance(source, V4L2Source) and source.live
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
    source = open_source(parse_uri("v4l2:///dev/video99", "source"))
    capture = Capture(source, "vis", reconnect_timeout=1.0)  # never opened: read() says lost
    start = time.monotonic()
    capture.start()
    frames, end = drain(capture)
    capture.stop()
    assert frames == [] and capture.counts.reconnects == 0
    assert end.reason is not None and end.reason.startswith("lost and not back within 1 s")
    assert 0.9 <= time.monotonic() - start < 5.0
