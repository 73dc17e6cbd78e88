"""Deploy form: exact conversion of the training form (folded scalars, merged convolutions)."""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest
import torch

from fnet_deploy.assets import sample_pair
from fnet_deploy.model import FNet, ModelConfig
from fnet_deploy.model.deploy import DeployOptions, FoldedThreshold, to_deploy
from fnet_deploy.model.threshold import smooth_l0, soft_l1
from tests.conftest import fixture_path
from tests.precision import assert_float32_accurate, float32_and_float64_runs

OPTIONS = [
    DeployOptions(),
    DeployOptions(merge_encoders=True),
    DeployOptions(col2im=True),
    DeployOptions(col2im=True, exp_gate=True),
]
OPTION_IDS = ["default", "merged-encoders", "col2im", "col2im-exp-gate"]


def randomized(config: ModelConfig, seed: int) -> FNet:
    """A small FNet with random convolutions and random (valid) learned scalars."""
    torch.manual_seed(seed)
    model = FNet(config)
    with torch.no_grad():
        for block in (model.unique_ir, model.unique_vis, model.common):
            block.w_theta.uniform_(-0.8, -0.2)
            block.b_theta.uniform_(-2.5, -1.5)
            block.w_rho.uniform_(0.2, 1.0)
            block.b_rho.uniform_(-0.5, 0.5)
    return model.eval()


def real_crop(size: int, top: int = 100, left: int = 180) -> tuple[torch.Tensor, torch.Tensor]:
    """A real IR / visible-grey crop of RoadScene FLIR_00211 as 1 x 1 x size x size tensors."""
    ir_path, vis_path = sample_pair()
    ir = cv2.imread(str(ir_path), cv2.IMREAD_GRAYSCALE)
    vis = cv2.imread(str(vis_path), cv2.IMREAD_GRAYSCALE)
    crop = np.s_[top : top + size, left : left + size]
    return (
        torch.from_numpy(ir[crop].astype(np.float32) / 255.0)[None, None],
        torch.from_numpy(vis[crop].astype(np.float32) / 255.0)[None, None],
    )


@pytest.mark.parametrize("iterations", [1, 2, 3])
@pytest.mark.parametrize("threshold", ["l0", "l1"])
@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
def test_conversion_is_exact_in_float64(
    iterations: int, threshold: str, options: DeployOptions
) -> None:
    config = ModelConfig(filters=4, kernel_size=3, iterations=iterations, threshold=threshold)  # type: ignore[arg-type]
    model = randomized(config, seed=iterations).double()
    ir, vis = torch.rand(2, 1, 23, 31, dtype=torch.float64).unbind(0)
    ir, vis = ir[None], vis[None]
    with torch.no_grad():
        expected = model(ir, vis)
        actual = to_deploy(model, options)(ir, vis)
    assert actual.dtype == torch.float64
    assert torch.allclose(actual, expected, rtol=0, atol=1e-12)


def test_published_model_has_30_convolutions_with_the_same_weights_count() -> None:
    model = FNet()
    conv_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) == 62
    for options in OPTIONS:
        deploy = to_deploy(model, options)
        assert deploy.convolution_count() == 30
        assert sum(p.numel() for p in deploy.parameters()) == conv_weights == 419_904


def test_conversion_leaves_the_model_alone_and_freezes_the_deploy_form() -> None:
    model = randomized(ModelConfig(filters=4, kernel_size=3, iterations=2), seed=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    deploy = to_deploy(model, dtype=torch.float16)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not deploy.training
    assert all(p.dtype == torch.float16 and not p.requires_grad for p in deploy.parameters())


@pytest.mark.parametrize("kind", ["l0", "l1"])
def test_folded_threshold_matches_the_threshold_functions(kind: str) -> None:
    config = ModelConfig(threshold=kind)  # type: ignore[arg-type]
    x = torch.linspace(-1.5, 1.5, 20001, dtype=torch.float64)
    theta = torch.tensor(0.137, dtype=torch.float64)
    folded = FoldedThreshold.fold(config, theta.item())(x)
    expected = smooth_l0(x, theta) if kind == "l0" else soft_l1(x, theta)
    assert torch.allclose(folded, expected.double(), rtol=0, atol=1e-15)


def test_folded_threshold_is_finite_in_float16_for_extreme_inputs() -> None:
    x = torch.tensor([-60000.0, -1.0, -1e-4, 0.0, 1e-4, 0.2, 1.0, 60000.0], dtype=torch.float16)
    y = FoldedThreshold.fold(ModelConfig(), 0.1)(x)
    assert bool(torch.isfinite(y).all())
    assert y[3] == 0 and y[6] > 0.98 and y[1] < -0.98


@pytest.mark.slow
def test_deploy_form_matches_the_trained_model_on_a_real_crop(default_model: FNet) -> None:
    ir, vis = real_crop(40)
    model64 = copy.deepcopy(default_model).double()
    with torch.no_grad():
        reference64 = model64(ir.double(), vis.double())
        deploy64 = to_deploy(model64)(ir.double(), vis.double())
        training32 = default_model(ir, vis)
        deploy32 = to_deploy(default_model)(ir, vis)
    assert (deploy64 - reference64).abs().max() < 1e-12
    # Float32 rounding, amplified by the gamma = 100 gate, moves both float32 forms about the
    # same distance from the float64 result: the rewrite adds no error of its own.
    assert_float32_accurate(deploy32, reference64, training32, "deploy form")
    deploy_error = (deploy32.double() - reference64).abs()
    training_error = (training32.double() - reference64).abs()
    assert deploy_error.mean() < 2 * training_error.mean()


@pytest.mark.slow
def test_deploy_form_matches_the_trained_model_on_a_dark_medical_image(
    default_model: FNet,
) -> None:
    # Black background and the skull's edge of MRI_CT 11 (64 x 96): the case where gates of
    # codes near their thresholds make float32 runs of exact forms differ by 1e-4 and more,
    # depending on threads. A float64 run of the full 256 x 256 image costs 35 s here.
    crop = np.s_[96:160, 0:96]
    ir = cv2.imread(str(fixture_path("MRI_CT", "MRI", "11.png")), cv2.IMREAD_GRAYSCALE)[crop]
    vis = cv2.imread(str(fixture_path("MRI_CT", "CT", "11.png")), cv2.IMREAD_GRAYSCALE)[crop]
    ir_t = torch.from_numpy(ir.astype(np.float32) / 255.0)[None, None]
    vis_t = torch.from_numpy(vis.astype(np.float32) / 255.0)[None, None]
    with torch.no_grad():
        actual = to_deploy(default_model, DeployOptions(True, True))(ir_t, vis_t)
    expected, reference64 = float32_and_float64_runs(default_model, ir_t, vis_t)
    assert actual.shape == (1, 1, 64, 96)
    assert_float32_accurate(actual, reference64, expected, "deploy form, merged + col2im")
