"""The CUDA path: the torch runner in fp32 / fp16, the deploy forms, training, CUDA graphs.

Every float32 comparison goes through :mod:`tests.precision`: a candidate's worst error against
a float64 reference may be at most a few times that of the plain float32 run of the reference
implementation on the same input, measured in the same test (never a fixed tolerance); fp16 is
bounded by its unit roundoff. The full-size model's float64 reference is computed on the GPU
(the CPU's float64 and float32 runs of three full-size training steps took about 400 s on two
cores, far over the 60 s the GPU window gives these tests); that CUDA float64 computes the same
function as the CPU's is checked on a small model, where the CPU runs cost a fraction of a
second. TF32 is switched off where float32 is compared (it is a deliberate 10-bit-mantissa
mode, recorded in training metadata, not a float32 result).

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
from fnet_deploy.backends.cuda_math import tf32_convolutions
from fnet_deploy.backends.torch_runner import Precision, TorchRunner
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.model import FNet, IFNet, ModelConfig, load_fnet
from fnet_deploy.model.deploy import DeployOptions, to_deploy
from fnet_deploy.model.tap_conv import ConvForm, set_conv_form
from fnet_deploy.training.config import OptimConfig, load_config
from fnet_deploy.training.dataset import load_pair
from fnet_deploy.training.ema import ModelEMA
from fnet_deploy.training.losses import LossTerms, stage_one_loss
from fnet_deploy.training.stage import InverseFusion
from fnet_deploy.training.step import WARMUP_STEPS, TrainStep, make_adam
from fnet_deploy.training.trainer import train
from tests.conftest import FIXTURES
from tests.precision import assert_float32_accurate
from tests.test_train import Signaller, log_rows

CUDA = torch.cuda.is_available()
cuda_only = pytest.mark.skipif(
    not CUDA, reason="needs a CUDA device (torch.cuda.is_available() is False)"
)
FP16_UNIT = 2.0**-11
"""Unit roundoff of float16 and of TF32 (both keep a 10-bit mantissa)."""
SMALL = ModelConfig(filters=8, kernel_size=5, iterations=2)
"""A model small enough for float64 and float32 training steps on the CPU within seconds."""


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
def test_runner_and_deploy_forms_on_cuda_against_float64(default_model: FNet) -> None:
    """Every form the GPU window times, against the training form in float64 on the GPU; the
    float32 budget is the plain float32 training form's error on the same batch."""
    feed = _real_batch()
    with torch.no_grad():
        ref = (
            copy.deepcopy(default_model)
            .double()
            .cuda()(*(torch.from_numpy(feed[k]).double().cuda() for k in ("ir", "vis")))
        )
    ref64 = ref.cpu().numpy()
    outputs: dict[str, np.ndarray] = {}
    cases: list[tuple[str, DeployOptions | None, Precision, bool, bool]] = [
        ("training32", None, "fp32", False, False),
        ("deploy32", DeployOptions(), "fp32", False, False),
        ("deploy32-graph", DeployOptions(), "fp32", True, False),
        ("deploy32-nhwc-graph", DeployOptions(), "fp32", True, True),
        ("deploy32-col2im-graph", DeployOptions(col2im=True), "fp32", True, False),
        ("training16", None, "fp16", False, False),
        ("deploy16", DeployOptions(), "fp16", False, False),
    ]
    for name, options, precision, graph, nhwc in cases:
        model = copy.deepcopy(default_model).float()
        form = to_deploy(model, options) if options is not None else model
        with TorchRunner(form, "cuda", precision, cuda_graph=graph, channels_last=nhwc) as runner:
            outputs[name] = runner.infer(feed)["fused"]
            if name == "deploy32-graph":  # a second, different input through the same graph
                other = {"ir": feed["vis"].copy(), "vis": feed["ir"].copy()}
                outputs["graph-swapped"] = runner.infer(other)["fused"]
    for name in ("deploy32", "deploy32-graph", "deploy32-nhwc-graph", "deploy32-col2im-graph"):
        assert_float32_accurate(outputs[name], ref64, outputs["training32"], name)
    for name in ("training16", "deploy16"):
        assert _rel(outputs[name], ref64) <= 8 * FP16_UNIT, (name, _rel(outputs[name], ref64))
    np.testing.assert_array_equal(outputs["deploy32-graph"], outputs["deploy32"])
    with TorchRunner(to_deploy(copy.deepcopy(default_model).float()), "cuda") as eager:
        swapped = eager.infer({"ir": feed["vis"].copy(), "vis": feed["ir"].copy()})["fused"]
    np.testing.assert_array_equal(outputs["graph-swapped"], swapped)


def _train_losses(
    device: str,
    dtype: torch.dtype,
    steps: int,
    *,
    model: ModelConfig | None = None,
    graph: bool = False,
    capturable: bool = False,
    channels_last: bool = False,
    conv_form: ConvForm = "native",
) -> tuple[list[float], dict[str, torch.Tensor]]:
    """Losses of ``steps`` stage-I iterations on real 64 x 96 crops (the two modalities swapped
    every other step, the moving-average weight changing every step), and the trained weights
    with the moving average (keys ``ema.*``). A graph needs Adam's ``capturable`` form, which
    rounds its bias correction differently from the host form. ``model``: the paper's model
    when ``None``; ``channels_last`` and ``conv_form`` as ``speed.channels_last`` and
    ``speed.conv`` set them in the trainer."""
    torch.manual_seed(7)
    config = model or ModelConfig()
    fnet = FNet(config).to(device, dtype)
    net = InverseFusion(fnet, IFNet(config).to(device, dtype))
    set_conv_form(net, conv_form)
    if channels_last:
        # Module.to accepts memory_format at run time; torch's type stubs omit it.
        net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = make_adam(net.parameters(), OptimConfig(), capturable=graph or capturable)
    ema = ModelEMA(fnet, 0.999)

    def compute(ir: torch.Tensor, vis: torch.Tensor) -> LossTerms:
        ir_hat, vis_hat = net(ir, vis)
        return stage_one_loss(ir, vis, ir_hat, vis_hat)

    feed = _real_batch(1, 64, 96)
    shape = (1, 1, 64, 96)
    runner = TrainStep(
        compute,
        optimizer,
        ema,
        fnet,
        shape,
        torch.device(device),
        graph=graph,
        channels_last=channels_last,
    )
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
    """The CPU's training step is the reference implementation: on a small model (the CPU's
    float64 run in a fraction of a second), CUDA float32 is as accurate as float32 on the CPU,
    and CUDA float64 agrees with the CPU's float64 over 1,000 times more closely than float32
    does (or within the budget's floor of 64 float32 epsilons), which makes it the reference of
    the full-size tests below."""
    steps = 3
    ref, _ = _train_losses("cpu", torch.float64, steps, model=SMALL)
    cpu32, _ = _train_losses("cpu", torch.float32, steps, model=SMALL)
    cuda32, _ = _train_losses("cuda", torch.float32, steps, model=SMALL)
    cuda64, _ = _train_losses("cuda", torch.float64, steps, model=SMALL)
    assert_float32_accurate(np.array(cuda32), np.array(ref), np.array(cpu32), "cuda float32")
    assert_float32_accurate(
        np.array(cuda64), np.array(ref), np.array(cpu32), "cuda float64", factor=2.0**-10
    )


@cuda_only
@pytest.mark.usefixtures("exact_cuda")
def test_full_size_training_variants_on_cuda_against_cuda_float64() -> None:
    """The paper's model: the step's layouts and convolution forms that the trainer can choose
    on CUDA (``speed.channels_last``, ``speed.conv``), against the same steps in float64 on the
    GPU; the budget is the plain NCHW float32 step's error."""
    steps = 3
    ref, _ = _train_losses("cuda", torch.float64, steps)
    base, _ = _train_losses("cuda", torch.float32, steps)
    variants: dict[str, tuple[bool, ConvForm]] = {
        "nhwc": (True, "native"),
        "tap": (False, "tap"),
        "tap-nhwc": (True, "tap"),
    }
    for name, (nhwc, form) in variants.items():
        losses, _ = _train_losses("cuda", torch.float32, steps, channels_last=nhwc, conv_form=form)
        assert_float32_accurate(np.array(losses), np.array(ref), np.array(base), name)


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
