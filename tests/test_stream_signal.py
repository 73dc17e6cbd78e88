"""SIGTERM / SIGINT during ``fnet-deploy stream`` (a real subprocess) leave a playable video."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from fnet_deploy.model import FNet, ModelConfig, save_fnet
from tests.videos import count_frames, write_video

CLI = [sys.executable, "-c", "from fnet_deploy.cli import app; app()"]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_stream_finalises_a_playable_video(tmp_path: Path, signum: int) -> None:
    torch.manual_seed(0)
    save_fnet(tmp_path / "tiny.safetensors", FNet(ModelConfig(filters=4, kernel_size=3)))
    vis = write_video(tmp_path / "vis.avi", 25, 800, (160, 120))
    ir = write_video(tmp_path / "ir.avi", 25, 800, (160, 120))
    out, partial = tmp_path / "fused.mp4", tmp_path / ".fused.partial.mp4"
    # progress lines twice a second: the first that counts a fused frame is the cue to signal
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FNET_DEPLOY_PROGRESS_SECONDS": "0.5"}
    process = subprocess.Popen(
        [
            *CLI,
            "stream",
            "--vis",
            str(vis),
            "--ir",
            str(ir),
            "--out",
            str(out),
            "--weights",
            str(tmp_path / "tiny.safetensors"),
            "--stats",
            str(tmp_path / "s.json"),
            "--no-live",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    reader = threading.Thread(target=read)
    reader.start()
    seen: list[str] = []
    try:
        # not the partial file's size: an encoder (H.264) may hold frames and the container
        # write them in large blocks
        deadline = time.monotonic() + 120
        while not any(re.search(r"^stream: [1-9]\d* fused", line) for line in seen):
            assert process.poll() is None, "".join(seen)
            assert time.monotonic() < deadline, "no frame fused within 120 s:\n" + "".join(seen)
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=0.1))
        assert partial.exists() and not out.exists()
        process.send_signal(signum)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        reader.join(timeout=30)
    output = "".join(seen + list(lines.queue))
    name = signal.Signals(signum).name
    assert process.returncode == 128 + signum, output
    assert f"{name} received" in output
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["stopped_by"] == f"signal {name}"
    written = stats["frames"]["written"]
    assert 0 < written < 800
    assert out.exists() and not partial.exists()
    assert count_frames(out) == written
