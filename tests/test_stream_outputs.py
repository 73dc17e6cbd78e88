"""One run, several outputs: ``--out`` repeated sends every fused frame to each."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from fnet_deploy.cli import app
from tests.videos import count_frames


def test_repeated_out_writes_every_frame_to_each_output(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["stream", "--weights", str(tiny_weights), "--backend", "torch", "--no-live"]
    args += ["--out", "fused.mp4", "--out", "dir://frames/", "--stats", "stats.json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert count_frames(tmp_path / "fused.mp4") == 12
    frames = sorted((tmp_path / "frames").iterdir())
    assert len(frames) == 12
    first = cv2.imread(str(frames[0]))
    assert first.shape == (268, 354, 3) and first.std() > 5
    doc = json.loads((tmp_path / "stats.json").read_text())
    assert doc["frames"]["written"] == 12
    assert doc["sink"] == "fused.mp4 + dir://frames/"
    assert "12 fused frames -> fused.mp4 + dir://frames/" in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("outs", "message"),
    [
        (["a.mp4", "a.mp4"], "a.mp4: is given twice as --out"),
        (["a.mp4", "b.gif"], "unknown video suffix '.gif'"),
    ],
)
def test_bad_outputs_are_one_line_before_any_work(
    tmp_path: Path,
    tiny_weights: Path,
    monkeypatch: pytest.MonkeyPatch,
    outs: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["stream", "--weights", str(tiny_weights), "--no-live"]
    for out in outs:
        args += ["--out", out]
    result = CliRunner().invoke(app, args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert message in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == []
