"""Pairing two folders of images by file name (stem), reporting what has no partner."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fnet_deploy.data.images import IMAGE_SUFFIXES
from fnet_deploy.helpers.errors import InputError


@dataclass
class Pair:
    """One pair of images that share a file stem."""

    name: str
    ir: Path
    vis: Path


@dataclass
class PairListing:
    """Pairs found in two folders plus the names present in only one of them."""

    pairs: list[Pair]
    only_ir: list[str] = field(default_factory=list)
    only_vis: list[str] = field(default_factory=list)

    def unpaired_message(self) -> str | None:
        """One line naming every unpaired file, or ``None`` when all files are paired."""
        parts = []
        if self.only_ir:
            parts.append(f"no visible partner for {', '.join(self.only_ir)}")
        if self.only_vis:
            parts.append(f"no IR partner for {', '.join(self.only_vis)}")
        return "; ".join(parts) or None


def list_images(folder: str | Path) -> dict[str, Path]:
    """Image files directly in ``folder``, keyed by stem (sorted by name; hidden files skipped).

    Raises:
        InputError: the folder is missing or a file, or two images share a stem (``a.png`` and
            ``a.jpg``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        if folder.exists():
            raise InputError(folder, "is a file, expected a folder of images")
        raise InputError(folder, "folder not found")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        hidden = path.name.startswith(".")
        if hidden or not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem in found:
            raise InputError(
                path, f"two images share the name '{path.stem}' ({found[path.stem].name})"
            )
        found[path.stem] = path
    return found


def pair_folders(ir_dir: str | Path, vis_dir: str | Path) -> PairListing:
    """Pair the images of ``ir_dir`` and ``vis_dir`` by stem.

    Raises:
        InputError: a folder is missing, or contains no images at all.
    """
    ir, vis = list_images(ir_dir), list_images(vis_dir)
    for folder, images in ((ir_dir, ir), (vis_dir, vis)):
        if not images:
            raise InputError(folder, "no images found (expected .png, .jpg, .bmp or .tif files)")
    common = sorted(ir.keys() & vis.keys())
    return PairListing(
        pairs=[Pair(name, ir[name], vis[name]) for name in common],
        only_ir=sorted(ir.keys() - vis.keys()),
        only_vis=sorted(vis.keys() - ir.keys()),
    )
