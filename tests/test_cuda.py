"""The CUDA path: the torch runner in fp32 / fp16, the deploy form, training, CUDA graphs.

Every comparison is against a float64 reference computed on the CPU, with a bound derived from
what float32 on the CPU itself achieves against that reference (or from the unit roundoff of
float16), never a fixed tolerance measured once. TF32 is switched off where float32 is compared
(it is a deliberate 10-bit-mantissa mode, recorded in training metadata, not a float32 result).

Skipped, with the reason, where torch sees no CUDA device; ``benchmarks/gpu_window.sh`` runs
them first thing on a lent GPU.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from fnet_deploy.assets import sample_pair
from fnet_deploy.backends.torch_runner import Precision, TorchRunner
from fnet_deploy.cuda_math import tf32_convolutions
from fnet_deploy.errors import FnetError
from fnet_deploy.model import FNet, IFNet, load_fnet
from fnet_deploy.model.deploy import to_deploy
from fnet_deploy.training.config import OptimConfig, load_config
from fnet_deploy.training.dataset import load_pair
from fnet_deploy.training.ema import ModelEMA
from fnet_deploy.training.losses import LossTerms, stage_one_loss
from fnet_deploy.training.stage import InverseFusion
from fnet_deploy.training.step import WARMUP_STEPS, TrainStep, make_adam
from fnet_deploy.training.trainer import train
from tests.conftest import FIXTURES
from tests.test_train import Signaller, log_rows

CUDA = torch.cuda.is_available()
cuda_only = pytest.mark.skipif(
    not CUDA, reason="needs a CUDA device (torch.cuda.is_available() is False)"
)
FP16_UNIT = 2.0**-11
"""Unit roundoff of float16 and of TF32 (both keep a 10-bit mantissa)."""


@pytest.fixture
def exact_cuda() -> Iterator[None]:
    """IEEE float32 convolutions and deterministic cuDNN algorithms for the block."""
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    with tf32_convolutions(False):
        yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


def _rel(out: np.ndarray | torch.Tensor, ref: np.ndarray | torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64."""
    a = torch.as_tensor(out).double().cpu()
    b = torch.as_tensor(ref).double().cpu()
    return float((a - b).norm() / b.norm())


def _real_batch(batch: int = 2, height: int = 96, width: int = 128) -> dict[str, np.ndarray]:
    """Crops of the shipped RoadScene pair (301 x 496), B x 1 x H x W float32 in [0, 1]."""
    ir, vis = load_pair(*sample_pair())
    windows = [(100 + 40 * i, 150 + 60 * i) for i in range(batch)]
    crop = {
        "ir": np.stack([ir[t : t + height, x : x + width] for t, x in windows]),
        "vis": np.stack([vis[t : t + height, x : x + width] for t, x in windows]),
    }
    return {name: np.ascontiguousarray(value[:, None]) for name, value in crop.items()}


def test_cuda_graphs_are_refused_off_cuda(default_model: FNet) -> None:
    runner = TorchRunner(default_model, "cpu", cuda_graph=True)
    with pytest.raises(FnetError, match="CUDA graphs need a CUDA device"):
        runner.activate()


@cuda_only
@pytest.mark.usefixtures("exact_cuda")
def test_runner_and_deploy_form_on_cuda_against_float64(default_model: FNet) -> None:
    feed = _real_batch()
    with torch.no_grad():
        ref = copy.deepcopy(default_model).double()(
            torch.from_numpy(feed["ir"]).double(), torch.from_numpy(feed["vis"]).double()
        )
    outputs: dict[str, np.ndarray] = {}
    cases: list[tuple[str, bool, str, Precision, bool]] = [
        ("cpu32", False, "cpu", "fp32", False),
        ("cpu32-deploy", True, "cpu", "fp32", False),
        ("cuda32", False, "cuda", "fp32", False),
        ("cuda32-deploy", True, "cuda", "fp32", False),
        ("cuda32-deploy-graph", True, "cuda", "fp32", True),
        ("cuda16", False, "cuda", "fp16", False),
        ("cuda16-deploy", True, "cuda", "fp16", False),
    ]
    for name, deploy, device, precision, graph in cases:
        model = copy.deepcopy(default_model).float()
        form = to_deploy(model) if deploy else model
        with TorchRunner(form, device, precision, cuda_graph=graph) as runner:
            outputs[name] = runner.infer(feed)["fused"]
            if graph:  # a second, different input through the same graph: no stale output
                other = {"ir": feed["vis"].copy(), "vis": feed["ir"].copy()}
                outputs["graph-swapped"] = runner.infer(other)["fused"]
    errors = {name: _rel(out, ref) for name, out in outputs.items() if name != "graph-swapped"}
    cpu = max(errors["cpu32"], errors["cpu32-deploy"], 2.0**-24)
    for name in ("cuda32", "cuda32-deploy", "cuda32-deploy-graph"):
        assert errors[name] <= 10 * cpu, (name, errors)
    for name in ("cuda16", "cuda16-deploy"):
        assert errors[name] <= 8 * FP16_UNIT, (name, errors)
    np.testing.assert_array_equal(outputs["cuda32-deploy-graph"], outputs["cuda32-deploy"])
    with TorchRunner(to_deploy(copy.deepcopy(default_model).float()), "cuda") as eager:
        swapped = eager.infer({"ir": feed["vis"].copy(), "vis": feed["ir"].copy()})["fused"]
    np.testing.assert_array_equal(outputs["graph-swapped"], swapped)


def _train_losses(
    device: str, dtype: torch.dtype, steps: int, graph: bool = False, capturable: bool = False
) -> tuple[list[float], dict[str, torch.Tensor]]:
    """Losses of ``steps`` full-size stage-I iterations on real 64 x 96 crops (the two
    modalities swapped every other step, the moving-average weight changing every step), and
    the trained weights with the moving average (keys ``ema.*``). A graph needs Adam's
    ``capturable`` form, which rounds its bias correction differently from the host form."""
    torch.manual_seed(7)
    fnet = FNet().to(device, dtype)
    net = InverseFusion(fnet, IFNet().to(device, dtype))
    optimizer = make_adam(net.parameters(), OptimConfig(), capturable=graph or capturable)
    ema = ModelEMA(fnet, 0.999)

    def compute(ir: torch.Tensor, vis: torch.Tensor) -> LossTerms:
        ir_hat, vis_hat = net(ir, vis)
        return stage_one_loss(ir, vis, ir_hat, vis_hat)

    feed = _real_batch(1, 64, 96)
    shape = (1, 1, 64, 96)
    runner = TrainStep(compute, optimizer, ema, fnet, shape, torch.device(device), graph=graph)
    losses = []
    for step in range(steps):
        flip = step % 2 == 1
        ir, vis = (torch.from_numpy(feed[k]) for k in (("vis", "ir") if flip else ("ir", "vis")))
        runner.ir.copy_(ir)
        runner.vis.copy_(vis)
        losses.append(runner.run(1.0 / (step + 2))[0].item())
    runner.close()
    weights = net.state_dict() | {f"ema.{k}": v for k, v in ema.state_dict().items()}
    return losses, {k: v.detach().cpu() for k, v in weights.items()}


@cuda_only
@pytest.mark.usefixtures("exact_cuda")
def test_training_iterations_on_cuda_match_the_cpu_run() -> None:
    steps = 3
    ref, _ = _train_losses("cpu", torch.float64, steps)
    cpu32, _ = _train_losses("cpu", torch.float32, steps)
    cuda32, _ = _train_losses("cuda", torch.float32, steps)
    cuda64, _ = _train_losses("cuda", torch.float64, steps)
    cpu_error = max(max(abs(a - b) / abs(b) for a, b in zip(cpu32, ref, strict=True)), 2.0**-24)
    for a, b in zip(cuda32, ref, strict=True):
        assert abs(a - b) / abs(b) <= 10 * cpu_error, (cuda32, cpu32, ref)
    for a, b in zip(cuda64, ref, strict=True):
        assert abs(a - b) / abs(b) <= 1e3 * 2.0**-53, (cuda64, ref)


@cuda_only
@pytest.mark.usefixtures("exact_cuda")
def test_cuda_graph_step_equals_the_eager_step() -> None:
    """Warm-up, capture, replays: the same kernels on the same data as the eager step.

    Bit for bit, because every kernel of the stage-I step is deterministic here: cuDNN's
    deterministic algorithms with autotuning off (``exact_cuda``, the same choice eager and
    captured), reductions without atomics, and the replicated Sobel border built from slices
    (``F.pad``'s replicate backward would add with atomics). A stale input buffer, gradients
    accumulated across replays or a moving-average weight fixed at capture would all differ.
    """
    steps = WARMUP_STEPS + 3
    eager_losses, eager_weights = _train_losses("cuda", torch.float32, steps, capturable=True)
    graph_losses, graph_weights = _train_losses("cuda", torch.float32, steps, graph=True)
    assert graph_losses == eager_losses
    for key, value in eager_weights.items():
        assert torch.equal(graph_weights[key], value), key


@cuda_only
def test_trainer_on_cuda_captures_the_step_and_resumes(tmp_path: Path) -> None:
    extra = [
        f"data.folders=[{json.dumps(str(FIXTURES / 'MSRS_train'))}]",
        "device=cuda",
        "data.crop=64",
        "data.batch_size=4",
        "stages=1",
        "stage1.iterations=8",
        "log.tensorboard=false",
        "log.plot=false",
        "log.checkpoint_every=100",
    ]
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(load_config(None, [*extra, f"out={json.dumps(str(straight))}"]))
    config = load_config(None, [*extra, f"out={json.dumps(str(split))}"])
    with pytest.raises(FnetError, match="saved at iteration 5 of 8"):
        train(config, reporter=Signaller(1, 5))
    train(config, resume=True)
    for run in (straight, split):
        _, info = load_fnet(run / "fnet_stage1.safetensors")
        execution = info.metadata["training"]["stage1"]["execution"]
        assert execution["cuda_graph"] is True and execution["tf32_convolutions"] is True
    # The resumed run follows the same sample stream; with TF32 (10-bit mantissa) and cuDNN's
    # autotuned algorithms its rounding differs, so the losses agree to TF32's unit roundoff.
    straight_rows, split_rows = log_rows(straight), log_rows(split)
    assert [r["step"] for r in split_rows] == [str(i) for i in range(1, 9)]
    for a, b in zip(straight_rows, split_rows, strict=True):
        assert abs(float(a["loss"]) - float(b["loss"])) <= 8 * FP16_UNIT * float(a["loss"])
