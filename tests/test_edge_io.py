"""Edge I/O end to end: two live RTSP cameras on loopback, fused into the browser view, with the
infrared camera dying and coming back while ``--reconnect-timeout 0`` retries forever.

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
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tests.conftest import nato
from tests.rtsp_server import RtpJpeg, RtspServer, encode_frame

CLI = [sys.executable, "-c", "from fnet_deploy.cli import app; app()"]
FPS = 25.0
MODEL_SIZE = (176, 128)
OUTAGE_S = 1.0


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
            "--reconnect-timeout",
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
