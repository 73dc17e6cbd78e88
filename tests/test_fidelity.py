"""The published implementation's own outputs, reproduced through `fnet-deploy fuse`."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from fnet_deploy.cli import app
from tests.conftest import shared_path

CASES = [
    ("TNO/19.png", "TNO/ir/19.png", "TNO/vi/19.png"),
    ("RoadScene/FLIR_00211.png", "RoadScene/ir/FLIR_00211.jpg", "RoadScene/vi/FLIR_00211.jpg"),
    ("MRI_CT/11.png", "MRI_CT/MRI/11.png", "MRI_CT/CT/11.png"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("reference", "ir", "vis"), CASES, ids=[c[0] for c in CASES])
def test_fuse_matches_the_authors_outputs(
    tmp_path: Path, official_weights: Path, reference: str, ir: str, vis: str
) -> None:
    ref = cv2.imread(str(shared_path("reference", reference)), cv2.IMREAD_UNCHANGED)
    out = tmp_path / "fused.png"
    result = CliRunner().invoke(
        app,
        [
            "fuse",
            "--ir",
            str(shared_path("data", ir)),
            "--vis",
            str(shared_path("data", vis)),
            "--out",
            str(out),
            "--weights",
            str(official_weights),
            "--color",
            "gray",
        ],
    )
    assert result.exit_code == 0, result.output
    fused = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert fused.shape == ref.shape
    diff = np.abs(fused.astype(np.int16) - ref.astype(np.int16))
    assert diff.max() <= 1, f"max difference {diff.max()} grey levels"
    assert (diff > 0).mean() < 0.001
