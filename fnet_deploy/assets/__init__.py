"""Files shipped with the package: sample images (and default weights once trained)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def asset_path(*parts: str) -> Path:
    """Filesystem path of a file under ``fnet_deploy/assets``."""
    return Path(str(resources.files("fnet_deploy").joinpath("assets", *parts)))


def sample_pair() -> tuple[Path, Path]:
    """The shipped (ir, visible) sample image pair."""
    return (
        asset_path("samples", "roadscene_FLIR_00211_ir.jpg"),
        asset_path("samples", "roadscene_FLIR_00211_vis.jpg"),
    )
