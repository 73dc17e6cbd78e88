"""Training through torchrun, launched exactly as README documents it (two CPU processes, gloo)."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from fnet_deploy import __version__
from fnet_deploy.model import load_fnet
from tests.conftest import NATO

TORCHRUN = shutil.which("torchrun")


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun (installed with torch) is not on PATH")
def test_torchrun_two_processes_train_one_run(tmp_path: Path) -> None:
    data = tmp_path / "pairs"
    for number in (5, 6):  # two real pairs: 48 x 48 crops of the shipped Nato camp frames
        for modality in ("ir", "vi"):
            frame = cv2.imread(str(NATO / modality / f"{number:06d}.png"), cv2.IMREAD_GRAYSCALE)
            (data / modality).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(data / modality / f"{number}.png"), frame[100:148, 150:198])
    out = tmp_path / "run"
    command = [
        str(TORCHRUN),
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "fnet_deploy.training",
        "--data",
        str(data),
        "--out",
        str(out),
        "--stage",
        "1",
        "--iterations",
        "2",
        "--crop",
        "16",
        "--batch",
        "1",
        "--set",
        "model.filters=4",
        "--set",
        "threads=1",
        "--set",
        "log.tensorboard=false",
        "--set",
        "log.plot=false",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    # Both processes joined one group: rank 0 reports the world and the global batch (2 x 1).
    assert "2 process(es) on cpu, global batch 2" in output
    assert output.count("stage I weights:") == 1  # only rank 0 writes and reports
    _, info = load_fnet(out / "fnet_stage1.safetensors")
    assert info.config.filters == 4
    with (out / "log.csv").open(newline="") as handle:
        steps = [int(row["step"]) for row in csv.DictReader(handle) if row["stage"] == "1"]
    assert steps and steps[-1] == 2


def test_the_cli_module_runs_as_a_script() -> None:
    """``python -m fnet_deploy.cli`` is the CLI (a launcher may start it as a module)."""
    result = subprocess.run(
        [sys.executable, "-m", "fnet_deploy.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"fnet-deploy {__version__}"
