"""Edge I/O end to end: two live RTSP cameras on loopback, fused into the browser view, with the
infrared camera dying and coming back while ``--reconnect-timeout-s 0`` retries forever; the same
cameras served again over RTSP by the product's own server; and a 16-bit thermal camera whose
counts reach the thermal gain whole.

The cameras are :class:`tests.rtsp_server.RtspServer` (RTP/JPEG over RTSP, TCP only) playing the
shipped Nato camp frames at 25 fps on a shared clock; the real CLI runs in a subprocess and reads
them through OpenCV's FFmpeg client with the URI options ``transport`` and ``latency``. A client
of the browser view (``urllib``, as a browser would: the page, the MJPEG stream, the stats JSON)
checks live frames before and after the outage and the outage as the stats report it, while it
happens and once it is over.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from fnet_deploy.backends.torch_runner import TorchRunner
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.runtime.capabilities import gi_modules
from fnet_deploy.runtime.gain import ThermalGain
from fnet_deploy.runtime.pipeline import StopFlag, StreamOptions, StreamPipeline
from fnet_deploy.runtime.registration import Registrar
from fnet_deploy.runtime.sink_uri import open_sink
from fnet_deploy.runtime.sources import V4L2Source, open_source
from fnet_deploy.runtime.stats import RunStats
from fnet_deploy.runtime.uri import parse_uri
from tests.conftest import nato
from tests.rtsp_server import RtpJpeg, RtspServer, encode_frame
from tests.test_sources import FakeCamera, thermal_counts

CLI = [sys.executable, "-c", "from fnet_deploy.cli import app; app()"]
FPS = 25.0
MODEL_SIZE = (176, 128)
OUTAGE_S = 1.0
PATHS = ("vis", "ir")


def camera_frames(modality: str) -> list[RtpJpeg]:
    """Nato camp frames 2-9 of ``modality``, their top 264 rows (RTP/JPEG sizes are in 8s)."""
    return [encode_frame(nato(modality, n)[:264]) for n in range(2, 10)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read())


def mjpeg_frames(url: str, count: int) -> list[np.ndarray]:
    """The next ``count`` frames of the MJPEG stream at ``url``, decoded."""
    frames = []
    with urllib.request.urlopen(url, timeout=10) as response:
        while len(frames) < count:
            line = response.readline()
            if line.lower().startswith(b"content-length:"):
                size = int(line.split(b":")[1])
                response.readline()
                frames.append(cv2.imdecode(np.frombuffer(response.read(size), np.uint8), 1))
    return frames


def wait_for(
    condition: Callable[[], bool], limit: float, what: str, process: subprocess.Popen[str]
) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if process.poll() is not None:
            output = process.communicate()[0]
            raise AssertionError(f"stream ended while waiting for {what}:\n{output}")
        assert time.monotonic() < deadline, f"no {what} within {limit:g} s"
        time.sleep(0.1)


def test_two_rtsp_cameras_to_the_browser_view_through_an_outage(
    tmp_path: Path, tiny_weights: Path
) -> None:
    epoch = time.monotonic()
    vis_camera = RtspServer(camera_frames("vi"), FPS, epoch)
    ir_camera = RtspServer(camera_frames("ir"), FPS, epoch)
    port = free_port()
    view = f"http://127.0.0.1:{port}/"
    stats_path = tmp_path / "stats.json"
    process: subprocess.Popen[str] | None = None
    seen: dict[str, Any] = {}

    def live() -> dict[str, Any]:
        try:
            document: dict[str, Any] = json.loads(get(view + "stats.json"))
        except (urllib.error.URLError, ConnectionError):
            return {}
        return document

    try:
        vis_camera.start()
        ir_camera.start()
        command = [
            *CLI,
            "stream",
            "--vis",
            vis_camera.url("vis") + "?transport=tcp&latency=100",
            "--ir",
            ir_camera.url("ir") + "?transport=tcp",
            "--out",
            f"http://127.0.0.1:{port}",
            "--weights",
            str(tiny_weights),
            "--backend",
            "torch",
            "--size",
            f"{MODEL_SIZE[0]}x{MODEL_SIZE[1]}",
            "--reconnect-timeout-s",
            "0",
            "--stats",
            str(stats_path),
            "--no-live",
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        running = process

        def written_at_least(count: int) -> Callable[[], bool]:
            return lambda: live().get("frames", {}).get("written", 0) >= count

        wait_for(written_at_least(5), 120, "fused frames in the browser view", running)
        page = get(view).decode()
        assert '<img id="stream" src="stream.mjpg"' in page
        before = mjpeg_frames(view + "stream.mjpg", 3)
        ir_camera.stop()
        wait_for(lambda: live().get("outages", {}).get("count", 0) == 1, 30, "outage", running)
        during = live()
        seen["during"] = during
        time.sleep(OUTAGE_S)
        sent = ir_camera.sent
        ir_camera.start()
        wait_for(lambda: ir_camera.sent > sent, 30, "IR frames served again", running)
        written = during["frames"]["written"]
        wait_for(
            lambda: live().get("frames", {}).get("reconnects", 0) == 1, 30, "reconnection", running
        )
        wait_for(written_at_least(written + 5), 30, "fused frames after the outage", running)
        after = mjpeg_frames(view + "stream.mjpg", 3)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.communicate()
        vis_camera.stop()
        ir_camera.stop()
    assert process.returncode == 128 + signal.SIGTERM, output
    # The browser saw real fused frames before and after the outage.
    for frame in before + after:
        assert frame.shape == (MODEL_SIZE[1], MODEL_SIZE[0], 3) and frame.std() > 10
    # While the camera was away the live stats said so, with the stages' latency beside.
    ongoing = seen["during"]["outages"]["recent"][-1]
    assert (ongoing["source"], ongoing["ongoing"]) == ("ir", True)
    assert seen["during"]["latency_ms"]["infer"]["count"] > 0
    assert {"vis_dropped_live", "ir_dropped_live"} <= set(seen["during"]["frames"])
    # Retried forever (0 no longer means "give up at once"), and the outage is counted.
    assert "reconnecting forever" in output and f"ir source {ir_camera.url('ir')}" in output
    stats = json.loads(stats_path.read_text())
    assert stats["frames"]["reconnects"] == 1 and stats["stopped_by"] == "signal SIGTERM"
    outages = stats["outages"]
    assert outages["count"] == 1 and not outages["recent"][0]["ongoing"]
    assert OUTAGE_S <= outages["recent"][0]["seconds"] <= OUTAGE_S + 15, outages
    assert outages["total_s"] == outages["longest_s"] == outages["recent"][0]["seconds"]


def test_two_rtsp_cameras_served_again_over_rtsp(
    tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process: the same two cameras fused into ``rtsp://@127.0.0.1:0/fused`` (GStreamer's
    RTSP server), which an independent client (OpenCV's FFmpeg) reads while the run goes on."""
    try:
        gi_modules("Gst", "GstRtspServer", "GLib")
    except FnetError as err:
        pytest.skip(f"the served RTSP output needs it: {err}")
    # The client starts on the stream's first key frame instead of probing it for 5 s (frames
    # come slower than the output rate here). Set before the cameras' own clients open: it
    # replaces OpenCV's default RTSP options, and the sources add theirs to it.
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "analyzeduration;100000")
    epoch = time.monotonic()
    cameras = [RtspServer(camera_frames(m), FPS, epoch) for m in ("vi", "ir")]
    for camera in cameras:
        camera.start()
    sink = open_sink(parse_uri("rtsp://@127.0.0.1:0/fused", "sink"))
    stop = StopFlag()
    received: list[np.ndarray] = []

    def client() -> None:
        deadline = time.monotonic() + 60
        while not received and time.monotonic() < deadline and not stop.is_set():
            capture = cv2.VideoCapture(sink.url, cv2.CAP_FFMPEG)  # 404 until the first frame
            while len(received) < 10 and (frame := capture.read()[1]) is not None:
                received.append(frame)
            capture.release()
        stop.set("client done")

    reader = threading.Thread(target=client)
    try:
        vis, ir = (
            open_source(parse_uri(c.url(m), "source"))
            for c, m in zip(cameras, ("vis", "ir"), strict=True)
        )
        reader.start()
        with TorchRunner(tiny_weights) as runner:
            stats = StreamPipeline(
                vis,
                ir,
                runner,
                sink,
                Registrar(None, MODEL_SIZE),
                ThermalGain(),
                StreamOptions(max_skew=0.02),
            ).run(stop)
        reader.join(timeout=10)
    finally:
        stop.set("test over")
        for camera in cameras:
            camera.stop()
    assert stats.stopped_by == "client done" and sink.clients >= 1
    assert len(received) == 10 and stats.counts.written >= 10
    assert all(f.shape == (MODEL_SIZE[1], MODEL_SIZE[0], 3) and f.std() > 10 for f in received)


class RecordingGain(ThermalGain):
    """The thermal gain, noting the type and range of every IR frame it maps."""

    def __init__(self) -> None:
        super().__init__("percentile", (1.0, 99.0), 0.0)
        self.seen: list[tuple[np.dtype[Any], float, float]] = []

    def __call__(self, image: np.ndarray) -> np.ndarray:
        mapped = super().__call__(image)
        self.seen.append((image.dtype, float(image.min()), float(image.max())))
        return mapped


def test_a_y16_thermal_camera_stays_16_bit_into_the_gain(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two V4L2 cameras (stand-ins for OpenCV's capture, see ``FakeCamera``): a colour one and a
    Y16 thermal core whose counts span 3000..10900. The fused run maps those counts, not an
    8-bit copy, and the fused frames are written."""
    cameras = {
        "/dev/video0": FakeCamera(("YUYV",), nato("vi")),
        "/dev/video1": FakeCamera(("YUYV", "Y16"), thermal_counts()),
    }
    monkeypatch.setattr(cv2, "VideoCapture", lambda target, *_: cameras[target])
    gain = RecordingGain()
    stop = StopFlag()

    def progress(stats: RunStats) -> None:
        if stats.counts.written >= 3:
            stop.set("enough")

    with TorchRunner(tiny_weights) as runner:
        stats = StreamPipeline(
            V4L2Source(parse_uri("v4l2:///dev/video0", "source")),  # faked: no device file
            V4L2Source(parse_uri("v4l2:///dev/video1?format=Y16", "source")),
            runner,
            open_sink(parse_uri(f"dir://{tmp_path / 'fused'}", "sink")),
            Registrar(None, MODEL_SIZE),
            gain,
            StreamOptions(max_skew=0.05),
        ).run(stop, progress)
    assert stats.stopped_by == "enough" and stats.counts.written >= 3
    assert len(list((tmp_path / "fused").glob("*.png"))) == stats.counts.written
    counts = cameras["/dev/video1"].counts
    for dtype, low, high in gain.seen:
        assert dtype == np.uint16
        assert counts.min() <= low < high <= counts.max() and high > 4 * 255
    assert gain.range is not None and gain.range[0] > 255  # the gain runs on the raw counts
