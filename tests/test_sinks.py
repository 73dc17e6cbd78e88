"""Sinks: finalised video files that re-open, frame folders, and clear errors for what this
OpenCV build cannot do."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from fnet_deploy.helpers.errors import FnetError, InputError
from fnet_deploy.runtime.capabilities import gi_modules, gstreamer_element, has_gstreamer
from fnet_deploy.runtime.gst_pipelines import (
    ENCODERS,
    choose_encoder,
    push_pipeline,
    served_launch,
)
from fnet_deploy.runtime.sink_uri import open_sink
from fnet_deploy.runtime.sinks import DisplaySink, FrameDirSink, VideoFileSink, display_problem
from fnet_deploy.runtime.stats import RunStats
from fnet_deploy.runtime.uri import parse_uri
from tests.videos import count_frames

CHROMIUM = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
"""Names a Chromium-based browser has on PATH (Debian, Ubuntu, Google's packages)."""


def frames(count: int, colour: bool = True) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (48, 64, 3) if colour else (48, 64), dtype=np.uint8)
    return [np.roll(base, 4 * i, axis=1) for i in range(count)]


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".mkv"])
def test_video_file_is_finalised_and_reopens(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"fused{suffix}"
    with open_sink(parse_uri(str(path), "sink"), fps=12.0) as sink:
        assert isinstance(sink, VideoFileSink)
        for image in frames(7):
            sink.write(image)
        assert not path.exists() and sink.partial.exists()  # in progress: hidden partial file
    assert path.exists() and not sink.partial.exists()
    assert count_frames(path) == 7
    capture = cv2.VideoCapture(str(path))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
    ok, first = capture.read()
    assert ok and first.shape == (48, 64, 3)


def test_grey_frames_are_written_as_colour_video(tmp_path: Path) -> None:
    path = tmp_path / "grey.avi"
    with VideoFileSink(parse_uri(str(path), "sink"), fps=5) as sink:
        for image in frames(3, colour=False):
            sink.write(image)
    assert count_frames(path) == 3


def test_odd_sizes_drop_the_last_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "odd.mkv"  # FFV1: lossless apart from OpenCV's 4:2:0 conversion
    noise = np.random.default_rng(0).integers(0, 255, (47, 65, 3), np.uint8)
    image = cv2.GaussianBlur(noise, (0, 0), 3.0)
    with VideoFileSink(parse_uri(str(path), "sink"), fps=5) as sink:
        sink.write(image)
    capture = cv2.VideoCapture(str(path))
    ok, first = capture.read()
    assert ok and first.shape == (46, 64, 3)
    assert np.abs(first.astype(int) - image[:46, :64]).mean() < 2.0


def test_no_frames_leave_no_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    VideoFileSink(parse_uri(str(path), "sink"), fps=5).close()
    assert os.listdir(tmp_path) == []


def test_frame_size_must_not_change(tmp_path: Path) -> None:
    sink = VideoFileSink(parse_uri(str(tmp_path / "a.mp4"), "sink"), fps=5)
    sink.write(frames(1)[0])
    with pytest.raises(FnetError, match="frame size changed"):
        sink.write(np.zeros((10, 10, 3), np.uint8))
    sink.close()
    assert count_frames(tmp_path / "a.mp4") == 1


def test_video_sink_needs_a_frame_rate_and_a_known_suffix(tmp_path: Path) -> None:
    sink = VideoFileSink(parse_uri(f"file://{tmp_path}/a.mp4", "sink"))
    with pytest.raises(FnetError, match="no output frame rate"):
        sink.write(frames(1)[0])
    with pytest.raises(InputError, match=r"unknown video suffix '\.webm'"):
        VideoFileSink(parse_uri(f"file://{tmp_path}/a.webm", "sink"), fps=5)


def test_frame_folder(tmp_path: Path) -> None:
    out = tmp_path / "frames"
    sink = open_sink(parse_uri(f"dir://{out}", "sink"))
    assert isinstance(sink, FrameDirSink)
    images = frames(3)
    for image in images:
        sink.write(image)
    sink.close()
    assert sorted(os.listdir(out)) == ["000000.png", "000001.png", "000002.png"]
    np.testing.assert_array_equal(cv2.imread(str(out / "000002.png")), images[2])


def test_frame_folder_of_an_earlier_run_is_refused_or_replaced(tmp_path: Path) -> None:
    out = tmp_path / "frames"
    first = open_sink(parse_uri(f"dir://{out}", "sink"))
    for image in frames(4):
        first.write(image)
    first.close()
    (out / "notes.txt").write_text("kept\n")
    with pytest.raises(InputError, match=r"holds 4 frames of an earlier run; add \?overwrite=1"):
        open_sink(parse_uri(f"dir://{out}/", "sink"))
    with pytest.raises(FnetError, match="overwrite='maybe' must be 1 or 0"):
        open_sink(parse_uri(f"dir://{out}/?overwrite=maybe", "sink"))
    unused = open_sink(parse_uri(f"dir://{out}/?overwrite=1", "sink"))
    unused.close()  # wrote nothing: the earlier run stays
    assert len(list(out.glob("*.png"))) == 4
    again = open_sink(parse_uri(f"dir://{out}/?overwrite=1", "sink"))
    images = frames(2, colour=False)
    for image in images:
        again.write(image)
    again.close()
    assert sorted(os.listdir(out)) == ["000000.png", "000001.png", "notes.txt"]
    np.testing.assert_array_equal(
        cv2.imread(str(out / "000001.png"), cv2.IMREAD_UNCHANGED), images[1]
    )


def test_display_without_gui_has_a_clear_error() -> None:
    problem = display_problem()
    if problem is None:
        pytest.skip("this machine can show a window")
    with pytest.raises(FnetError, match="display://0: "):
        DisplaySink(parse_uri("display://0", "sink"))
    assert "opencv-python-headless" in problem or "no display" in problem


def test_gstreamer_outputs_without_gstreamer_have_a_clear_error() -> None:
    if has_gstreamer():
        pytest.skip("this OpenCV has GStreamer")
    for text in ("gst://appsrc ! autovideosink", "rtsp://localhost:8554/fused"):
        with pytest.raises(FnetError, match="needs OpenCV built with GStreamer"):
            open_sink(parse_uri(text, "sink"), fps=10)


# --- edge I/O: encoders, the RTSP server, the browser view --------------------------------------


def test_encoder_choice_prefers_hardware_and_names_what_is_missing() -> None:
    def having(*elements: str) -> Callable[[str], bool | None]:
        return lambda element: element in elements

    assert choose_encoder(None, having("x264enc", "nvv4l2h264enc")).name == "nvv4l2h264"
    assert choose_encoder("auto", having("openh264enc", "x264enc")).name == "x264"
    assert choose_encoder("openh264", having("openh264enc", "x264enc")).name == "openh264"
    assert choose_encoder(None, lambda element: None).name == "x264"  # cannot ask: the usual one
    with pytest.raises(
        FnetError,
        match=r"--encoder nvv4l2h264: GStreamer has no nvv4l2h264enc .*"
        r"present: x264$",
    ):
        choose_encoder("nvv4l2h264", having("x264enc"))
    with pytest.raises(FnetError, match=r"no H\.264 encoder in GStreamer here"):
        choose_encoder(None, having())
    with pytest.raises(FnetError, match=r"unknown encoder 'h265' \(choose from auto, nvv4l2h264"):
        choose_encoder("h265", having("x264enc"))
    encoders = {encoder.name: encoder for encoder in ENCODERS}
    assert "bitrate=2500 key-int-max=25" in encoders["x264"].describe(2500, 25.0)
    jetson = encoders["nvv4l2h264"].describe(2500, 30.0)
    assert "nvv4l2h264enc bitrate=2500000 iframeinterval=30 idrinterval=30" in jetson
    assert "nvvidconv ! video/x-raw(memory:NVMM), format=(string)NV12" in jetson
    pushed = push_pipeline("rtsp://media:8554/fused", encoders["x264"], 4000, 10.0)
    assert pushed.startswith("appsrc ! videoconvert ! ")
    assert pushed.endswith(
        "key-int-max=10 ! rtspclientsink location=rtsp://media:8554/fused latency=0"
    )


def _gstreamer_problem(*libraries: str) -> str | None:
    try:
        gi_modules(*libraries)
    except FnetError as err:
        return str(err)
    return None


def test_our_pipelines_parse_in_gstreamer() -> None:
    """Every pipeline text whose elements this machine's GStreamer has is accepted by its
    parser (properties and caps included); the rest are checked on the machines that have them."""
    problem = _gstreamer_problem("Gst")
    if problem:
        pytest.skip(f"GStreamer through PyGObject is not here: {problem}")
    (gst,) = gi_modules("Gst")
    parsed = []
    for encoder in ENCODERS:
        if not gstreamer_element(encoder.element):
            continue
        launch = served_launch(322, 240, 29.97, encoder, 3000).strip("() ")
        gst.parse_launch(launch)
        parsed.append(encoder.name)
    if gstreamer_element("rtspclientsink"):
        gst.parse_launch(
            push_pipeline(
                "rtsp://127.0.0.1:1/x", choose_encoder(None, gstreamer_element), 1000, 25.0
            )
        )
    assert parsed, "no H.264 encoder to check"


def _pattern(index: int, size: tuple[int, int] = (161, 120)) -> np.ndarray:
    """Frame ``index``: grey, left half at a level that steps with the index, right half 200."""
    image = np.full((size[1], size[0]), 200, np.uint8)
    image[:, : size[0] // 2] = 20 + (index * 16) % 160
    return image


def test_rtsp_server_serves_any_number_of_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two OpenCV/FFmpeg clients, the second joining a stream already running, read the frames
    written; the second gets a key frame at once (frames come at 5 fps for a 25 fps output, so
    the regular key frame interval is 5 s); closing releases the port."""
    problem = _gstreamer_problem("Gst", "GstRtspServer", "GLib")
    if problem:
        pytest.skip(f"the RTSP server output needs it: {problem}")
    (gst,) = gi_modules("Gst")
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "analyzeduration;100000")  # quick start
    sink = open_sink(parse_uri("rtsp://@127.0.0.1:0/cams/fused", "sink"), fps=25)
    assert sink.url.startswith("rtsp://127.0.0.1:") and sink.url.endswith("/cams/fused")
    written: list[int] = []
    stop = threading.Event()
    key_frames: list[float] = []

    def feed() -> None:
        while not stop.is_set():
            sink.write(_pattern(len(written)))
            written.append(len(written))
            time.sleep(0.2)

    def count_key_frames(pad: object, info: object) -> object:
        if not info.get_buffer().has_flags(gst.BufferFlags.DELTA_UNIT):
            key_frames.append(time.monotonic())
        return gst.PadProbeReturn.OK

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        # The path is mounted by the first write (it needs the frame size); a client that asks
        # before it gets 404, as from any RTSP server before its stream exists.
        deadline = time.monotonic() + 10
        while not written and time.monotonic() < deadline:
            time.sleep(0.01)
        assert written, "the first frame was not written within 10 s"
        first = cv2.VideoCapture(sink.url, cv2.CAP_FFMPEG)
        frames = [[first.read()[1] for _ in range(3)]]
        # The shared media's payloader (a look inside the sink, for the test only).
        payloader = sink._sources[0].get_parent().get_by_name("pay0")
        payloader.get_static_pad("sink").add_probe(gst.PadProbeType.BUFFER, count_key_frames)
        joined = time.monotonic()
        second = cv2.VideoCapture(sink.url, cv2.CAP_FFMPEG)
        frames.append([second.read()[1] for _ in range(3)])
        frames[0] += [first.read()[1] for _ in range(3)]
        first.release()
        second.release()
    finally:
        stop.set()
        feeder.join()
        sink.close()
    assert sink.clients == 2
    assert key_frames and key_frames[0] - joined < 2.0, key_frames  # not the regular one, 5 s on
    for received in frames:
        assert all(frame is not None and frame.shape == (120, 160, 3) for frame in received)
        # The picture: right half white-ish, left half one of the written levels (H.264 is lossy).
        right = [float(frame[:, 100:].mean()) for frame in received]
        left = [float(frame[:, :60].mean()) for frame in received]
        assert all(abs(level - 200) < 8 for level in right), right
        levels = [20 + (i * 16) % 160 for i in range(10)]
        assert all(min(abs(v - level) for level in levels) < 8 for v in left), left
        assert len({round(v / 16) for v in left}) > 1  # the stream moves: not one frozen frame
    refused = cv2.VideoCapture(sink.url, cv2.CAP_FFMPEG)
    assert not refused.isOpened()  # closed: the port is released
    refused.release()


def test_rtsp_server_missing_is_one_line() -> None:
    problem = _gstreamer_problem("Gst", "GstRtspServer", "GLib")
    if problem is None:
        pytest.skip("GStreamer's RTSP server is installed here")
    with pytest.raises(FnetError) as caught:
        open_sink(parse_uri("rtsp://@127.0.0.1:0/fused", "sink"), fps=25)
    assert "\n" not in str(caught.value)
    assert "fnet-deploy[rtsp-server]" in str(caught.value) or "apt install" in str(caught.value)


def _mjpeg_parts(url: str, count: int) -> list[np.ndarray]:
    """The first ``count`` JPEG frames of a multipart MJPEG stream, decoded."""
    parts = []
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        while len(parts) < count:
            line = response.readline()
            if line.lower().startswith(b"content-length:"):
                size = int(line.split(b":")[1])
                response.readline()  # the blank line before the body
                data = np.frombuffer(response.read(size), np.uint8)
                parts.append(cv2.imdecode(data, cv2.IMREAD_COLOR))
    return parts


def test_a_view_served_on_port_0_is_named_by_its_real_port() -> None:
    sink = open_sink(parse_uri("http://@:0", "sink"), fps=10)
    try:
        host, port = sink.url.removeprefix("http://").rstrip("/").rsplit(":", 1)
        assert host == "0.0.0.0" and int(port) > 0  # every interface, as "@" asks
        assert sink.name == sink.url  # every line that names the output gives the real port
    finally:
        sink.close()


def test_browser_view_serves_page_frames_and_live_stats() -> None:
    sink = open_sink(parse_uri("http://:0?quality=95", "sink"), fps=10)
    try:
        assert sink.url.startswith("http://127.0.0.1:")  # this machine only by default
        page = urllib.request.urlopen(sink.url, timeout=10).read().decode()
        assert 'src="stream.mjpg"' in page and 'fetch("stats.json"' in page
        with pytest.raises(urllib.error.HTTPError, match="503"):
            urllib.request.urlopen(sink.url + "frame.jpg", timeout=10)
        stats = RunStats()
        stats.counts.written, stats.counts.ir_dropped_live = 7, 3
        stats.latency["infer"].add(0.0421)
        urllib.request.urlopen(sink.url + "stats.json", timeout=10).read()  # asks for them
        sink.observe(stats)
        live = json.loads(urllib.request.urlopen(sink.url + "stats.json", timeout=10).read())
        assert live["frames"]["written"] == 7 and live["frames"]["ir_dropped_live"] == 3
        assert live["latency_ms"]["infer"]["p50"] == pytest.approx(42.1)
        received: list[list[np.ndarray]] = [[], []]

        def watch(slot: int) -> None:
            received[slot] = _mjpeg_parts(sink.url + "stream.mjpg", 3)

        watchers = [threading.Thread(target=watch, args=(slot,)) for slot in range(2)]
        for watcher in watchers:
            watcher.start()
        deadline = time.monotonic() + 10
        index = 0
        while any(w.is_alive() for w in watchers) and time.monotonic() < deadline:
            sink.write(cv2.cvtColor(_pattern(index), cv2.COLOR_GRAY2BGR))
            index += 1
            time.sleep(0.02)
        for watcher in watchers:
            watcher.join(timeout=1)
        for parts in received:
            assert len(parts) == 3
            for part in parts:
                assert part.shape == (120, 161, 3)
                level = round(float(part[:, :60].mean()))
                assert any(abs(level - (20 + (i * 16) % 160)) <= 2 for i in range(index))
                assert abs(float(part[:, 100:].mean()) - 200) <= 2
        still = cv2.imdecode(
            np.frombuffer(urllib.request.urlopen(sink.url + "frame.jpg").read(), np.uint8), 1
        )
        assert still.shape == (120, 161, 3)
        with pytest.raises(FnetError, match=r"cannot serve on 127\.0\.0\.1 port \d+ \(address"):
            port = sink.url.rsplit(":", 1)[1].strip("/")
            open_sink(parse_uri(f"http://127.0.0.1:{port}", "sink"))
    finally:
        sink.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(sink.url, timeout=2)


def test_browser_view_in_headless_chromium_shows_the_live_frame_and_stats(
    tmp_path: Path,
) -> None:
    """What a person sees: Chromium opens the page; its screenshot shows the streamed frame (a
    green left half and a magenta right half, found by their pixels) and its DOM the statistics
    the page's script filled in."""
    browser = next((found for name in CHROMIUM if (found := shutil.which(name)) is not None), None)
    if browser is None:
        pytest.skip(f"no Chromium here (looked for {', '.join(CHROMIUM)})")
    sink = open_sink(parse_uri("http://:0", "sink"), fps=25)
    stats = RunStats()
    stats.latency["infer"].add(0.0123)
    frame = np.zeros((120, 160, 3), np.uint8)
    frame[:, :80] = (0, 200, 0)
    frame[:, 80:] = (200, 0, 200)
    stop = threading.Event()

    def feed() -> None:
        while not stop.is_set():
            sink.write(frame)
            stats.counts.written = sink.written
            sink.observe(stats)
            time.sleep(0.04)

    feeder = threading.Thread(target=feed)
    feeder.start()
    shot = tmp_path / "view.png"
    try:
        done = subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--window-size=900,500",
                "--virtual-time-budget=2000",
                f"--screenshot={shot}",
                "--dump-dom",
                sink.url,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        stop.set()
        feeder.join()
        sink.close()
    assert done.returncode == 0, done.stderr
    image = cv2.imread(str(shot), cv2.IMREAD_COLOR)
    assert image is not None, done.stderr
    columns = {}
    for name, colour in (("green", (0, 200, 0)), ("magenta", (200, 0, 200))):
        close = np.all(np.abs(image.astype(int) - colour) < 40, axis=2)
        assert close.sum() > 10_000, (name, int(close.sum()))  # the frame, scaled up by the page
        columns[name] = float(np.nonzero(close)[1].mean())
    assert columns["green"] < columns["magenta"]  # left half left, right half right
    assert "<td>infer</td><td>12.3</td>" in done.stdout  # the latency table, filled live
    assert re.search(r'<div id="summary">\d+ fused, ', done.stdout)
