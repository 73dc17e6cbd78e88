"""Many pairs in one ``stream`` run: setup linear in the number of pairs, a batch size that keeps
a stop short and fits the memory, decided before any work."""

from __future__ import annotations

import pathlib
from pathlib import Path
from typing import Any

import pytest

from fnet_deploy.commands import stream_run
from fnet_deploy.commands.pair_specs import PairSpec, read_pairs
from fnet_deploy.commands.stream_run import DEFAULT_MAX_BATCH, StreamPlan, max_batch_for
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.inference.select import ModelChoice
from fnet_deploy.model.config import ModelConfig
from fnet_deploy.model.cost import inference_bytes
from fnet_deploy.runtime.multi import BatchOptions
from tests.conftest import NATO

DEFAULTS: dict[str, Any] = {
    "registration": None,
    "size": None,
    "fps": 10.0,
    "out-fps": None,
    "max-skew-ms": None,
    "ir-offset-ms": 0.0,
    "color": "keep",
    "layout": "fused",
    "ir-norm": "percentile",
    "ir-percentiles": "1,99",
    "ir-range": None,
    "ir-smoothing": 0.9,
}


def _specs(tmp_path: Path, count: int, size: str | None = None) -> list[PairSpec]:
    extra = f",size={size}" if size else ""
    texts = [
        f"vis={NATO / 'vi'},ir={NATO / 'ir'},out={tmp_path / 'out' / f'p{i}.mp4'}{extra}"
        for i in range(count)
    ]
    return read_pairs(texts, None, {"--vis": None, "--ir": None, "--out": None}, DEFAULTS)


def _plan(specs: list[PairSpec], device: str = "cpu", max_batch: int | None = None) -> StreamPlan:
    return StreamPlan(
        tuple(specs), True, ModelChoice(device=device), batch=BatchOptions(0.04, max_batch)
    )


def test_checking_the_pairs_resolves_each_path_a_bounded_number_of_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"resolve": 0}
    resolve = pathlib.Path.resolve

    def counted(self: Path, strict: bool = False) -> Path:
        calls["resolve"] += 1
        return resolve(self, strict)

    monkeypatch.setattr(pathlib.Path, "resolve", counted)
    for count in (50, 400):
        calls["resolve"] = 0
        specs = _specs(tmp_path, count)
        assert len(specs) == count
        # linear: a few resolutions per pair (its output and two inputs, each looked up once)
        assert calls["resolve"] <= 6 * count, (count, calls["resolve"])


def test_default_batches_are_small_on_a_cpu_and_one_per_pair_up_to_16_on_a_gpu(
    tmp_path: Path,
) -> None:
    specs = _specs(tmp_path, 20)
    assert max_batch_for(_plan(specs, "cpu")) == DEFAULT_MAX_BATCH["cpu"] == 2
    assert max_batch_for(_plan(specs[:5], "cuda")) == 5
    assert max_batch_for(_plan(specs, "cuda")) == 16
    assert max_batch_for(_plan(specs, "cuda", 20)) == 20
    assert max_batch_for(_plan(specs[:1], "cpu")) == 1


def test_batches_are_capped_to_the_memory_or_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    specs = _specs(tmp_path, 8, size="640x480")
    per_batch = {b: inference_bytes(ModelConfig(), 480, 640, b) for b in (1, 2, 3, 8)}
    monkeypatch.setattr(stream_run, "available_memory", lambda: per_batch[3] + 1)
    assert max_batch_for(_plan(specs, "cpu", 3)) == 3
    with pytest.raises(FnetError, match=r"^--max-batch 8: batches of 8 frames of 640x480 need"):
        max_batch_for(_plan(specs, "cpu", 8))
    with pytest.raises(FnetError, match="give --max-batch 3 or less"):
        max_batch_for(_plan(specs, "cpu", 8))
    monkeypatch.setattr(stream_run, "available_memory", lambda: per_batch[1] + 1)
    assert max_batch_for(_plan(specs, "cpu")) == 1  # the default capped, said in one line
    said = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(said) == 1 and said[0].startswith("batches of at most 1 frames"), said
    monkeypatch.setattr("fnet_deploy.helpers.memory.available_memory", lambda: per_batch[1] // 2)
    monkeypatch.setattr(stream_run, "available_memory", lambda: per_batch[1] // 2)
    with pytest.raises(FnetError, match="a frame of 640x480 needs about"):
        max_batch_for(_plan(specs, "cpu"))


def test_the_size_of_folder_sources_is_read_from_their_first_frame(tmp_path: Path) -> None:
    spec = _specs(tmp_path, 1)[0]
    assert stream_run._first_frame_size(spec.vis) == (360, 270)
