"""Training data: pairing, checks, aligned crops and the resumable sample stream."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from fnet_deploy.assets import sample_pair
from fnet_deploy.data.images import read_ir, read_visible
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.training.config import DataConfig
from fnet_deploy.training.dataset import (
    CropStream,
    StepBatches,
    check_scan,
    dihedral,
    scan_pairs,
)
from tests.conftest import fixture_pair


def write_pair(
    folder: Path,
    name: str,
    shape: tuple[int, int] = (24, 28),
    seed: int = 0,
    vis_shape: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Write a random grey IR and colour visible image; return the uint8 arrays written."""
    rng = np.random.default_rng(seed)
    ir = rng.integers(0, 256, shape, dtype=np.uint8)
    vis = rng.integers(0, 256, (*(vis_shape or shape), 3), dtype=np.uint8)
    for sub, image in (("ir", ir), ("vi", vis)):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / sub / f"{name}.png"), image)
    return ir, vis


def test_crops_are_aligned_windows_under_the_same_flip_or_rotation(tmp_path: Path) -> None:
    write_pair(tmp_path / "set", "a", shape=(20, 24), seed=1)
    config = DataConfig(folders=(str(tmp_path / "set"),), crop=16)
    scan = scan_pairs(config)
    ir_src, vis_src = scan.images[0]
    assert ir_src.shape == (20, 24)
    stream = CropStream(scan, crop=16, seed=3, stage=1)
    modes_seen = set()
    for index in range(40):
        ir, vis = stream[index]
        assert ir.shape == vis.shape == (1, 16, 16)
        matches = [
            (top, left, mode)
            for top in range(5)
            for left in range(9)
            for mode in range(8)
            if np.array_equal(dihedral(ir_src[top : top + 16, left : left + 16], mode), ir[0])
        ]
        assert len(matches) == 1
        top, left, mode = matches[0]
        expected_vis = dihedral(vis_src[top : top + 16, left : left + 16], mode)
        assert np.array_equal(expected_vis, vis[0].numpy())
        modes_seen.add(mode)
    assert len(modes_seen) >= 6


def test_dihedral_gives_eight_distinct_transforms() -> None:
    image = np.arange(9.0).reshape(3, 3)
    variants = {dihedral(image, mode).tobytes() for mode in range(8)}
    assert len(variants) == 8


def test_luminance_follows_the_design_conventions(tmp_path: Path) -> None:
    write_pair(tmp_path / "set", "a", seed=2)
    scan = scan_pairs(DataConfig(folders=(str(tmp_path / "set"),), crop=16))
    ir, vis = scan.images[0]
    assert np.array_equal(ir, read_ir(tmp_path / "set" / "ir" / "a.png"))
    assert np.array_equal(vis, read_visible(tmp_path / "set" / "vi" / "a.png", "ycbcr").luma)
    # BT.601 studio range: Y in [16, 235] / 255.
    assert vis.min() >= 16 / 255 - 1e-6 and vis.max() <= 235 / 255 + 1e-6


def test_stream_is_a_function_of_seed_stage_and_index(tmp_path: Path) -> None:
    for i in range(3):
        write_pair(tmp_path / "set", f"p{i}", seed=10 + i)
    config = DataConfig(folders=(str(tmp_path / "set"),), crop=16)
    scan = scan_pairs(config)
    first, again = CropStream(scan, 16, 0, 1), CropStream(scan, 16, 0, 1)
    for index in (0, 5, 2, 5):
        assert all(a.equal(b) for a, b in zip(first[index], again[index], strict=True))
    assert not first[0][0].equal(CropStream(scan, 16, 1, 1)[0][0])
    assert not first[0][0].equal(CropStream(scan, 16, 0, 2)[0][0])
    uncached = scan_pairs(DataConfig(folders=config.folders, crop=16, cache=False))
    assert not uncached.images
    assert CropStream(uncached, 16, 0, 1)[4][1].equal(first[4][1])


def test_every_epoch_visits_every_pair_once(tmp_path: Path) -> None:
    for i in range(5):
        write_pair(tmp_path / "set", f"p{i}", seed=i)
    stream = CropStream(scan_pairs(DataConfig(folders=(str(tmp_path / "set"),), crop=16)), 16, 0, 1)
    epochs = [sorted(stream.pair_index(e * 5 + k) for k in range(5)) for e in range(3)]
    assert epochs == [[0, 1, 2, 3, 4]] * 3
    orders = {tuple(stream.pair_index(e * 5 + k) for k in range(5)) for e in range(6)}
    assert len(orders) > 1


def test_processes_take_disjoint_slices_of_one_stream() -> None:
    single = list(StepBatches(0, 4, batch=6))
    ranks = [list(StepBatches(0, 4, batch=3, rank=r, world=2)) for r in range(2)]
    for step in range(4):
        assert ranks[0][step] + ranks[1][step] == single[step]
    resumed = list(StepBatches(2, 4, batch=3, rank=1, world=2))
    assert resumed == ranks[1][2:]
    assert len(StepBatches(2, 4, batch=3)) == 2


def test_bad_pairs_are_all_named_before_training(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    write_pair(folder, "good", seed=1)
    write_pair(folder, "mismatch", shape=(24, 28), vis_shape=(24, 30), seed=2)
    write_pair(folder, "broken", seed=3)
    (folder / "vi" / "broken.png").write_bytes(b"\x89PNG not really")
    write_pair(folder, "lonely", seed=4)
    (folder / "vi" / "lonely.png").unlink()
    config = DataConfig(folders=(str(folder),), crop=16)
    scan = scan_pairs(config)
    with pytest.raises(FnetError) as caught:
        check_scan(scan, config)
    message = str(caught.value)
    assert "3 bad training pair(s)" in message
    for name in ("set/mismatch", "set/broken", "set/lonely", "data.bad_pairs=skip"):
        assert name in message
    assert "24x30 differs" in message and "cannot decode" in message
    skipping = DataConfig(folders=(str(folder),), crop=16, bad_pairs="skip")
    warnings = check_scan(scan_pairs(skipping), skipping)
    assert len(warnings) == 1 and "set/broken" in warnings[0]
    assert [p.name for p in scan_pairs(skipping).pairs] == ["set/good"]


def test_small_images_are_padded_or_skipped_with_a_message(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    write_pair(folder, "big", shape=(20, 20), seed=1)
    small_ir, _ = write_pair(folder, "small", shape=(12, 30), seed=2)
    padded = DataConfig(folders=(str(folder),), crop=16)
    scan = scan_pairs(padded)
    assert check_scan(scan, padded) == [
        "1 pair(s) mirror-padded to the 16 px crop: set/small (12x30)"
    ]
    ir, _ = scan.images[1]
    assert ir.shape == (16, 30)
    assert np.array_equal(ir[:12], small_ir / np.float32(255))
    assert np.array_equal(ir[12:], ir[11:7:-1])
    skipped = DataConfig(folders=(str(folder),), crop=16, small_images="skip")
    scan = scan_pairs(skipped)
    assert [p.name for p in scan.pairs] == ["set/big"]
    assert "skipped" in check_scan(scan, skipped)[0]
    only_small = DataConfig(folders=(str(folder),), crop=24, small_images="skip")
    with pytest.raises(FnetError, match="no usable training pairs"):
        check_scan(scan_pairs(only_small), only_small)


def test_several_folders_combine(tmp_path: Path) -> None:
    write_pair(tmp_path / "A", "x", seed=1)
    write_pair(tmp_path / "B", "x", seed=2)
    write_pair(tmp_path / "B", "y", seed=3)
    scan = scan_pairs(DataConfig(folders=(str(tmp_path / "A"), str(tmp_path / "B")), crop=16))
    assert [p.name for p in scan.pairs] == ["A/x", "B/x", "B/y"]


def test_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(FnetError, match="nowhere"):
        scan_pairs(DataConfig(folders=(str(tmp_path / "nowhere"),), crop=16))


def test_real_msrs_and_roadscene_pairs(tmp_path: Path) -> None:
    # MSRS: a 128 x 160 PNG crop, IR stored in 3 channels; RoadScene: a whole colour JPEG pair.
    sources = {
        "MSRS_train": ("00001D.png", fixture_pair("MSRS_train", "00001D.png")),
        "RoadScene": ("FLIR_00211.jpg", sample_pair()),
    }
    for dataset, (name, paths) in sources.items():
        for sub, path in zip(("ir", "vi"), paths, strict=True):
            (tmp_path / dataset / sub).mkdir(parents=True)
            shutil.copy(path, tmp_path / dataset / sub / name)
    config = DataConfig(folders=tuple(str(tmp_path / dataset) for dataset in sources), crop=128)
    scan = scan_pairs(config)
    assert check_scan(scan, config) == []
    assert [pair.shape for pair in scan.pairs] == [(128, 160), (301, 496)]
    ir, vis = CropStream(scan, 128, 0, 1)[0]
    assert ir.shape == vis.shape == (1, 128, 128)
    assert float(ir.min()) >= 0.0 and float(vis.max()) <= 1.0
