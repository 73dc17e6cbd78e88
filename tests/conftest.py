"""Shared fixtures: real images carried by the repository, and the data beside the checkout.

Real pairs come from ``tests/fixtures`` (crops, see its README) and from the package's own assets
(the RoadScene sample pair, the Nato camp frames, the trained default weights), so they are always
there. Only what needs the published checkpoint, the authors' reference outputs or a whole data set
reads ``../shared``, and skips, naming the missing file, when it is absent.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fnet_deploy.assets import asset_path, sample_pair
from fnet_deploy.model import FNet, ModelConfig, load_fnet, save_fnet
from fnet_deploy.model.weights import packaged_weights

SHARED = Path(__file__).resolve().parents[2] / "shared"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
NATO = asset_path("sequences", "nato_camp")
"""Nato camp frames 000002-000013 (360 x 270 grey PNG, the pixels of ../shared's BMP frames)."""
FIRE = FIXTURES / "sequences" / "TNO_DHV_Fire_sequence_part2"
"""Fire frames 000005-000008 (161 x 121 crops; IR grey in 3 channels, visible false colour)."""
TINY = ModelConfig(filters=4, kernel_size=3, iterations=2)

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `pytest -n auto` starts one worker per core: one PyTorch thread each, in the worker and in
    # the CLI processes it starts, so that the workers do not fight over the cores (measured on 2
    # cores: 240 s with the default threads, 195 s with one).
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test when it is not there."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs ../shared: {path} is missing")
    return path


def fixture_path(*parts: str) -> Path:
    """A file under tests/fixtures (laid out as ../shared/data); it must exist."""
    path = FIXTURES.joinpath(*parts)
    assert path.exists(), f"{path} is missing from the repository"
    return path


def fixture_pair(dataset: str, name: str) -> tuple[Path, Path]:
    """The (infrared, visible) files of pair ``name`` under tests/fixtures/``dataset``."""
    return fixture_path(dataset, "ir", name), fixture_path(dataset, "vi", name)


def nato(modality: str, number: int = 5) -> np.ndarray:
    """Nato camp frame ``number`` (2-13) of ``modality`` ("ir" or "vi"): 270 x 360 uint8."""
    return cv2.imread(str(NATO / modality / f"{number:06d}.png"), cv2.IMREAD_GRAYSCALE)


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One cache folder of ONNX exports for the whole session (never the user's ~/.cache)."""
    folder = tmp_path_factory.mktemp("onnx_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FNET_DEPLOY_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="session")
def official_weights() -> Path:
    """The authors' published checkpoint."""
    return shared_path("weights", "FNet_official.pth")


@pytest.fixture(scope="session")
def official_model(official_weights: Path) -> torch.nn.Module:
    model, _ = load_fnet(official_weights)
    return model


@pytest.fixture(scope="session")
def default_weights() -> Path:
    """The package's trained default weights (published architecture, trained by fnet-deploy)."""
    path = packaged_weights()
    assert path is not None, "the package ships assets/fnet_default.safetensors"
    return path


@pytest.fixture(scope="session")
def default_model(default_weights: Path) -> FNet:
    model, _ = load_fnet(default_weights)
    return model


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded random FNet of the ``TINY`` config, for tests of shapes and plumbing only."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_fnet(path, FNet(TINY), provenance="seeded random weights for tests")
    return path


@pytest.fixture
def crop_pair(tmp_path: Path) -> tuple[Path, Path]:
    """A small real IR / colour-visible pair (64 x 80 crop of RoadScene FLIR_00211)."""
    ir_source, vis_source = sample_pair()
    ir = cv2.imread(str(ir_source), cv2.IMREAD_GRAYSCALE)
    vis = cv2.imread(str(vis_source), cv2.IMREAD_COLOR)
    ir_path, vis_path = tmp_path / "ir.png", tmp_path / "vis.png"
    cv2.imwrite(str(ir_path), ir[120:184, 200:280])
    cv2.imwrite(str(vis_path), vis[120:184, 200:280])
    return ir_path, vis_path


def random_images(shape: tuple[int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two smooth random float32 images in [0, 1]."""
    rng = np.random.default_rng(seed)
    a = cv2.GaussianBlur(rng.random(shape, dtype=np.float32), (0, 0), 2.0)
    b = cv2.GaussianBlur(rng.random(shape, dtype=np.float32), (0, 0), 2.0)
    return a, b


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny convolutions run fastest on one thread (and do not fight other jobs for cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
