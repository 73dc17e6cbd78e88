"""Sinks: finalised video files that re-open, frame folders, and clear errors for what this
OpenCV build cannot do."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from fnet_deploy.errors import FnetError, InputError
from fnet_deploy.runtime.capabilities import has_gstreamer
from fnet_deploy.runtime.sinks import (
    DisplaySink,
    FrameDirSink,
    VideoFileSink,
    display_problem,
    open_sink,
)
from fnet_deploy.runtime.uri import parse_uri
from tests.videos import count_frames


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
