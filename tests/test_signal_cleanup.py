"""SIGTERM during a command that works in a temporary folder removes that folder on the way out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fnet_deploy.model import FNet, ModelConfig, save_fnet

CLI = [sys.executable, "-c", "from fnet_deploy.cli import app; app()"]


@pytest.mark.slow
def test_sigterm_during_int8_calibration_leaves_no_temporary_folder(tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "tiny.safetensors"
    save_fnet(weights, FNet(ModelConfig(filters=4, kernel_size=3, iterations=2)))
    temporary = tmp_path / "tmp"  # the command's $TMPDIR (torch keeps caches there too)
    temporary.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(temporary)}
    command = [
        *CLI,
        "export",
        "--weights",
        str(weights),
        "--precision",
        "int8",
        "--out",
        str(tmp_path / "e"),
    ]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 300  # a bound on a hang, not a speed requirement
        while not list(temporary.glob("fnet-int8-*")):
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "calibration did not start within 300 s"
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=300)[0]
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM, output
    assert "Traceback" not in output, output
    assert list(temporary.glob("fnet-*")) == [], "a temporary folder was left behind"
