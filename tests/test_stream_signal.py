"""SIGTERM / SIGINT during ``fnet-deploy stream`` (a real subprocess) leave a playable video."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
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
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
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
    try:
        deadline = time.monotonic() + 60
        while not (partial.exists() and partial.stat().st_size > 20_000):
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "no frames written within 60 s"
            time.sleep(0.05)
        assert not out.exists()
        process.send_signal(signum)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    name = signal.Signals(signum).name
    assert process.returncode == 128 + signum, output
    assert f"{name} received" in output
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["stopped_by"] == f"signal {name}"
    written = stats["frames"]["written"]
    assert 0 < written < 800
    assert out.exists() and not partial.exists()
    assert count_frames(out) == written
