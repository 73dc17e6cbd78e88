"""The stream pipeline end to end with real components: OpenCV-written videos, real TNO frames
(the shipped Nato camp sequence, a strip of the Fire sequence), FNet weights (tiny for speed, the
shipped trained ones on a few small frames)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fnet_deploy.backends.torch_runner import TorchRunner
from fnet_deploy.calibration.estimate import estimate_from_images
from fnet_deploy.cli import app
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.inference.images import FuseOptions, ImageFuser
from fnet_deploy.inference.select import fastest_runner
from fnet_deploy.model import FNet, ModelConfig
from fnet_deploy.model import weights as weights_file
from fnet_deploy.runtime.gain import ThermalGain
from fnet_deploy.runtime.pipeline import StopFlag, StreamOptions, StreamPipeline
from fnet_deploy.runtime.registration import Registrar, Registration
from fnet_deploy.runtime.sink_uri import open_sink
from fnet_deploy.runtime.sources import FileSource, RtspSource, open_source
from fnet_deploy.runtime.stats import STAGES, RunStats
from fnet_deploy.runtime.sync import FramePairer, Paired
from fnet_deploy.runtime.uri import URI, parse_uri
from tests.conftest import FIRE, NATO, nato
from tests.videos import count_frames, write_video


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread (and do not fight other processes for cores)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def pipeline(
    vis: str,
    ir: str,
    out: str,
    runner: TorchRunner,
    registration: Registration | None = None,
    size: tuple[int, int] | None = None,
    **options: object,
) -> StreamPipeline:
    return StreamPipeline(
        open_source(parse_uri(vis, "source")),
        open_source(parse_uri(ir, "source")),
        runner,
        open_sink(parse_uri(out, "sink")),
        Registrar(registration, size),
        ThermalGain(),
        StreamOptions(**options),  # type: ignore[arg-type]
    )


def link_frames(folder: Path, numbers: range, source: Path) -> Path:
    folder.mkdir(parents=True)
    for n in numbers:
        (folder / f"{n:06d}.png").symlink_to(source / f"{n:06d}.png")
    return folder


# --- pairing of real video files ----------------------------------------------------------------


def test_videos_at_different_rates_with_an_offset_pair_as_expected(tmp_path: Path) -> None:
    vis = write_video(tmp_path / "vis.avi", 25, 40)
    ir = write_video(tmp_path / "ir.avi", 10, 12)
    # The IR recording started 100 ms after the visible one: its frame j shows time j/10 + 0.1.
    offset, skew = 0.1, 0.05
    sources = [FileSource(parse_uri(str(p), "source")) for p in (vis, ir)]
    for source in sources:
        source.open()
    pairer = FramePairer(skew, offset)
    decisions = []
    while (frame := sources[0].read()) is not None:
        pairer.add_vis(frame)
        decisions += pairer.pop()
        while pairer.waiting:
            nxt = sources[1].read()
            if nxt is None:
                pairer.end_ir()
            else:
                pairer.add_ir(nxt)
            decisions += pairer.pop()
    decisions += pairer.finish()
    expected = {}
    for i in range(40):
        distances = [abs(i / 25 - (j / 10 + offset)) for j in range(12)]
        j = int(np.argmin(distances))
        if distances[j] <= skew:
            expected[i] = j
    got = {d.vis.index: d.ir.index for d in decisions if isinstance(d, Paired)}
    assert got == expected
    assert sorted(set(range(40)) - set(got)) == [0, 1, 32, 33, 34, 35, 36, 37, 38, 39]

    runner = TorchRunner(FNet(ModelConfig(filters=4, kernel_size=3, iterations=1)))
    with runner:
        stats = pipeline(
            str(vis),
            str(ir),
            str(tmp_path / "fused.mp4"),
            runner,
            max_skew=skew,
            ir_offset=offset,
        ).run()
    counts = stats.counts
    assert (counts.vis_read, counts.paired, counts.vis_unpaired) == (40, len(expected), 10)
    assert counts.written == len(expected) == count_frames(tmp_path / "fused.mp4")
    assert stats.stopped_by == "end of input"
    assert stats.info["max_skew_ms"] == 50.0 and stats.info["output_fps"] == 25.0


# --- the real sequences through the whole pipeline ---------------------------------------------


def test_real_sequence_with_calibration_to_frames(tmp_path: Path, tiny_weights: Path) -> None:
    registration = estimate_from_images(nato("ir", 2), nato("vi", 2), "translation")
    ir = link_frames(tmp_path / "ir", range(2, 14), NATO / "ir")
    vi = link_frames(tmp_path / "vi", range(2, 14), NATO / "vi")
    out = tmp_path / "out"
    with TorchRunner(tiny_weights) as runner:
        stats = pipeline(f"dir://{vi}", f"dir://{ir}", f"dir://{out}", runner, registration).run()
    written = sorted(out.iterdir())
    assert len(written) == stats.counts.written == 12
    _, _, w, h = registration.valid_crop
    image = cv2.imread(str(written[0]), cv2.IMREAD_UNCHANGED)
    assert image.shape == (h, w)  # grey visible input gives grey output, cropped
    doc = stats.to_dict()
    assert doc["frames"]["paired"] == 12 and doc["frames"]["ir_unused"] == 0
    for stage in STAGES:
        summary = doc["latency_ms"][stage]
        assert summary["count"] == 12 and 0 <= summary["p50"] <= summary["p95"] <= summary["p99"]
    assert doc["latency_ms"]["end_to_end"]["p50"] >= doc["latency_ms"]["infer"]["p50"]


def test_false_colour_sequence_resized_to_the_model_size(
    tmp_path: Path, tiny_weights: Path
) -> None:
    out = tmp_path / "fire.mp4"
    with TorchRunner(tiny_weights) as runner:
        stats = pipeline(
            f"dir://{FIRE / 'vi'}", f"dir://{FIRE / 'ir'}", str(out), runner, size=(128, 96)
        ).run()
    assert stats.counts.written == 4 == count_frames(out)
    capture = cv2.VideoCapture(str(out))
    ok, frame = capture.read()
    assert ok and frame.shape == (96, 128, 3)
    # The visible frames are false colour (R, G, ~0 B): the fused frames keep colour.
    assert np.abs(frame[:, :, 2].astype(int) - frame[:, :, 0].astype(int)).mean() > 5


def test_trained_weights_match_image_fusion_exactly(tmp_path: Path, default_weights: Path) -> None:
    for modality in ("ir", "vi"):
        (tmp_path / modality).mkdir()
        for n in (2, 3, 4):
            image = nato(modality, n)
            cv2.imwrite(str(tmp_path / modality / f"{n:06d}.png"), image[150:214, 120:184])
    out = tmp_path / "out"
    # The runner that `stream` and `fuse` both choose by default: with one runner the stream
    # pipeline and image fusion feed it the same inputs, so the outputs are equal bit for bit.
    runner, info = fastest_runner(default_weights)
    with runner:
        stats = pipeline(
            f"dir://{tmp_path / 'vi'}", f"dir://{tmp_path / 'ir'}", f"dir://{out}", runner
        ).run()
        assert stats.counts.written == 3
        fuser = ImageFuser(runner, info.config, torch.device("cpu"), FuseOptions())
        for i, n in enumerate((2, 3, 4)):
            expected = fuser.fuse_files(
                tmp_path / "ir" / f"{n:06d}.png", tmp_path / "vi" / f"{n:06d}.png"
            )
            got = cv2.imread(str(out / f"{i:06d}.png"), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(got, expected)


# --- faults -------------------------------------------------------------------------------------


def test_corrupt_frames_are_skipped_and_counted(tmp_path: Path, tiny_weights: Path) -> None:
    ir = link_frames(tmp_path / "ir", range(2, 8), NATO / "ir")
    vi = link_frames(tmp_path / "vi", range(2, 8), NATO / "vi")
    (vi / "000004.png").unlink()
    (vi / "000004.png").write_bytes(b"\x89PNG truncated")
    (ir / "000006.png").unlink()
    (ir / "000006.png").write_bytes(b"")
    out = tmp_path / "fused.avi"
    with TorchRunner(tiny_weights) as runner:
        stats = pipeline(f"dir://{vi}", f"dir://{ir}", str(out), runner).run()
    c = stats.counts
    assert (c.vis_corrupt, c.ir_corrupt) == (1, 1)
    # Visible 000006 lost its partner (the IR neighbours are 100 ms away, the skew is 50 ms).
    assert (c.vis_read, c.paired, c.vis_unpaired, c.written) == (5, 4, 1, 4)
    assert count_frames(out) == 4


def test_truncated_ir_video_ends_cleanly(tmp_path: Path, tiny_weights: Path) -> None:
    vis = write_video(tmp_path / "vis.avi", 10, 30, (160, 120))
    ir = write_video(tmp_path / "ir.avi", 10, 30, (160, 120))
    ir.write_bytes(ir.read_bytes()[: ir.stat().st_size // 2])
    out = tmp_path / "fused.mp4"
    with TorchRunner(tiny_weights) as runner:
        stats = pipeline(str(vis), str(ir), str(out), runner).run()
    c = stats.counts
    assert 0 < c.ir_read < 30 and c.vis_read == 30
    assert c.written == c.paired == c.ir_read and c.vis_unpaired == 30 - c.ir_read
    assert count_frames(out) == c.written
    assert any("ended after" in e["message"] for e in stats.events)
    assert stats.stopped_by == "end of input"


class FlakyRunner(TorchRunner):
    """The real PyTorch runner, failing on chosen calls (as a driver error would)."""

    def __init__(self, failing: set[int] | None = None, fail_from: int | None = None) -> None:
        super().__init__(FNet(ModelConfig(filters=4, kernel_size=3, iterations=1)))
        self.calls = 0
        self.failing = failing or set()
        self.fail_from = fail_from

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls += 1
        if self.calls in self.failing or (self.fail_from and self.calls >= self.fail_from):
            raise RuntimeError(f"simulated device fault on call {self.calls}")
        return super()._infer(feed)


def test_backend_errors_are_counted_and_stop_the_run_when_persistent(tmp_path: Path) -> None:
    vis = write_video(tmp_path / "vis.avi", 10, 8)
    ir = write_video(tmp_path / "ir.avi", 10, 8)
    with FlakyRunner(failing={2, 5}) as runner:
        stats = pipeline(str(vis), str(ir), str(tmp_path / "a.mp4"), runner).run()
    assert (stats.counts.infer_errors, stats.counts.written) == (2, 6)
    assert sum("simulated device fault" in e["message"] for e in stats.events) == 2

    out = tmp_path / "b.mp4"
    with FlakyRunner(fail_from=3) as runner:
        run = pipeline(str(vis), str(ir), str(out), runner, max_consecutive_errors=3)
        with pytest.raises(FnetError, match="stopping after 3 consecutive backend errors"):
            run.run()
    assert run.stats.stopped_by.startswith("error: stopping after 3")
    assert count_frames(out) == 2  # what was fused before is finalised and plays


def test_stop_request_finalises_the_output(tmp_path: Path, tiny_weights: Path) -> None:
    vis = write_video(tmp_path / "vis.avi", 10, 400, (160, 120))
    ir = write_video(tmp_path / "ir.avi", 10, 400, (160, 120))
    out = tmp_path / "fused.mp4"
    stop = StopFlag()
    seen: list[int] = []

    def progress(stats: RunStats) -> None:
        seen.append(stats.counts.written)
        if stats.counts.written >= 3:
            stop.set("test stop")

    with TorchRunner(tiny_weights) as runner:
        stats = pipeline(str(vis), str(ir), str(out), runner).run(stop, progress)
    assert stats.stopped_by == "test stop"
    assert 3 <= stats.counts.written < 400
    assert count_frames(out) == stats.counts.written
    assert seen == sorted(seen)


def test_sources_that_do_not_fit_the_calibration(tmp_path: Path, tiny_weights: Path) -> None:
    vis = write_video(tmp_path / "vis.avi", 10, 3)
    ir = write_video(tmp_path / "ir.avi", 10, 3)
    reg = Registration(np.eye(3), "affine", (640, 512), (640, 480), (0, 0, 640, 480))
    with TorchRunner(tiny_weights) as runner, pytest.raises(FnetError, match="calibration is for"):
        pipeline(str(vis), str(ir), str(tmp_path / "x.mp4"), runner, reg).run()
    assert not (tmp_path / "x.mp4").exists()


# --- the command -------------------------------------------------------------------------------


def test_stream_command_default_sequence(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app, ["stream", "--weights", str(tiny_weights), "--stats", "stats.json", "--no-live"]
    )
    assert result.exit_code == 0, result.output
    assert count_frames(tmp_path / "fused.mp4") == 12
    capture = cv2.VideoCapture(str(tmp_path / "fused.mp4"))
    assert capture.read()[1].shape == (268, 354, 3)  # the shipped registration's common area
    doc = json.loads((tmp_path / "stats.json").read_text())
    assert doc["registration"].endswith("nato_camp/registration.json")
    assert doc["frame_size"] == [354, 268]
    assert doc["format"] == "fnet-deploy/stream-stats/1"
    assert doc["frames"]["written"] == 12 and doc["vis_fps"] == 10.0
    assert doc["vis_source"].endswith("nato_camp/vi")
    assert doc["backend"] == "onnxruntime"  # weights on a CPU: the cached ONNX deploy form
    assert "12 fused frames -> fused.mp4" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vis", "a.mp4"], "give both --vis and --ir"),
        (["--vis", "ftp://x", "--ir", "ftp://y"], "unknown source scheme 'ftp://'"),
        (["--out", "display://0"], "display://0: "),
        (["--out", "fused.gif"], "unknown video suffix '.gif'"),
        (["--size", "big"], "--size expects WIDTHxHEIGHT"),
        (["--ir-percentiles", "99,1"], "--ir-percentiles expects low,high with low < high"),
        (["--registration", "missing.json"], "calibration file not found"),
        (["--model", "m.gif"], "unknown model type '.gif'"),
        (["--backend", "onnxruntime"], "needs an exported model file"),
        (["--device", "gpu7", "--weights", "w.pth"], "--device 'gpu7': unknown device"),
    ],
)
def test_stream_command_errors_are_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["stream", "--no-live", *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_stream_refuses_an_output_that_is_an_input(tmp_path: Path) -> None:
    for name in ("vi", "ir"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "000000.png").write_bytes(b"frame")
    vis, ir = str(tmp_path / "vi"), str(tmp_path / "ir")
    result = CliRunner().invoke(
        app, ["stream", "--no-live", "--vis", vis, "--ir", ir, "--out", f"dir://{vis}"]
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "would overwrite the input" in result.output
    assert (tmp_path / "vi" / "000000.png").read_bytes() == b"frame"


def test_stream_that_fuses_no_frame_exits_non_zero(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["stream", "--no-live", "--ir-offset-ms", "50000", "--out", str(tmp_path / "f.mp4")],
    )
    assert result.exit_code == 1, result.output
    assert "error: no frame was fused" in result.output and "Traceback" not in result.output


def test_stream_without_weights_in_a_build_without_defaults_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setattr(weights_file, "packaged_weights", lambda: None)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["stream", "--no-live"])
    assert result.exit_code == 2
    assert "no --weights given" in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


# --- live sources -------------------------------------------------------------------------------


def live_from_file(path: Path) -> RtspSource:
    """A live FFmpeg source reading a local file: host-clock stamps; it "drops" at the end."""
    return RtspSource(URI("rtsp", str(path), str(path)))


def test_live_sources_pair_on_the_host_clock_and_a_lost_one_ends_the_run(
    tmp_path: Path, tiny_weights: Path
) -> None:
    vis = live_from_file(write_video(tmp_path / "vis.avi", 30, 150, (160, 120)))
    ir = live_from_file(write_video(tmp_path / "ir.avi", 30, 300, (160, 120)))
    out = tmp_path / "live.mp4"
    with TorchRunner(tiny_weights) as runner:
        run = StreamPipeline(
            vis,
            ir,
            runner,
            open_sink(parse_uri(str(out), "sink")),
            Registrar(None),
            ThermalGain(),
            StreamOptions(max_skew=0.05, reconnect_timeout=0.0),
        )
        # The shorter "stream" normally drops first; whichever does ends the run.
        with pytest.raises(FnetError, match=r"source .*\.avi lost and not back within 0 s"):
            run.run()
    c = run.stats.counts
    assert c.paired >= 1 and c.written == c.paired == count_frames(out)
    # Inference is slower than decoding: the live queues dropped old frames instead of lagging.
    assert c.vis_dropped_live + c.ir_dropped_live > 0 and 0 < c.vis_read <= 150
    assert run.stats.latency["end_to_end"].summary()["count"] == c.written


def test_live_and_recorded_sources_cannot_be_paired(tmp_path: Path, tiny_weights: Path) -> None:
    clip = write_video(tmp_path / "clip.avi", 10, 3)
    with TorchRunner(tiny_weights) as runner:
        run = StreamPipeline(
            FileSource(parse_uri(str(clip), "source")),
            live_from_file(clip),
            runner,
            open_sink(parse_uri(str(tmp_path / "x.mp4"), "sink")),
            Registrar(None),
            ThermalGain(),
            StreamOptions(),
        )
        with pytest.raises(FnetError, match=r"cannot pair live .* with recorded"):
            run.run()


def test_the_run_goes_on_while_a_live_source_reconnects(
    tmp_path: Path, tiny_weights: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Both "streams" drop at the end of their file and come back when reopened.
    vis = live_from_file(write_video(tmp_path / "vis.avi", 30, 20, (96, 64)))
    ir = live_from_file(write_video(tmp_path / "ir.avi", 30, 20, (96, 64)))
    out = tmp_path / "live.mp4"
    stop = StopFlag()
    written_at_reconnect: list[int] = []

    def progress(stats: RunStats) -> None:
        if stats.counts.reconnects and not written_at_reconnect:
            written_at_reconnect.append(stats.counts.written)
        if written_at_reconnect and stats.counts.written > written_at_reconnect[0] + 2:
            stop.set("enough")

    with TorchRunner(tiny_weights) as runner:
        stats = StreamPipeline(
            vis,
            ir,
            runner,
            open_sink(parse_uri(str(out), "sink")),
            Registrar(None),
            ThermalGain(),
            StreamOptions(max_skew=0.05, reconnect_timeout=5.0),
        ).run(stop, progress)
    assert stats.stopped_by == "enough" and stats.counts.reconnects >= 1
    assert stats.counts.written > written_at_reconnect[0] + 2
    assert count_frames(out) == stats.counts.written
    assert any("reconnected" in record.getMessage() for record in caplog.records)


def test_stream_side_by_side_layout_places_the_three_panes(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fnet_deploy.data.views import pane_boxes

    monkeypatch.chdir(tmp_path)
    base = ["stream", "--weights", str(tiny_weights), "--no-live"]
    plain = CliRunner().invoke(app, [*base, "--out", "dir://plain"])
    sbs = CliRunner().invoke(app, [*base, "--out", "dir://sbs", "--layout", "side-by-side"])
    assert plain.exit_code == 0, plain.output
    assert sbs.exit_code == 0, sbs.output
    first = sorted((tmp_path / "plain").iterdir())[0]
    fused = cv2.imread(str(first), cv2.IMREAD_COLOR)
    composite = cv2.imread(str(tmp_path / "sbs" / first.name), cv2.IMREAD_COLOR)
    boxes = pane_boxes(*fused.shape[:2], "side-by-side")
    top, left, bottom, right = boxes["fused"]
    assert np.array_equal(composite[top:bottom, left:right], fused)
    top, left, bottom, right = boxes["visible"]
    assert not np.array_equal(composite[top:bottom, left:right], fused)
    assert composite.shape[1] >= 3 * fused.shape[1]
