"""The fast training path on the CPU: device-cut batches, the static-buffer step, time boxes.

The CUDA-only parts (graph capture, TF32, CUDA vs CPU) are in ``tests/test_cuda.py``; here the
same code runs eagerly and is compared with the plain step it replaces.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fnet_deploy.cli import app
from fnet_deploy.model import FNet, IFNet, ModelConfig, load_fnet
from fnet_deploy.training.batches import CachedCrops, DeviceImages, LoadedCrops
from fnet_deploy.training.checkpoint import load_train_state
from fnet_deploy.training.config import (
    DataConfig,
    OptimConfig,
    StageTwoConfig,
    TrainConfig,
    differences,
    load_config,
)
from fnet_deploy.training.dataset import CropStream, StepBatches, scan_pairs
from fnet_deploy.training.ema import ModelEMA
from fnet_deploy.training.losses import LossTerms, stage_one_loss, stage_two_loss
from fnet_deploy.training.reporter import SilentReporter
from fnet_deploy.training.stage import InverseFusion
from fnet_deploy.training.step import WARMUP_STEPS, TrainStep, graph_blocker, make_adam
from fnet_deploy.training.stopping import TimeBoxReached
from fnet_deploy.training.trainer import train
from tests.test_dataset import write_pair
from tests.test_train import TINY, assert_same_tensors, log_rows, tiny

SMALL = ModelConfig(filters=4, kernel_size=3, iterations=2)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    """Three pairs of different sizes, one smaller than a 16 px crop (mirror-padded)."""
    folder = tmp_path / "pairs"
    for i, shape in enumerate([(24, 28), (20, 17), (14, 30)]):
        write_pair(folder, f"p{i}", shape=shape, seed=i)
    return folder


def test_crops_cut_on_the_device_are_the_stream_bit_for_bit(pairs: Path) -> None:
    scan = scan_pairs(DataConfig(folders=(str(pairs),), crop=16))
    stream = CropStream(scan, crop=16, seed=5, stage=2)
    steps = StepBatches(1, 9, batch=4, rank=1, world=2)
    crops = CachedCrops(DeviceImages(scan.images, torch.device("cpu")), stream, steps)
    ir = torch.full((4, 1, 16, 16), -1.0)
    vis = torch.full((4, 1, 16, 16), -1.0)
    modes = set()
    for step in range(1, 9):
        crops.prepare(step + 1)
        crops.fill(step, ir, vis)
        expected = [stream[i] for i in steps.indices(step)]
        assert torch.equal(ir, torch.stack([e[0] for e in expected]))
        assert torch.equal(vis, torch.stack([e[1] for e in expected]))
        modes.update(stream.sample(i)[3] for i in steps.indices(step))
    assert len(modes) >= 6


def test_loaded_crops_keep_the_order_they_are_read_in(pairs: Path) -> None:
    scan = scan_pairs(DataConfig(folders=(str(pairs),), crop=16))
    stream = CropStream(scan, crop=16, seed=0, stage=1)
    batches = [(stream[0][0][None], stream[0][1][None]), (stream[1][0][None], stream[1][1][None])]
    source = LoadedCrops(batches, start=3)
    ir, vis = torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16)
    source.fill(3, ir, vis)
    assert torch.equal(ir, batches[0][0]) and torch.equal(vis, batches[0][1])
    with pytest.raises(RuntimeError, match="expected step 4, got 5"):
        source.fill(5, ir, vis)


def _stage_models(stage: int, dtype: torch.dtype) -> tuple[FNet, torch.nn.Module]:
    torch.manual_seed(3)
    fnet = FNet(SMALL).to(dtype)
    if stage == 1:
        return fnet, InverseFusion(fnet, IFNet(SMALL).to(dtype))
    return fnet, fnet


def _loss(stage: int, net: torch.nn.Module) -> object:
    def compute(ir: torch.Tensor, vis: torch.Tensor) -> LossTerms:
        if stage == 1:
            ir_hat, vis_hat = net(ir, vis)
            return stage_one_loss(ir, vis, ir_hat, vis_hat)
        return stage_two_loss(ir, vis, net(ir, vis), StageTwoConfig())

    return compute


def _batches(dtype: torch.dtype, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(11)
    return [
        (
            torch.rand(2, 1, 20, 20, generator=generator, dtype=dtype),
            torch.rand(2, 1, 20, 20, generator=generator, dtype=dtype),
        )
        for _ in range(count)
    ]


@pytest.mark.parametrize("stage", [1, 2])
def test_static_buffer_step_is_the_plain_step_bit_for_bit(stage: int) -> None:
    """The step the trainer runs (and a CUDA graph captures) against the loop it replaced."""
    optim = OptimConfig(ema_warmup=True)
    results = []
    for use_step in (False, True):
        fnet, net = _stage_models(stage, torch.float32)
        optimizer = make_adam(net.parameters(), optim, capturable=False)
        ema = ModelEMA(fnet, optim.ema_decay, optim.ema_warmup)
        compute = _loss(stage, net)
        step = TrainStep(compute, optimizer, ema, fnet, (2, 1, 20, 20), torch.device("cpu"))
        losses = []
        for done, (ir, vis) in enumerate(_batches(torch.float32, 3), start=1):
            if use_step:
                step.ir.copy_(ir)
                step.vis.copy_(vis)
                losses.append(step.run(1.0 - ema.decay_at(done)).tolist())
            else:
                terms = compute(ir, vis)
                losses.append([terms.total.item(), *(v.item() for v in terms.parts.values())])
                optimizer.zero_grad(set_to_none=True)
                terms.total.backward()
                optimizer.step()
                ema.update(fnet, done)
        results.append((losses, net.state_dict(), ema.state_dict()))
    (plain_losses, plain_net, plain_ema), (step_losses, step_net, step_ema) = results
    assert plain_losses == step_losses
    for key in plain_net:
        assert torch.equal(plain_net[key], step_net[key]), key
    for key in plain_ema:
        assert torch.equal(plain_ema[key], step_ema[key]), key


def _recorded_run(graph: bool) -> tuple[list[list[float]], dict[str, torch.Tensor], list[str]]:
    """Stage-II steps with the CUDA-specific parts (side-stream warm-up, capture, replay)
    replaced by recorders: the warm-up runs the body, the capture only records, and a replay
    runs the body into the output buffer (what a real replay does)."""
    fnet, net = _stage_models(2, torch.float32)
    optimizer = make_adam(net.parameters(), OptimConfig(), capturable=False)
    ema = ModelEMA(fnet, 0.9)
    runner = TrainStep(
        _loss(2, net), optimizer, ema, fnet, (2, 1, 20, 20), torch.device("cpu"), graph=graph
    )
    events: list[str] = []

    def body() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        return runner._body()

    class Recorded:
        def replay(self) -> None:
            events.append("replay")
            assert runner._out is not None
            runner._out.copy_(body())

    def warm_up() -> torch.Tensor:
        events.append("warm-up")
        return body()

    def capture() -> None:
        events.append("capture")
        runner._graph, runner._out = Recorded(), torch.zeros(4)  # type: ignore[assignment]

    runner._side_stream_step = warm_up  # type: ignore[method-assign]
    runner._capture = capture  # type: ignore[method-assign]
    losses = []
    for ir, vis in _batches(torch.float32, WARMUP_STEPS + 3):
        runner.ir.copy_(ir)
        runner.vis.copy_(vis)
        losses.append(runner.run(0.1).tolist())
    assert runner.captured == graph
    return losses, fnet.state_dict(), events


def test_graph_mode_warms_up_with_real_steps_then_replays_from_the_capture_step() -> None:
    """Graph mode's control flow on the CPU: the first WARMUP_STEPS iterations are real steps,
    the next one captures and is replayed at once, later ones only replay (tests/test_cuda.py
    checks a real capture)."""
    eager, eager_weights, none = _recorded_run(graph=False)
    graphed, graphed_weights, events = _recorded_run(graph=True)
    assert none == []
    assert events == ["warm-up"] * WARMUP_STEPS + ["capture"] + ["replay"] * 3
    assert graphed == eager
    for key, value in eager_weights.items():
        assert torch.equal(graphed_weights[key], value), key


def test_channels_last_and_bf16_compute_the_same_step() -> None:
    """NHWC changes only the summation order (checked in float64, where that is ~1e-15); bf16
    autocast changes the rounding (about 1e-2 relative on the loss) and stays finite."""
    runs = {}
    for name, layout, dtype, precision in [
        ("nchw", False, torch.float64, "fp32"),
        ("nhwc", True, torch.float64, "fp32"),
        ("fp32", False, torch.float32, "fp32"),
        ("bf16", False, torch.float32, "bf16"),
    ]:
        fnet, net = _stage_models(1, dtype)
        if layout:
            net.to(memory_format=torch.channels_last)
        optimizer = make_adam(net.parameters(), OptimConfig(), capturable=False)
        ema = ModelEMA(fnet, 0.9)
        step = TrainStep(
            _loss(1, net),
            optimizer,
            ema,
            fnet,
            (2, 1, 20, 20),
            torch.device("cpu"),
            channels_last=layout,
            precision=precision,
        )
        losses = []
        for ir, vis in _batches(dtype, 2):
            step.ir.copy_(ir)
            step.vis.copy_(vis)
            losses.append(step.run(0.1).tolist())
        runs[name] = (losses, fnet.state_dict())
    torch.testing.assert_close(
        torch.tensor(runs["nhwc"][0]), torch.tensor(runs["nchw"][0]), rtol=1e-12, atol=0
    )
    for key, value in runs["nchw"][1].items():
        torch.testing.assert_close(runs["nhwc"][1][key], value, rtol=1e-10, atol=1e-12)
    bf16, fp32 = torch.tensor(runs["bf16"][0]), torch.tensor(runs["fp32"][0])
    assert torch.isfinite(bf16).all()
    torch.testing.assert_close(bf16, fp32, rtol=5e-2, atol=0)


def test_graphs_are_used_only_where_they_can_be_captured() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert "CUDA device" in str(graph_blocker(cpu, 1, OptimConfig()))
    assert "several processes" in str(graph_blocker(cuda, 2, OptimConfig()))
    assert "constant learning rate" in str(graph_blocker(cuda, 1, OptimConfig(warmup=10)))
    assert "constant learning rate" in str(graph_blocker(cuda, 1, OptimConfig(schedule="cosine")))
    assert graph_blocker(cuda, 1, OptimConfig()) is None


def test_cached_and_disk_batches_train_the_same_weights(pairs: Path, tmp_path: Path) -> None:
    extra = ("stages=1", "stage1.iterations=3")
    train(tiny(pairs, tmp_path / "cached", *extra))
    train(tiny(pairs, tmp_path / "disk", *extra, "data.cache=false"))
    assert_same_tensors(
        tmp_path / "cached" / "fnet_stage1.safetensors",
        tmp_path / "disk" / "fnet_stage1.safetensors",
    )


def test_time_box_saves_the_state_and_the_resumed_run_is_the_straight_one(
    pairs: Path, tmp_path: Path
) -> None:
    extra = ("stage1.iterations=3", "stage2.iterations=2", "log.checkpoint_every=100")
    straight = tmp_path / "straight"
    train(tiny(pairs, straight, *extra))
    boxed = tmp_path / "boxed"
    with pytest.raises(TimeBoxReached, match=r"time box of 1e-09 min reached: stage I saved at"):
        train(tiny(pairs, boxed, *extra, "max_minutes=1e-9"))
    assert load_train_state(boxed / "state" / "stage1.safetensors").step == 1
    train(tiny(pairs, boxed, *extra, "max_minutes=0"), resume=True)
    assert_same_tensors(straight / "fnet.safetensors", boxed / "fnet.safetensors")
    for stage in (1, 2):
        name = f"state/stage{stage}.safetensors"
        assert_same_tensors(straight / name, boxed / name, skip=("rng/",))
    assert [r["step"] for r in log_rows(boxed)] == ["1", "2", "3", "1", "2"]


def test_time_box_from_the_command_line_exits_75_and_resumes(pairs: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    sets = [arg for item in TINY for arg in ("--set", item)]
    args = ["train", "--data", str(pairs), "--out", str(out), "--iterations", "2", *sets]
    boxed = CliRunner().invoke(app, [*args, "--max-minutes", "0.000001"])
    assert boxed.exit_code == 75, boxed.output
    assert "time box of 1e-06 min reached" in boxed.output and "--resume" in boxed.output
    assert load_train_state(out / "state" / "stage1.safetensors").step == 1
    resumed = CliRunner().invoke(
        app, ["train", "--out", str(out), "--resume", "--max-minutes", "0"]
    )
    assert resumed.exit_code == 0, resumed.output
    assert "max_minutes: 1e-06 -> 0.0" in resumed.output
    _, info = load_fnet(out / "fnet.safetensors")
    execution = info.metadata["training"]["stage2"]["execution"]
    assert execution["device"] == "cpu" and execution["cuda_graph"] is False
    assert execution["tf32_convolutions"] is False and execution["data_on_device"] is True
    saved = (out / "config.toml").read_text()
    assert "[speed]" in saved and "cuda_graph = true" in saved
    assert json.loads(json.dumps(execution)) == execution


def test_gpu_config_is_the_paper_recipe_on_the_carried_pairs() -> None:
    """configs/gpu.toml (the paper's recipe on one GPU) differs from the paper's recipe only in
    where the data are, the device, the run folder and how often it logs."""
    repo = Path(__file__).resolve().parents[1]
    assert differences(TrainConfig(), load_config(repo / "configs" / "gpu.toml")) == [
        "data.folders: [] -> ['.gpu_carry/data/MSRS_train', '.gpu_carry/data/RoadScene_train']",
        "device: 'cpu' -> 'cuda'",
        "log.checkpoint_every: 500 -> 2000",
        "log.log_every: 10 -> 50",
        "log.tensorboard: True -> False",
        "out: 'runs/fnet' -> 'runs_gpu/paper'",
    ]
    paper = load_config(repo / "configs" / "default.toml")
    assert paper.speed == TrainConfig().speed and paper.max_minutes == 0.0


def test_clip_norm_bounds_the_gradient_adam_steps_with() -> None:
    torch.manual_seed(0)
    fnet = FNet(ModelConfig(filters=4, kernel_size=3, iterations=2))
    optimizer = make_adam(fnet.parameters(), OptimConfig(), capturable=False)
    norms: list[float] = []

    def record(*_: object) -> None:
        grads = [p.grad for p in fnet.parameters() if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

    optimizer.register_step_pre_hook(record)

    def loss(ir: torch.Tensor, vis: torch.Tensor) -> LossTerms:
        return stage_two_loss(ir, vis, fnet(ir, vis))

    for clip in (0.0, 1e-3):
        step = TrainStep(
            loss,
            optimizer,
            ModelEMA(fnet, 0.9),
            fnet,
            (2, 1, 16, 16),
            torch.device("cpu"),
            clip_norm=clip,
        )
        step.ir.copy_(torch.rand(2, 1, 16, 16))
        step.vis.copy_(torch.rand(2, 1, 16, 16))
        step.run(0.1)
    unclipped, clipped = norms
    assert unclipped > 1e-2  # the loss's gradient is far larger than the bound
    assert clipped == pytest.approx(1e-3, rel=1e-4)


class _Notes(SilentReporter):
    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)


def test_the_convolution_form_is_recorded_and_a_resume_in_another_says_so(
    pairs: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    train(tiny(pairs, out, "stages=1", "stage1.iterations=2", "speed.conv=native"))
    assert load_train_state(out / "state" / "stage1.safetensors").info["execution"]["conv"] == (
        "native"
    )
    shown = _Notes()
    resumed = tiny(pairs, out, "stages=1", "stage1.iterations=3", "speed.conv=auto")
    train(resumed, resume=True, reporter=shown)
    assert any("speed.conv=native and resumes with tap" in note for note in shown.notes)
    _, info = load_fnet(out / "fnet_stage1.safetensors")
    assert info.metadata["training"]["stage1"]["execution"]["conv"] == "tap"
