"""Validation during training: validation.csv, the best weights, held-out pairs, resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fnet_deploy.helpers.errors import InputError
from fnet_deploy.metrics import compute_metrics
from fnet_deploy.model import FNet, load_fnet
from fnet_deploy.training import trainer as trainer_module
from fnet_deploy.training.config import load_config
from fnet_deploy.training.dataset import scan_pairs
from fnet_deploy.training.stopping import TrainingStopped
from fnet_deploy.training.trainer import train
from fnet_deploy.training.validation import (
    SCORE_SCALE,
    VAL_METRICS,
    centre_crop,
    holdout_names,
    load_validation,
    pick_evenly,
    validate,
    validation_score,
)
from tests.conftest import TINY
from tests.test_dataset import write_pair
from tests.test_train import TINY as TINY_RUN

pytestmark = pytest.mark.usefixtures("one_thread")


def _folder(root: Path, name: str, count: int, seed: int = 0) -> Path:
    folder = root / name
    for i in range(count):
        write_pair(folder, f"p{i}", shape=(40, 44), seed=seed + i)
    return folder


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_pick_evenly_and_centre_crop() -> None:
    names = [f"n{i:02d}" for i in range(10)]
    assert pick_evenly(names, 3) == ["n00", "n04", "n09"]  # round(4.5) is 4
    assert pick_evenly(names, 20) == names
    assert pick_evenly(names, 1) == ["n05"]
    image = np.arange(30 * 40, dtype=np.float32).reshape(30, 40)
    crop = centre_crop(image, 10)
    assert crop.shape == (10, 10) and crop[0, 0] == image[10, 15]
    assert centre_crop(image, 64).shape == (30, 40)


def test_score_is_the_mean_ratio_to_the_published_tno_values() -> None:
    published = {name: SCORE_SCALE[name] for name in VAL_METRICS}
    assert validation_score({"a": published}) == pytest.approx(1.0)
    half = {name: value / 2 for name, value in published.items()}
    assert validation_score({"a": published, "b": half}) == pytest.approx(0.75)


def test_validate_scores_each_pair_with_the_package_metrics(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "val", 3)
    sets = load_validation((str(folder),), "ir", "vi", pairs=2, crop=32)
    assert [len(s.pairs) for s in sets] == [2]
    model = FNet(TINY)
    result = validate(model, sets)
    # the same numbers by hand: fuse with the training form, round to 8 bits, score
    rows = []
    for pair in sets[0].pairs:
        with torch.no_grad():
            fused = model(
                torch.from_numpy(pair.ir)[None, None], torch.from_numpy(pair.vis)[None, None]
            )
        fused8 = np.rint(np.clip(fused[0, 0].numpy(), 0, 1) * 255).astype(np.uint8)
        scores = compute_metrics(fused8, pair.ir * 255, pair.vis * 255, "paper", VAL_METRICS)
        rows.append([scores.values[name] for name in VAL_METRICS])
    expected = np.mean(rows, axis=0)
    got = [result.per_set["val"][name] for name in VAL_METRICS]
    # deploy form vs training form in float32: a pixel may round to the other grey level
    np.testing.assert_allclose(got, expected, rtol=0.02)
    assert result.score == pytest.approx(validation_score(result.per_set))


def test_missing_validation_folder_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        load_validation((str(tmp_path / "none"),), "ir", "vi", pairs=2, crop=32)


def test_train_writes_validation_csv_and_keeps_the_best_stage_two_weights(tmp_path: Path) -> None:
    data = _folder(tmp_path, "train", 4)
    val = _folder(tmp_path, "val", 3, seed=10)
    out = tmp_path / "run"
    config = load_config(
        None,
        [
            f"data.folders=[{json.dumps(str(data))}]",
            f"val.folders=[{json.dumps(str(val))}, {json.dumps(str(data))}]",
            f"out={json.dumps(str(out))}",
            *TINY_RUN,
            "stage1.iterations=2",
            "stage2.iterations=4",
            "val.pairs=2",
            "val.crop=32",
            "log.validate_every=2",
        ],
    )
    result = train(config)
    rows = _rows(out / "validation.csv")
    assert list(rows[0]) == [
        "stage",
        "step",
        "set",
        "MI",
        "VIF",
        "Qabf",
        "SSIM",
        "score",
        "seconds",
    ]
    alls = [row for row in rows if row["set"] == "all"]
    assert [(row["stage"], row["step"]) for row in alls] == [("1", "2"), ("2", "2"), ("2", "4")]
    assert {row["set"] for row in rows} == {"val", "train", "all"}
    for row in rows:
        assert all(np.isfinite(float(row[name])) for name in VAL_METRICS)
    best = max((row for row in alls if row["stage"] == "2"), key=lambda r: float(r["score"]))
    _, info = load_fnet(out / "fnet_best.safetensors")
    assert info.metadata["validation"]["step"] == int(best["step"])
    assert info.metadata["validation"]["score"] == pytest.approx(float(best["score"]), rel=1e-5)
    # the two pairs validated from the training folder were not trained on
    held = holdout_names(load_validation((str(data),), "ir", "vi", 2, 32), config.data.folders)
    assert held == {"train/p0", "train/p3"}
    trained = scan_pairs(config.data, exclude=held)
    assert sorted(p.name for p in trained.pairs) == ["train/p1", "train/p2"]
    assert result.steps == {1: 2, 2: 4}


def test_resumed_run_has_no_duplicate_validation_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _folder(tmp_path, "train", 3)
    val = _folder(tmp_path, "val", 2, seed=10)
    out = tmp_path / "run"
    overrides = [
        f"data.folders=[{json.dumps(str(data))}]",
        f"val.folders=[{json.dumps(str(val))}]",
        f"out={json.dumps(str(out))}",
        *TINY_RUN,
        "stages=1",
        "stage1.iterations=4",
        "val.crop=32",
        "log.validate_every=1",
        "log.checkpoint_every=2",
    ]
    calls = {"n": 0}
    real = trainer_module._validate

    def stop_after_third(*args: object, **kwargs: object) -> float:
        calls["n"] += 1
        seconds = real(*args, **kwargs)  # type: ignore[arg-type]
        if calls["n"] == 3:
            raise TrainingStopped("stop for the test", None)
        return seconds

    monkeypatch.setattr(trainer_module, "_validate", stop_after_third)
    with pytest.raises(TrainingStopped):
        train(load_config(None, overrides))
    monkeypatch.setattr(trainer_module, "_validate", real)
    train(load_config(None, overrides), resume=True)
    steps = [row["step"] for row in _rows(out / "validation.csv") if row["set"] == "all"]
    assert steps == ["1", "2", "3", "4"]
