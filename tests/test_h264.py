"""Video files people can play: ``.mp4`` / ``.mov`` in H.264 through PyAV, read back by a
decoder that names the codec; mp4v through OpenCV, said in one line, where there is no encoder."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from fnet_deploy.cli import app
from fnet_deploy.runtime import sinks
from fnet_deploy.runtime.h264 import h264_encoder
from fnet_deploy.runtime.sink_uri import open_sink
from fnet_deploy.runtime.sinks import VideoFileSink
from fnet_deploy.runtime.uri import parse_uri
from tests.videos import count_frames, write_video

CHROMIUM = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
"""Names a Chromium-based browser has on PATH (Debian, Ubuntu, Google's packages)."""
PLAYER = """<!doctype html><html><body><video id="v" src="{name}" muted></video>
<div id="result">pending</div><script>
const v = document.getElementById("v"), result = document.getElementById("result");
v.addEventListener("loadeddata", () => {{
  result.textContent = `played ${{v.videoWidth}}x${{v.videoHeight}} ${{v.duration.toFixed(2)}} s`;
}});
v.addEventListener("error", () => {{ result.textContent = `error ${{v.error.code}}`; }});
</script></body></html>
"""
"""A page whose video element says whether the browser decoded the file's first frame."""
ENCODER = h264_encoder()
needs_h264 = pytest.mark.skipif(
    ENCODER is None,
    reason="no H.264 encoder: PyAV is not installed (pip install av) or its FFmpeg has none",
)


def frames(count: int) -> list[np.ndarray]:
    """Moving colour noise, blurred so that a lossy codec keeps it recognisable."""
    noise = np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)
    base = cv2.GaussianBlur(noise, (0, 0), 2.0)
    return [np.roll(base, 2 * i, axis=1) for i in range(count)]


def codec_of(path: Path) -> str:
    """The codec of the file's video stream, as FFmpeg's demuxer reads it (PyAV)."""
    av = pytest.importorskip("av", reason="PyAV reads the codec back")
    with av.open(str(path)) as container:
        return str(container.streams.video[0].codec_context.name)


@needs_h264
@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".m4v"])
def test_mp4_and_mov_are_written_in_h264(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"fused{suffix}"
    images = frames(9)
    with open_sink(parse_uri(str(path), "sink"), fps=12.0) as sink:
        assert isinstance(sink, VideoFileSink)
        assert sink.codecs() == {str(path): "h264"}
        for image in images:
            sink.write(image)
        assert not path.exists()  # finalised on close
    assert codec_of(path) == "h264"
    assert count_frames(path) == 9  # OpenCV's own decoder reads it too
    capture = cv2.VideoCapture(str(path))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
    ok, first = capture.read()
    assert ok and first.shape == (48, 64, 3)
    assert np.abs(first.astype(int) - images[0]).mean() < 4.0


@needs_h264
def test_odd_frame_rates_and_sizes_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "odd.mp4"
    with VideoFileSink(parse_uri(str(path), "sink"), fps=29.97) as sink:
        for image in frames(3):
            sink.write(image[:47, :63])
    assert codec_of(path) == "h264"
    capture = cv2.VideoCapture(str(path))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(29.97, abs=0.01)
    assert capture.read()[1].shape == (46, 62, 3)


def test_without_an_encoder_mp4v_is_written_and_said_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sinks, "h264_encoder", lambda: None)
    path = tmp_path / "fused.mp4"
    with (
        caplog.at_level(logging.WARNING, "fnet_deploy.runtime"),
        VideoFileSink(parse_uri(str(path), "sink"), fps=5) as sink,
    ):
        assert sink.codec == "mpeg4"
        for image in frames(3):
            sink.write(image)
    said = [record.getMessage() for record in caplog.records]
    assert len(said) == 1 and "no H.264 encoder" in said[0] and "mp4v" in said[0]
    assert "\n" not in said[0]
    assert count_frames(path) == 3
    if h264_encoder() is not None:  # PyAV can tell
        assert codec_of(path) == "mpeg4"


def test_avi_and_mkv_keep_their_codecs(tmp_path: Path) -> None:
    assert VideoFileSink(parse_uri(str(tmp_path / "a.avi"), "sink"), 5).codec == "mjpeg"
    assert VideoFileSink(parse_uri(str(tmp_path / "a.mkv"), "sink"), 5).codec == "ffv1"


@needs_h264
def test_the_stream_statistics_name_the_codec(tmp_path: Path, tiny_weights: Path) -> None:
    out, stats = tmp_path / "fused.mp4", tmp_path / "stats.json"
    result = CliRunner().invoke(
        app,
        [
            "stream", "--weights", str(tiny_weights), "--backend", "torch", "--out", str(out),
            "--stats", str(stats), "--no-live",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(stats.read_text())["codecs"] == {str(out): "h264"}
    assert codec_of(out) == "h264"


@needs_h264
def test_chromium_plays_the_video(tmp_path: Path) -> None:
    browser = next((found for name in CHROMIUM if (found := shutil.which(name)) is not None), None)
    if browser is None:
        pytest.skip(f"no Chromium here (looked for {', '.join(CHROMIUM)})")
    with VideoFileSink(parse_uri(str(tmp_path / "fused.mp4"), "sink"), fps=10) as sink:
        for image in frames(20):
            sink.write(image)
    page = tmp_path / "player.html"
    page.write_text(PLAYER.format(name="fused.mp4"))
    done = subprocess.run(
        [
            browser, "--headless", "--no-sandbox", "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert re.search(r'<div id="result">played 64x48 2\.00 s</div>', done.stdout), done.stdout


@needs_h264
def test_each_pairs_statistics_name_its_codec(tmp_path: Path, tiny_weights: Path) -> None:
    pairs = []
    for name in ("a", "b"):
        vis = write_video(tmp_path / f"{name}_vis.avi", 10, 3)
        ir = write_video(tmp_path / f"{name}_ir.avi", 10, 3)
        suffix = ".mp4" if name == "a" else ".avi"
        pairs += ["--pair", f"vis={vis},ir={ir},out={tmp_path / name}{suffix},name={name}"]
    stats = tmp_path / "s.json"
    result = CliRunner().invoke(
        app,
        ["stream", "--weights", str(tiny_weights), "--backend", "torch", "--no-live", *pairs,
         "--stats", str(stats)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(stats.read_text())["pairs"]
    assert doc["a"]["codecs"] == {str(tmp_path / "a.mp4"): "h264"}
    assert doc["b"]["codecs"] == {str(tmp_path / "b.avi"): "mjpeg"}
    assert codec_of(tmp_path / "a.mp4") == "h264"
