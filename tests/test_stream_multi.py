"""Several camera pairs fused by one model (``runtime/multi.py``, ``runtime/batcher.py``,
``stream --pair / --pairs``): real videos at different frame rates and real TNO frames, the
seeded tiny model (one thread).

Batched outputs are compared bit for bit with single-pair runs on the default CPU runner (the
cached ONNX form, whose kernels compute each image of a batch alone); the PyTorch form may pick
another convolution algorithm for a batch, so it is judged against float64 instead."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from fnet_deploy.backends.base import Runner
from fnet_deploy.backends.torch_runner import TorchRunner
from fnet_deploy.cli import app
from fnet_deploy.data.images import quiet_native_stderr
from fnet_deploy.inference.select import fastest_runner
from fnet_deploy.model import load_fnet
from fnet_deploy.runtime.batcher import Batcher
from fnet_deploy.runtime.gain import ThermalGain
from fnet_deploy.runtime.multi import BatchOptions, CameraPair, MultiStats, MultiStream
from fnet_deploy.runtime.pipeline import StopFlag, StreamOptions, StreamPipeline
from fnet_deploy.runtime.registration import Registrar, Registration
from fnet_deploy.runtime.sink_uri import open_sink
from fnet_deploy.runtime.sources import Source, open_source
from fnet_deploy.runtime.uri import parse_uri
from tests.conftest import NATO, nato
from tests.precision import assert_float32_accurate, float32_and_float64_runs
from tests.test_stream import link_frames, live_from_file
from tests.videos import count_frames, write_video

pytestmark = pytest.mark.usefixtures("one_thread")


def source(text: str) -> Source:
    return open_source(parse_uri(text, "source"))


def camera_pair(
    name: str,
    vis: str | Source,
    ir: str | Source,
    out: str,
    registration: Registration | None = None,
    **options: object,
) -> CameraPair:
    """A pair as ``stream --pair`` builds it (each call: fresh sources, sink and state)."""
    return CameraPair(
        name,
        source(vis) if isinstance(vis, str) else vis,
        source(ir) if isinstance(ir, str) else ir,
        open_sink(parse_uri(out, "sink")),
        Registrar(registration),
        ThermalGain(),
        StreamOptions(**options),  # type: ignore[arg-type]
    )


def run_alone(pair: CameraPair, runner: Runner) -> StreamPipeline:
    pipeline = StreamPipeline(
        pair.vis, pair.ir, runner, pair.sink, pair.registrar, pair.gain, pair.options
    )
    pipeline.run()
    return pipeline


def frames_of(folder: Path) -> list[np.ndarray]:
    return [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(folder.glob("*.png"))]


def expected_pairs(vis_fps: float, vis_n: int, ir_fps: float, ir_n: int, offset: float) -> int:
    """Visible frames with an IR frame within the default skew (half the slower period)."""
    skew = 0.5 / min(vis_fps, ir_fps)
    return sum(
        min(abs(i / vis_fps - (j / ir_fps + offset)) for j in range(ir_n)) <= skew
        for i in range(vis_n)
    )


def test_four_pairs_batched_give_the_outputs_of_four_single_runs(
    tmp_path: Path, tiny_weights: Path
) -> None:
    # Three pairs of recordings at different rates (one IR camera 100 ms late), all 64 x 48, and
    # the Nato camp frames with their calibration (354 x 268 after registration), one visible
    # frame of which does not decode.
    videos = {
        "a": ((25, 40), (10, 16), 0.1),
        "b": ((12, 24), (12, 24), 0.0),
        "c": ((30, 30), (15, 15), 0.0),
    }
    for name, ((vf, vn), (jf, jn), _) in videos.items():
        write_video(tmp_path / f"{name}_vis.avi", vf, vn)
        write_video(tmp_path / f"{name}_ir.avi", jf, jn)
    vi = link_frames(tmp_path / "nato" / "vi", range(2, 9), NATO / "vi")
    ir = link_frames(tmp_path / "nato" / "ir", range(2, 9), NATO / "ir")
    (vi / "000005.png").unlink()
    (vi / "000005.png").write_bytes(b"\x89PNG truncated")
    registration = Registration.load(NATO / "registration.json")

    def pairs(run: str) -> list[CameraPair]:
        made = [
            camera_pair(
                name,
                str(tmp_path / f"{name}_vis.avi"),
                str(tmp_path / f"{name}_ir.avi"),
                f"dir://{tmp_path / run / name}",
                ir_offset=offset,
            )
            for name, (_, _, offset) in videos.items()
        ]
        out = f"dir://{tmp_path / run / 'nato'}"
        return [*made, camera_pair("nato", f"dir://{vi}", f"dir://{ir}", out, registration)]

    runner, _ = fastest_runner(tiny_weights)
    with runner:
        assert runner.name == "onnxruntime"
        stats = MultiStream(pairs("batched"), runner, BatchOptions(timeout=0.5)).run()
        alone = {pair.name: run_alone(pair, runner).stats for pair in pairs("alone")}

    for name, ((vf, vn), (jf, jn), offset) in videos.items():
        assert stats.pairs[name].counts.paired == expected_pairs(vf, vn, jf, jn, offset), name
    for name, single in alone.items():
        counts = stats.pairs[name].counts
        assert stats.pairs[name].stopped_by == "end of input"
        assert counts == single.counts, name
        batched = frames_of(tmp_path / "batched" / name)
        assert len(batched) == counts.written > 0
        for got, want in zip(batched, frames_of(tmp_path / "alone" / name), strict=True):
            np.testing.assert_array_equal(got, want)
    assert stats.pairs["nato"].counts.vis_corrupt == 1
    assert sum(pair.counts.vis_corrupt for pair in stats.pairs.values()) == 1
    # The three 64 x 48 pairs share calls (three frames a call while all three run); the
    # registered Nato frames are a group of their own.
    doc = stats.to_dict()
    small, nato = doc["batch"]["groups"]["64x48"], doc["batch"]["groups"]["354x268"]
    assert small["frames"] == sum(stats.pairs[name].counts.written for name in videos)
    assert small["batch_sizes"]["3"] >= 10 and small["calls"] < small["frames"]
    assert nato["frames"] == stats.pairs["nato"].counts.written and nato["batch_sizes"] == {
        "1": nato["calls"]
    }
    assert doc["batch"]["fill_ratio"] > 0.8
    assert doc["pairs"]["a"]["format"] == "fnet-deploy/stream-stats/1"
    assert doc["pairs"]["a"]["latency_ms"]["batch_wait"]["count"] == stats.pairs["a"].counts.written


def test_a_camera_that_dies_ends_only_its_pair(tmp_path: Path, tiny_weights: Path) -> None:
    # The live pair's "cameras" play a short file and drop at its end; with no reconnection
    # allowed, that pair ends with an error while the recorded pairs fuse every frame.
    clip = write_video(tmp_path / "live.avi", 30, 15)
    for name in ("a", "b"):
        write_video(tmp_path / f"{name}_vis.avi", 10, 60)
        write_video(tmp_path / f"{name}_ir.avi", 10, 60)
    pairs = [
        camera_pair(
            name,
            str(tmp_path / f"{name}_vis.avi"),
            str(tmp_path / f"{name}_ir.avi"),
            str(tmp_path / f"{name}.mp4"),
        )
        for name in ("a", "b")
    ]
    live = camera_pair(
        "live",
        live_from_file(clip),
        live_from_file(clip),
        str(tmp_path / "live.mp4"),
        max_skew=0.05,
        reconnect_timeout=0.0,
    )
    with TorchRunner(tiny_weights) as runner:
        stats = MultiStream([pairs[0], live, pairs[1]], runner).run()
    assert stats.failed().keys() == {"live"}
    assert "lost and not back within 0 s" in stats.failed()["live"]
    assert count_frames(tmp_path / "live.mp4") == stats.pairs["live"].counts.written
    for name in ("a", "b"):
        counts = stats.pairs[name].counts
        assert stats.pairs[name].stopped_by == "end of input"
        assert counts.written == counts.paired == 60 == count_frames(tmp_path / f"{name}.mp4")


def test_a_camera_that_comes_back_reconnects_while_the_others_go_on(
    tmp_path: Path, tiny_weights: Path
) -> None:
    clip = write_video(tmp_path / "live.avi", 30, 20)
    write_video(tmp_path / "vis.avi", 25, 3000)
    write_video(tmp_path / "ir.avi", 25, 3000)
    recorded = camera_pair(
        "recorded", str(tmp_path / "vis.avi"), str(tmp_path / "ir.avi"), str(tmp_path / "r.mp4")
    )
    live = camera_pair(
        "live",
        live_from_file(clip),
        live_from_file(clip),
        str(tmp_path / "live.mp4"),
        max_skew=0.05,
        reconnect_timeout=5.0,
    )
    stop = StopFlag()
    # (live frames written, live reconnects, recorded frames written) at each progress call
    seen: list[tuple[int, int, int]] = []

    def progress(run: MultiStats) -> None:
        live_counts, recorded_counts = run.pairs["live"].counts, run.pairs["recorded"].counts
        seen.append((live_counts.written, live_counts.reconnects, recorded_counts.written))
        back = [s for s in seen if s[1] >= 1]
        if back and live_counts.written >= back[0][0] + 3:
            stop.set("enough")

    with TorchRunner(tiny_weights) as runner:
        stats = MultiStream([live, recorded], runner).run(stop, progress)
    assert stats.stopped_by == "enough" and not stats.failed()
    assert stats.pairs["live"].counts.reconnects >= 1
    # While the live pair waited for its camera (from the first call that saw its last frame
    # before the loss to the first that saw it reconnected, one tick later at least), the
    # recorded pair went on.
    before = [s for s in seen if s[1] == 0]
    stalled = next(s for s in before if s[0] == before[-1][0])
    reconnected = next(s for s in seen if s[1] >= 1)
    assert reconnected[2] > stalled[2], seen
    for name, video in (("live", "live.mp4"), ("recorded", "r.mp4")):
        assert count_frames(tmp_path / video) == stats.pairs[name].counts.written


def test_batched_calls_on_the_pytorch_form_are_float32_accurate(tiny_weights: Path) -> None:
    crops = [(modality, n) for n in (3, 7, 11) for modality in ("ir", "vi")]
    ir, vis = (
        np.stack([nato(m, n)[100:148, 150:214] for m, n in crops if m == modality])[:, None]
        for modality in ("ir", "vi")
    )
    ir, vis = ir.astype(np.float32) / 255.0, vis.astype(np.float32) / 255.0
    base32, ref64 = float32_and_float64_runs(load_fnet(tiny_weights)[0], ir, vis)
    with TorchRunner(tiny_weights) as runner:
        batched = runner.infer({"ir": ir, "vis": vis})["fused"]
        single = [
            runner.infer({"ir": ir[i : i + 1], "vis": vis[i : i + 1]})["fused"] for i in range(3)
        ]
    assert_float32_accurate(batched, ref64, base32, "batch of 3")
    assert_float32_accurate(np.concatenate(single), ref64, base32, "one at a time")


def test_batches_keep_to_the_largest_batch_the_runner_takes(
    tmp_path: Path, tiny_weights: Path
) -> None:
    for name in "abc":
        write_video(tmp_path / f"{name}_vis.avi", 10, 10)
        write_video(tmp_path / f"{name}_ir.avi", 10, 10)
    pairs = [
        camera_pair(
            name,
            str(tmp_path / f"{name}_vis.avi"),
            str(tmp_path / f"{name}_ir.avi"),
            str(tmp_path / f"{name}.avi"),
        )
        for name in "abc"
    ]
    with TorchRunner(tiny_weights) as runner:
        runner.max_batch = 2  # as a TensorRT engine built for batches of 1 or 2 says
        stats = MultiStream(pairs, runner, BatchOptions(timeout=0.5)).run()
    assert stats.batch["max_batch"] == 2 and stats.batch["frames"] == 30
    assert set(stats.batch["batch_sizes"]) <= {"1", "2"} and stats.batch["batch_sizes"]["2"] > 0


def test_pairs_opening_videos_at_once_leave_stderr_as_it_was() -> None:
    """Each pair opens its videos in its own thread, each open silencing FFmpeg's fd-2 lines: two
    overlapping quiet sections (A in, B in, A out, B out) must give fd 2 back, not /dev/null."""
    before = os.fstat(sys.stderr.fileno())
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with quiet_native_stderr():
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def second() -> None:
        a_in.wait(5)
        with quiet_native_stderr():
            b_in.set()
            a_out.wait(5)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = os.fstat(sys.stderr.fileno())
    assert a_out.is_set() and (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)


def test_a_failing_progress_call_stops_every_pair_with_its_output_finalised(
    tmp_path: Path, tiny_weights: Path
) -> None:
    for name in "ab":
        write_video(tmp_path / f"{name}_vis.avi", 10, 400)
        write_video(tmp_path / f"{name}_ir.avi", 10, 400)
    pairs = [
        camera_pair(
            name,
            str(tmp_path / f"{name}_vis.avi"),
            str(tmp_path / f"{name}_ir.avi"),
            str(tmp_path / f"{name}.mp4"),
        )
        for name in "ab"
    ]

    def progress(run: MultiStats) -> None:
        if run.written >= 4:
            raise RuntimeError("the view failed")

    with TorchRunner(tiny_weights) as runner:
        run = MultiStream(pairs, runner)
        with pytest.raises(RuntimeError, match="the view failed"):
            run.run(progress=progress)
    assert run.stats.stopped_by == "error: RuntimeError: the view failed"
    for name in "ab":
        pair = run.stats.pairs[name]
        assert pair.stopped_by == "error: RuntimeError: the view failed"
        assert 0 < pair.counts.written < 400
        # asked to stop before the batcher refused frames: at most the frame in hand is lost,
        # dropped on the stop, not a backend error
        c = pair.counts
        assert c.infer_errors == 0 and c.dropped_on_stop <= 1
        assert c.paired == c.written + c.dropped_on_stop
        assert count_frames(tmp_path / f"{name}.mp4") == pair.counts.written


class FlakyRunner(TorchRunner):
    """The real runner, failing (as a driver would) on any batch holding an all-ones frame."""

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if any(np.all(frame == 1.0) for frame in feed["vis"]):
            raise RuntimeError("simulated fault on a bad frame")
        return super()._infer(feed)


def frame(seed: int, value: float | None = None) -> np.ndarray:
    if value is not None:
        return np.full((1, 1, 24, 32), value, np.float32)
    return np.random.default_rng(seed).random((1, 1, 24, 32), np.float32)


def test_a_frame_that_fails_the_backend_costs_only_its_pair(tiny_weights: Path) -> None:
    with FlakyRunner(tiny_weights) as runner:
        batcher = Batcher(runner, timeout=5.0)
        lanes = [batcher.lane(name) for name in "abc"]
        inputs = [frame(0), frame(1, value=1.0), frame(2)]
        results: dict[str, object] = {}

        def hand_in(i: int) -> None:
            try:
                results["abc"[i]] = lanes[i].infer({"ir": inputs[i], "vis": inputs[i]})["fused"]
            except RuntimeError as err:
                results["abc"[i]] = err
            lanes[i].close()

        threads = [threading.Thread(target=hand_in, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        batcher.serve()
        for thread in threads:
            thread.join()
        alone = [runner.infer({"ir": x, "vis": x})["fused"] for x in (inputs[0], inputs[2])]
    assert isinstance(results["b"], RuntimeError)
    np.testing.assert_array_equal(results["a"], alone[0])
    np.testing.assert_array_equal(results["c"], alone[1])
    group = batcher.groups[(32, 24)]  # (width, height)
    assert (group.calls, group.frames, group.failed_calls) == (1, 3, 1)


def test_a_late_pair_holds_a_batch_back_only_once_and_at_most_the_timeout(
    tiny_weights: Path,
) -> None:
    timeout = 0.3
    with TorchRunner(tiny_weights) as runner:
        batcher = Batcher(runner, timeout)
        early, late = batcher.lane("early"), batcher.lane("late")
        waits: list[float] = []

        def early_pair() -> None:
            for seed in range(3):
                early.infer({"ir": frame(seed), "vis": frame(seed)})
                waits.append(early.waits.recent()[-1])
            late_pair.start()
            early.close()

        def late_frame() -> None:  # a pair whose first frame comes after the others ended
            late.infer({"ir": frame(9), "vis": frame(9)})
            late.close()

        late_pair = threading.Thread(target=late_frame)
        thread = threading.Thread(target=early_pair)
        thread.start()
        batcher.serve()
        thread.join()
        late_pair.join()
    # The first frame waited the timeout for the late pair (a lower bound: how much longer it
    # took depends on the machine's load, not on the batcher); after that the late pair was not
    # waited for, and its own frame, when no other pair ran, went at once: one call of the four
    # was pushed by the timeout, the others were full (judged by the counts, not by clocks).
    assert waits[0] >= timeout
    group = batcher.groups[(32, 24)]  # (width, height)
    assert (group.calls, group.by_timeout, group.sizes) == (4, 1, {1: 4})


def test_stream_command_with_a_pairs_file(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("a", "b"):
        write_video(tmp_path / f"{name}_vis.avi", 10, 12)
        write_video(tmp_path / f"{name}_ir.avi", 10, 12)
    # Pair "b" gives a calibration for other cameras: it fails on its first frame, alone.
    Registration(np.eye(3), "affine", (640, 512), (640, 480), (0, 0, 640, 480)).save("other.json")
    (tmp_path / "pairs.toml").write_text(
        '[[pair]]\nname = "a"\nvis = "a_vis.avi"\nir = "a_ir.avi"\nout = "dir://out_a"\n'
        "ir-percentiles = [2, 98]\n\n"
        '[[pair]]\nname = "b"\nvis = "b_vis.avi"\nir = "b_ir.avi"\nout = "b.mp4"\n'
        'registration = "other.json"\n'
    )
    args = ["stream", "--weights", str(tiny_weights), "--backend", "torch", "--no-live"]
    result = CliRunner().invoke(app, [*args, "--pairs", "pairs.toml", "--stats", "s.json"])
    assert result.exit_code == 1, result.output
    assert "error: pair b: b_ir.avi frame 0 with b_vis.avi frame 0: other.json is for IR" in (
        result.output
    )
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["format"] == "fnet-deploy/multi-stream-stats/1" and doc["backend"] == "torch"
    assert doc["pairs"]["a"]["frames"]["written"] == 12 == len(list((tmp_path / "out_a").iterdir()))
    assert "other.json is for IR 640x512" in doc["pairs"]["b"]["stopped_by"]
    assert not (tmp_path / "b.mp4").exists()

    # The same pair given as --pair fuses the same frames.
    pair = "vis=a_vis.avi,ir=a_ir.avi,out=dir://again,ir-percentiles=2,98"
    again = CliRunner().invoke(app, [*args, "--pair", pair, "--max-batch", "1"])
    assert again.exit_code == 0, again.output
    for got, want in zip(frames_of(tmp_path / "again"), frames_of(tmp_path / "out_a"), strict=True):
        np.testing.assert_array_equal(got, want)


def test_sigterm_stops_every_pair_and_finalises_every_output(
    tmp_path: Path, tiny_weights: Path
) -> None:
    """The real CLI in a subprocess: the model runs in the main thread, which takes the signal."""
    pairs = []
    for name in ("a", "b"):
        vis = write_video(tmp_path / f"{name}_vis.avi", 25, 800, (160, 120))
        ir = write_video(tmp_path / f"{name}_ir.avi", 25, 800, (160, 120))
        pairs += ["--pair", f"vis={vis},ir={ir},out={tmp_path / name}.mp4,name={name}"]
    command = [sys.executable, "-m", "fnet_deploy.cli", "stream", "--no-live", *pairs]
    command += ["--weights", str(tiny_weights), "--backend", "torch"]
    command += ["--stats", str(tmp_path / "s.json")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    partials = [tmp_path / f".{name}.partial.mp4" for name in ("a", "b")]
    try:
        deadline = time.monotonic() + 60
        while not all(p.exists() and p.stat().st_size > 20_000 for p in partials):
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "no frames written within 60 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, output
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["stopped_by"] == "signal SIGTERM"
    dropped = 0
    for name in ("a", "b"):
        pair = doc["pairs"][name]
        frames = pair["frames"]
        assert pair["stopped_by"] == "signal SIGTERM"
        assert 0 < frames["written"] < 800
        assert frames["paired"] == frames["written"] + frames["dropped_on_stop"], frames
        assert count_frames(tmp_path / f"{name}.mp4") == frames["written"]
        dropped += frames["dropped_on_stop"]
    assert doc["batch"]["dropped_on_stop"] == dropped
