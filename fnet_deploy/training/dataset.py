"""Training pairs: folders of IR / visible images cut into aligned, augmented random crops.

Every sample is a pure function of ``(seed, stage, sample index)``: which pair (a fresh random
order of all pairs each epoch), where the crop sits and which of the 8 flips/rotations is applied.
So the stream is the same whatever the number of DataLoader workers, a resumed run continues it
exactly, and distributed processes take disjoint slices of it (:class:`StepBatches`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from fnet_deploy.data.images import read_ir, read_visible
from fnet_deploy.data.pairs import pair_folders
from fnet_deploy.helpers.errors import FnetError, InputError
from fnet_deploy.training.config import DataConfig

# Tags that keep the pair-order and crop random streams apart.
_ORDER, _CROP = 0, 1


@dataclass(frozen=True)
class PairRecord:
    """One usable training pair.

    Attributes:
        name: ``<folder name>/<file stem>``.
        ir: infrared image file.
        vis: visible image file.
        shape: (H, W) of both images on disk.
    """

    name: str
    ir: Path
    vis: Path
    shape: tuple[int, int]


@dataclass
class PairScan:
    """What scanning the data folders found.

    Attributes:
        pairs: usable pairs, in folder order then name order.
        bad: ``"<name>: <problem>"`` for each pair that cannot be used (no partner, sizes
            differ, unreadable file).
        small: names of pairs smaller than the crop (padded or skipped per the config).
        images: decoded (ir, vis) arrays per usable pair when caching, else empty.
    """

    pairs: list[PairRecord] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    small: list[str] = field(default_factory=list)
    images: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)


def load_pair(ir_path: Path, vis_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a pair as the network sees it: IR grayscale and visible BT.601 studio-range Y.

    Returns:
        (ir, vis), each H x W float32 in [0, 1].

    Raises:
        InputError: a file cannot be read, or the two sizes differ.
    """
    ir = read_ir(ir_path)
    vis = read_visible(vis_path, "ycbcr").luma
    if ir.shape != vis.shape:
        raise InputError(
            vis_path,
            f"size {vis.shape[0]}x{vis.shape[1]} differs from the IR image's "
            f"{ir.shape[0]}x{ir.shape[1]}",
        )
    return ir, vis


def pad_to(image: np.ndarray, size: int) -> np.ndarray:
    """Mirror-pad an H x W image on the bottom/right so both sides are at least ``size``."""
    pad_h, pad_w = max(0, size - image.shape[0]), max(0, size - image.shape[1])
    if not pad_h and not pad_w:
        return image
    return np.pad(image, ((0, pad_h), (0, pad_w)), mode="symmetric")


def scan_pairs(config: DataConfig, exclude: frozenset[str] = frozenset()) -> PairScan:
    """Pair, read and check every image of ``config.folders``, leaving out the pairs named in
    ``exclude`` (``<folder name>/<file stem>``: validation pairs held out).

    Raises:
        InputError: a data folder or its ir/vi sub-folder is missing or has no images.
    """
    scan = PairScan()
    for folder in map(Path, config.folders):
        listing = pair_folders(folder / config.ir_dir, folder / config.vis_dir)
        prefix = folder.name
        for name in listing.only_ir:
            scan.bad.append(f"{prefix}/{name}: no visible image of that name")
        for name in listing.only_vis:
            scan.bad.append(f"{prefix}/{name}: no IR image of that name")
        for pair in listing.pairs:
            name = f"{prefix}/{pair.name}"
            if name in exclude:
                continue
            try:
                ir, vis = load_pair(pair.ir, pair.vis)
            except InputError as err:
                scan.bad.append(f"{name}: {err}")
                continue
            shape = (int(ir.shape[0]), int(ir.shape[1]))
            if min(shape) < config.crop:
                scan.small.append(f"{name} ({shape[0]}x{shape[1]})")
                if config.small_images == "skip":
                    continue
            scan.pairs.append(PairRecord(name, pair.ir, pair.vis, shape))
            if config.cache:
                scan.images.append((pad_to(ir, config.crop), pad_to(vis, config.crop)))
    return scan


def check_scan(scan: PairScan, config: DataConfig) -> list[str]:
    """Decide whether training can start; return the warnings to show before it does.

    Raises:
        FnetError: bad pairs under ``bad_pairs = "error"`` (all named), or no usable pair.
    """
    warnings = []
    if scan.bad:
        listed = "; ".join(scan.bad)
        if config.bad_pairs == "error":
            raise FnetError(
                f"{len(scan.bad)} bad training pair(s): {listed} "
                "(fix them, or pass --set data.bad_pairs=skip to train without them)"
            )
        warnings.append(f"skipping {len(scan.bad)} bad pair(s): {listed}")
    if scan.small:
        action = "mirror-padded to" if config.small_images == "pad" else "skipped, smaller than"
        warnings.append(
            f"{len(scan.small)} pair(s) {action} the {config.crop} px crop: {', '.join(scan.small)}"
        )
    if not scan.pairs:
        raise FnetError(
            f"no usable training pairs in {', '.join(config.folders) or '(no folders)'}"
        )
    return warnings


def dihedral(image: np.ndarray, mode: int) -> np.ndarray:
    """One of the 8 flips/rotations of a square image: rotate by ``mode % 4`` quarter turns,
    then flip left-right when ``mode >= 4``."""
    out = np.rot90(image, mode % 4)
    return out[:, ::-1] if mode >= 4 else out


class CropStream(Dataset[tuple[Tensor, Tensor]]):
    """Aligned random crops of the training pairs, indexed by global sample number.

    Item ``i`` is ``(ir, vis)``, each 1 x crop x crop float32 in [0, 1]: pair number
    ``perm_e[i mod n]`` (``perm_e`` a random order of the n pairs for epoch ``e = i // n``),
    cropped at a random window and put through a random one of the 8 flips/rotations, the same
    window and transform for both images.

    Args:
        scan: the usable pairs (and their cached images, if any).
        crop: crop edge in pixels.
        seed: run seed (>= 0).
        stage: training stage; each stage draws its own stream.
    """

    def __init__(self, scan: PairScan, crop: int, seed: int, stage: int) -> None:
        self.pairs = scan.pairs
        self.images = scan.images
        self.crop = crop
        self.seed = seed
        self.stage = stage
        self._order: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.pairs)

    def pair_index(self, index: int) -> int:
        """Which pair sample ``index`` is cut from."""
        epoch, position = divmod(index, len(self.pairs))
        if self._order is None or self._order[0] != epoch:
            rng = np.random.default_rng([self.seed, self.stage, _ORDER, epoch])
            self._order = (epoch, rng.permutation(len(self.pairs)))
        return int(self._order[1][position])

    def sample(self, index: int) -> tuple[int, int, int, int]:
        """``(pair, top, left, mode)`` of sample ``index``: the pair, the crop window's corner in
        the (mirror-padded) pair and the flip/rotation (:func:`dihedral`); no image is read."""
        pair = self.pair_index(index)
        height, width = (max(side, self.crop) for side in self.pairs[pair].shape)
        rng = np.random.default_rng([self.seed, self.stage, _CROP, index])
        top = int(rng.integers(0, height - self.crop + 1))
        left = int(rng.integers(0, width - self.crop + 1))
        return pair, top, left, int(rng.integers(0, 8))

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        pair, top, left, mode = self.sample(index)
        if self.images:
            ir, vis = self.images[pair]
        else:
            record = self.pairs[pair]
            ir, vis = (pad_to(a, self.crop) for a in load_pair(record.ir, record.vis))
        window = (slice(top, top + self.crop), slice(left, left + self.crop))
        return _tensor(dihedral(ir[window], mode)), _tensor(dihedral(vis[window], mode))


def _tensor(image: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]


class StepBatches(Sampler[list[int]]):
    """Batches of global sample indices for one process, from ``start`` to ``end`` (steps).

    At step s, process r of w takes samples ``s*b*w + r*b`` ... ``s*b*w + r*b + b - 1``: the
    processes share one sample stream without overlap, and resuming at step s continues it.
    """

    def __init__(self, start: int, end: int, batch: int, rank: int = 0, world: int = 1) -> None:
        self.start, self.end, self.batch, self.rank, self.world = start, end, batch, rank, world

    def __len__(self) -> int:
        return max(0, self.end - self.start)

    def indices(self, step: int) -> list[int]:
        """The global sample indices this process trains on at ``step``."""
        base = (step * self.world + self.rank) * self.batch
        return list(range(base, base + self.batch))

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.end):
            yield self.indices(step)


def folder_names(folders: Sequence[str]) -> list[str]:
    """Short names of the data folders, for logs and weights metadata."""
    return [Path(folder).name for folder in folders]
