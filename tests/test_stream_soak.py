"""``fnet-deploy stream`` on two live RTSP cameras whose infrared one dies and comes back.

The cameras are :class:`tests.rtsp_server.RtspServer` on loopback, each playing the shipped Nato
camp frames in a loop at 25 fps on a shared clock (frames cropped to 360 x 264: RFC 2435 sends
sizes in 8-pixel units). The real CLI runs in a subprocess, reads them through OpenCV's FFmpeg
RTSP client, and is stopped with SIGTERM, as an operator ends a live run. While it runs the test
samples the process's resident memory, threads and open file descriptors from ``/proc``.

Each run checks that the lost camera was reconnected once per outage, that every visible frame
read is accounted for in the stats (fused, unpaired, dropped as stale, or left in flight at the
stop), and that the output video decodes to its last frame. The full soak (marker ``soak``, not
run by default: ``python -m pytest -m soak``; a few minutes) runs long enough to check that
memory, threads and descriptors stay flat across the outages; a short run with one outage is
part of the default suite.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import pytest

from fnet_deploy.backends.torch_runner import TorchRunner
from fnet_deploy.runtime.gain import ThermalGain
from fnet_deploy.runtime.pipeline import StopFlag, StreamOptions, StreamPipeline
from fnet_deploy.runtime.registration import Registrar
from fnet_deploy.runtime.sink_uri import open_sink
from fnet_deploy.runtime.sources import open_source
from fnet_deploy.runtime.stats import RunStats
from fnet_deploy.runtime.uri import parse_uri
from tests.conftest import nato
from tests.proc_samples import Sample, assert_flat, read_proc
from tests.rtsp_server import RtpJpeg, RtspServer, encode_frame
from tests.videos import count_frames, write_video

CLI = [sys.executable, "-c", "from fnet_deploy.cli import app; app()"]
FPS = 25.0
SERVED_ROWS = 264
"""The Nato camp frames are 360 x 270; the cameras send their top 264 rows (a multiple of 8)."""
MODEL_SIZE = (176, 128)
"""Model input (W, H): small enough that the tiny model keeps up with 25 fps on 2 busy cores."""
SAMPLE_SECONDS = 0.2


def camera_frames(modality: str) -> list[RtpJpeg]:
    """The shipped Nato camp frames 2-13 of ``modality`` as a camera sends them."""
    return [encode_frame(nato(modality, n)[:SERVED_ROWS]) for n in range(2, 14)]


@dataclass
class SoakRun:
    """What a run left: the exit code, its output, its stats, the samples and phase times."""

    vis_url: str
    ir_url: str
    returncode: int
    output: str
    stats: dict[str, Any]
    video: Path
    samples: list[Sample]
    marks: dict[str, float] = field(default_factory=dict)


def run_stream(
    tmp_path: Path,
    weights: Path,
    phase_s: float,
    outage_s: float,
    outages: int,
    extra: tuple[str, ...] = (),
) -> SoakRun:
    """Stream ``outages + 1`` phases of ``phase_s`` seconds with the IR camera dead for
    ``outage_s`` seconds between them; then SIGTERM. Phases are timed from the moment the IR
    camera serves frames again (so a slow reconnection cannot eat a phase)."""
    epoch = time.monotonic()
    vis_camera = RtspServer(camera_frames("vi"), FPS, epoch)
    ir_camera = RtspServer(camera_frames("ir"), FPS, epoch)
    video, stats_path = tmp_path / "soak.mp4", tmp_path / "stats.json"
    command = [
        *CLI,
        "stream",
        "--vis",
        "",
        "--ir",
        "",
        "--out",
        str(video),
        "--weights",
        str(weights),
        "--size",
        f"{MODEL_SIZE[0]}x{MODEL_SIZE[1]}",
        "--stats",
        str(stats_path),
        "--no-live",
        *extra,
    ]
    samples: list[Sample] = []
    marks: dict[str, float] = {}
    process: subprocess.Popen[str] | None = None
    try:
        vis_camera.start()
        ir_camera.start()
        command[command.index("--vis") + 1] = vis_camera.url("vis")
        command[command.index("--ir") + 1] = ir_camera.url("ir")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
        launched = time.monotonic()
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        running = process

        def sample() -> None:
            while (seen := read_proc(running.pid)) is not None and running.poll() is None:
                samples.append(Sample(time.monotonic() - launched, *seen))
                time.sleep(SAMPLE_SECONDS)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()

        def wait(condition: Callable[[], bool], limit: float, what: str) -> None:
            deadline = time.monotonic() + limit
            while not condition():
                if running.poll() is not None:
                    output = running.communicate()[0]
                    pytest.fail(f"stream ended while waiting for {what}:\n{output}")
                assert time.monotonic() < deadline, f"no {what} within {limit:g} s"
                time.sleep(0.05)

        def serving(since: int) -> Callable[[], bool]:
            return lambda: ir_camera.sent >= since + FPS

        wait(serving(0), 120, "IR frames served")
        marks["playing"] = time.monotonic() - launched
        for n in range(1, outages + 1):
            time.sleep(phase_s)
            ir_camera.stop()
            marks[f"outage {n}"] = time.monotonic() - launched
            time.sleep(outage_s)
            sent = ir_camera.sent
            ir_camera.start()
            wait(serving(sent), 60, f"IR frames after outage {n}")
            marks[f"back {n}"] = time.monotonic() - launched
        time.sleep(phase_s)
        marks["stop"] = time.monotonic() - launched
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
        sampler.join(timeout=5)
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.communicate()
        vis_camera.stop()
        ir_camera.stop()
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    return SoakRun(
        vis_camera.url("vis"),
        ir_camera.url("ir"),
        process.returncode,
        output,
        stats,
        video,
        samples,
        marks,
    )


def check_run(run: SoakRun, outages: int, min_written: int) -> dict[str, int]:
    """What every run must show; returns the stats' frame counts."""
    assert run.returncode == 128 + signal.SIGTERM, run.output
    assert run.stats["stopped_by"] == "signal SIGTERM"
    frames: dict[str, int] = run.stats["frames"]
    # Each outage is one loss of the IR camera and one reconnection; the visible one never left.
    assert frames["reconnects"] == outages, run.output
    assert run.output.count(f"ir source {run.ir_url} lost") == outages, run.output
    assert run.output.count(f"ir source {run.ir_url} reconnected") == outages, run.output
    assert f"vis source {run.vis_url} lost" not in run.output
    # Every visible frame read is accounted for: paired (then fused or lost to a backend error),
    # unpaired, dropped as stale by the live queue, or still in flight when SIGTERM came.
    assert frames["vis_read"] == (
        frames["paired"]
        + frames["vis_unpaired"]
        + frames["vis_dropped_live"]
        + frames["vis_pending"]
    ), frames
    assert frames["paired"] == frames["written"] + frames["infer_errors"], frames
    assert frames["infer_errors"] == 0 and frames["vis_corrupt"] == frames["ir_corrupt"] == 0
    # While the IR camera was away, visible frames went on and found no partner.
    assert frames["vis_unpaired"] > 0
    assert frames["written"] >= min_written, frames
    # The video plays to its end: every fused frame decodes, the last one too.
    assert count_frames(run.video) == frames["written"]
    capture = cv2.VideoCapture(str(run.video))
    capture.set(cv2.CAP_PROP_POS_FRAMES, frames["written"] - 1)
    ok, last = capture.read()
    capture.release()
    assert ok and last.shape == (MODEL_SIZE[1], MODEL_SIZE[0], 3)
    assert last.std() > 10  # a picture, not a blank frame (the tiny model's output is dark)
    return frames


@pytest.mark.usefixtures("one_thread")
def test_frames_in_flight_at_a_stop_request_are_counted(tmp_path: Path, tiny_weights: Path) -> None:
    """In process, on recordings: the reader runs ahead of the model (its queue holds two frames),
    so a stop request leaves read frames unfused; the counts still add up."""
    vis = write_video(tmp_path / "vis.avi", 10, 400, (160, 120))
    ir = write_video(tmp_path / "ir.avi", 10, 400, (160, 120))
    stop = StopFlag()

    def progress(stats: RunStats) -> None:
        if stats.counts.written >= 3:
            stop.set("test stop")

    with TorchRunner(tiny_weights) as runner:
        stats = StreamPipeline(
            open_source(parse_uri(str(vis), "source")),
            open_source(parse_uri(str(ir), "source")),
            runner,
            open_sink(parse_uri(str(tmp_path / "fused.mp4"), "sink")),
            Registrar(None),
            ThermalGain(),
            StreamOptions(),
        ).run(stop, progress)
    c = stats.counts
    assert stats.stopped_by == "test stop" and c.vis_pending > 0
    assert c.vis_read == c.paired + c.vis_unpaired + c.vis_dropped_live + c.vis_pending
    assert c.paired == c.written + c.infer_errors
    assert c.written == count_frames(tmp_path / "fused.mp4")


def test_stream_survives_a_live_camera_outage(tmp_path: Path, tiny_weights: Path) -> None:
    """Short: a few dozen frames on each side of one outage of the IR camera (~10 s)."""
    run = run_stream(
        tmp_path, tiny_weights, phase_s=1.5, outage_s=1.0, outages=1, extra=("--backend", "torch")
    )
    check_run(run, outages=1, min_written=20)


SOAK_PHASE_S = 60.0
SOAK_OUTAGE_S = 5.0
WARM_UP_S = 10.0
RSS_GROWTH_LIMIT_MIB = 16.0
"""How much the median resident memory may grow from the first quarter of the run (after
``WARM_UP_S``) to its second half; measured: under 1 MiB.

At the ~20 fps measured on two busy cores the middles of the two windows are ~2000 fused frames
apart, so a leak of 8 KiB per frame (3 % of one 360 x 264 colour frame) fails it. A leak per
reconnection shows in descriptors and threads instead: they must come back to their count before
the outages."""


@pytest.mark.soak
def test_soak_stream_with_two_camera_outages(tmp_path: Path, tiny_weights: Path) -> None:
    """Three minutes of two live cameras, the IR one dead twice for 5 s, on the default backend."""
    if not Path("/proc/self/status").exists():
        pytest.skip("samples memory from /proc (Linux)")
    run = run_stream(
        tmp_path, tiny_weights, phase_s=SOAK_PHASE_S, outage_s=SOAK_OUTAGE_S, outages=2
    )
    frames = check_run(run, outages=2, min_written=1000)
    start = run.marks["playing"] + WARM_UP_S
    flat = assert_flat(run.samples, start, run.marks["stop"], RSS_GROWTH_LIMIT_MIB)
    summary = {
        "backend": run.stats["backend"],
        "frames": frames,
        "wall_time_s": run.stats["wall_time_s"],
        "throughput_fps": run.stats["throughput_fps"],
        **flat,
        "marks_s": {k: round(v, 1) for k, v in run.marks.items()},
        "latency_ms": {k: v.get("p50") for k, v in run.stats["latency_ms"].items()},
    }
    print(json.dumps(summary, indent=1))
