"""Shared fixtures: the real data beside the checkout (skipped cleanly when absent)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test when it is not there."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is missing")
    return path


@pytest.fixture(scope="session")
def official_weights() -> Path:
    """The authors' published checkpoint."""
    return shared_path("weights", "FNet_official.pth")


@pytest.fixture(scope="session")
def official_model(official_weights: Path) -> torch.nn.Module:
    from fnet_deploy.model import load_fnet

    model, _ = load_fnet(official_weights)
    return model


@pytest.fixture
def crop_pair(tmp_path: Path) -> tuple[Path, Path]:
    """A small real IR / colour-visible pair (64 x 80 crop of RoadScene FLIR_00211)."""
    ir = cv2.imread(
        str(shared_path("data", "RoadScene", "ir", "FLIR_00211.jpg")), cv2.IMREAD_GRAYSCALE
    )
    vis = cv2.imread(
        str(shared_path("data", "RoadScene", "vi", "FLIR_00211.jpg")), cv2.IMREAD_COLOR
    )
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
