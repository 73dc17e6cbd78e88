"""The two-stage trainer end to end on a tiny FNet: outputs, exact resume, failure handling."""

from __future__ import annotations

import csv
import json
import os
import random
import re
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from fnet_deploy.cli import app
from fnet_deploy.commands.common import PROGRESS_ENV
from fnet_deploy.helpers.errors import FnetError, InputError
from fnet_deploy.model import load_fnet
from fnet_deploy.training import trainer as trainer_module
from fnet_deploy.training.checkpoint import (
    TrainState,
    capture_rng,
    load_train_state,
    restore_rng,
    save_train_state,
)
from fnet_deploy.training.config import (
    ConfigError,
    TrainConfig,
    differences,
    load_config,
    to_toml,
    with_overrides,
)
from fnet_deploy.training.losses import LossTerms
from fnet_deploy.training.reporter import SilentReporter
from fnet_deploy.training.stopping import TrainingDiverged, TrainingStopped
from fnet_deploy.training.trainer import train
from tests.test_dataset import write_pair

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "model.filters=4",
    "model.kernel_size=3",
    "model.iterations=2",
    "data.crop=16",
    "data.batch_size=2",
    "log.log_every=1",
    "log.tensorboard=false",
    "log.plot=false",
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "pairs"
    for i in range(3):
        write_pair(folder, f"p{i}", shape=(24, 28), seed=i)
    return folder


def tiny(data: Path, out: Path, *extra: str) -> TrainConfig:
    return load_config(
        None,
        [f"data.folders=[{json.dumps(str(data))}]", f"out={json.dumps(str(out))}", *TINY, *extra],
    )


def tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118


def assert_same_tensors(a: Path, b: Path, skip: tuple[str, ...] = ()) -> None:
    first, second = tensors(a), tensors(b)
    assert first.keys() == second.keys()
    for key in first:
        if not key.startswith(skip):
            assert torch.equal(first[key], second[key]), key


def log_rows(out: Path) -> list[dict[str, str]]:
    with (out / "log.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


class Signaller(SilentReporter):
    """Sends SIGTERM to this process after the given (stage, step)."""

    def __init__(self, stage: int, step: int) -> None:
        self.at = (stage, step)

    def step_done(self, stage: int, step: int, losses: dict[str, float]) -> None:
        if (stage, step) == self.at:
            os.kill(os.getpid(), signal.SIGTERM)


class Crasher(SilentReporter):
    """Raises (like a killed process, nothing saved) after the given (stage, step)."""

    def __init__(self, stage: int, step: int) -> None:
        self.at = (stage, step)

    def step_done(self, stage: int, step: int, losses: dict[str, float]) -> None:
        if (stage, step) == self.at:
            raise RuntimeError("simulated crash")


# --- configuration ----------------------------------------------------------------------------


def test_defaults_are_the_paper_recipe() -> None:
    config = TrainConfig()
    assert (config.data.crop, config.data.batch_size) == (128, 16)
    assert (config.optim.lr, config.optim.ema_decay, config.optim.schedule) == (
        1e-4,
        0.999,
        "constant",
    )
    assert config.stage1.iterations == config.stage2.iterations == 20_000
    weights = (config.stage2.intensity_weight, config.stage2.gradient_weight)
    assert (*weights, config.stage2.ssim_weight) == (20.0, 20.0, 15.0)
    assert config.model.filters == 64 and config.stage_list() == [1, 2]


def test_shipped_configs_read_and_differ_from_the_defaults_only_where_documented() -> None:
    paper = load_config(REPO / "configs" / "default.toml")
    assert differences(TrainConfig(), paper) == [
        "data.folders: [] -> ['datasets/MSRS/train']",
        "device: 'cpu' -> 'cuda'",
        "out: 'runs/fnet' -> 'runs/paper'",
    ]
    cpu = load_config(REPO / "configs" / "cpu.toml")
    assert differences(TrainConfig(), cpu) == [
        "data.batch_size: 16 -> 2",
        "data.folders: [] -> ['../shared/data/MSRS_train', '../shared/data/RoadScene_train']",
        "log.checkpoint_every: 500 -> 50",
        "log.tensorboard: True -> False",
        "log.validate_every: 500 -> 250",
        "optim.clip_norm: 0.0 -> 0.5",
        "optim.ema_warmup: False -> True",
        "optim.lr: 0.0001 -> 0.0002",
        "optim.schedule: 'constant' -> 'cosine'",
        "optim.warmup: 0 -> 100",
        "out: 'runs/fnet' -> 'runs_cpu/default'",
        "stage1.iterations: 20000 -> 5000",
        "stage2.iterations: 20000 -> 15000",
        "threads: 0 -> 1",
        "val.folders: [] -> ['../shared/data/MSRS_test', '../shared/data/RoadScene_train']",
    ]


def test_a_data_folder_given_twice_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        ConfigError, match=r"lists .*/pairs twice \('pairs' and '\./x/\.\./pairs/'\)"
    ):
        with_overrides(TrainConfig(), ['data.folders=["pairs", "./x/../pairs/"]'])
    assert with_overrides(TrainConfig(), ['data.folders=["a", "b"]']).data.folders == ("a", "b")


def test_toml_round_trip_and_overrides(tmp_path: Path) -> None:
    config = with_overrides(
        TrainConfig(),
        [
            "stage1.iterations=10",
            "optim.lr=3e-5",
            "device=cuda:1",
            'data.folders=["a b", "c\\"d"]',
            "optim.betas=[0.5, 0.9]",
            "log.tensorboard=false",
            "stages=1",
        ],
    )
    assert config.stage1.iterations == 10 and config.optim.lr == 3e-5
    assert config.device == "cuda:1" and config.data.folders == ("a b", 'c"d')
    assert config.optim.betas == (0.5, 0.9) and config.stages == "1"
    path = tmp_path / "run.toml"
    path.write_text(to_toml(config))
    assert load_config(path) == config
    assert load_config(path, ["data.crop=64"]).data.crop == 64
    assert differences(config, load_config(path, ["data.crop=64"])) == ["data.crop: 128 -> 64"]


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ("data.crops=64", "unknown field data.crops"),
        ("data.crop=big", "data.crop must be an integer"),
        ("data.crop=8", "data.crop must be >= 11"),
        ("stages=3", "stages must be one of 1, 2, both"),
        ("optim.betas=[0.9]", "optim.betas must have 2 items"),
        ("model.kernel_size=4", "kernel_size must be odd"),
        ("seed", "not of the form"),
        ("data=1", "data must be a table"),
        ("model.gamma=nan", "model.gamma must be a finite number"),
        ("model.alpha=-1", "alpha must be a finite number >= 0"),
        ("stage2.ssim_weight=-1", "stage2.ssim_weight must be >= 0"),
    ],
)
def test_bad_config_values_are_named(override: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_config(None, [override])


def test_unreadable_config_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[data\ncrop = 1")
    with pytest.raises(InputError, match=r"bad\.toml: not valid TOML"):
        load_config(path)
    with pytest.raises(InputError, match="config file not found"):
        load_config(tmp_path / "missing.toml")


# --- training state file ----------------------------------------------------------------------


def test_train_state_round_trip_restores_rng_and_writes_no_pickle(tmp_path: Path) -> None:
    parameter = torch.nn.Parameter(torch.randn(3, 2))
    optimizer = torch.optim.Adam([parameter], lr=1e-3)
    parameter.sum().backward()
    optimizer.step()
    rng = capture_rng()
    expected = (np.random.rand(), torch.rand(2), random.random())
    state = TrainState(
        stage=1,
        step=7,
        modules={"fnet": {"w": parameter.detach().clone()}},
        optimizer=optimizer.state_dict(),
        scheduler={"last_epoch": 7, "base_lrs": [1e-3]},
        rng=rng,
        info={"note": "x"},
    )
    path = tmp_path / "state.safetensors"
    save_train_state(path, state)
    assert path.read_bytes()[8:9] == b"{"
    loaded = load_train_state(path)
    assert (loaded.stage, loaded.step, loaded.info, loaded.scheduler) == (
        1,
        7,
        {"note": "x"},
        state.scheduler,
    )
    assert torch.equal(loaded.modules["fnet"]["w"], parameter.detach())
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(
            loaded.optimizer["state"][0][key], optimizer.state_dict()["state"][0][key]
        )
    restore_rng(loaded.rng)
    again = (np.random.rand(), torch.rand(2), random.random())
    assert (
        expected[0] == again[0] and torch.equal(expected[1], again[1]) and expected[2] == again[2]
    )
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(FnetError, match=r"junk\.safetensors"):
        load_train_state(tmp_path / "junk.safetensors")


# --- runs ---------------------------------------------------------------------------------------


def test_two_stages_write_weights_logs_and_config(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = tiny(data_dir, out, "stage1.iterations=3", "stage2.iterations=2", "log.plot=true")
    result = train(config)
    assert result.steps == {1: 3, 2: 2}
    assert load_config(out / "config.toml") == config
    model, info = load_fnet(out / "fnet.safetensors")
    assert info.config == config.model and info.luminance == "ycbcr"
    training = info.metadata["training"]
    assert training["stage2"]["total"] == 2 and training["stage1"]["total"] == 3
    assert training["stage2"]["config"] == config.to_dict()
    assert training["stage2"]["pairs"] == 3 and training["stage2"]["global_batch"] == 2
    assert "stages I+II" in info.provenance
    for key, value in model.state_dict().items():
        assert torch.equal(value, result.models[2].state_dict()[key])
    stage1, _ = load_fnet(out / "fnet_stage1.safetensors")
    assert not torch.equal(stage1.dec_ir.weight, model.dec_ir.weight)
    rows = log_rows(out)
    assert [(r["stage"], r["step"]) for r in rows] == [
        ("1", "1"),
        ("1", "2"),
        ("1", "3"),
        ("2", "1"),
        ("2", "2"),
    ]
    assert rows[0]["rec_ir"] and not rows[0]["ssim"] and rows[-1]["ssim"]
    total = sum(float(rows[-1][k]) for k in ("intensity", "gradient", "ssim"))
    assert float(rows[-1]["loss"]) == pytest.approx(total, rel=1e-4)
    assert (out / "loss_curves.png").stat().st_size > 0


def test_ema_is_what_gets_saved(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(tiny(data_dir, out, "stages=1", "stage1.iterations=2", "optim.ema_decay=0.5"))
    saved, _ = load_fnet(out / "fnet_stage1.safetensors")
    state = load_train_state(out / "state" / "stage1.safetensors")
    for key, value in saved.state_dict().items():
        assert torch.equal(value, state.modules["ema"][key]), key
    assert any(
        not torch.equal(state.modules["ema"][k], state.modules["fnet"][k])
        for k in state.modules["fnet"]
    )


def test_interrupted_and_resumed_run_is_bitwise_the_uninterrupted_one(
    data_dir: Path, tmp_path: Path
) -> None:
    extra = ("stage1.iterations=4", "stage2.iterations=3", "log.checkpoint_every=100")
    straight = tmp_path / "straight"
    train(tiny(data_dir, straight, *extra))

    split = tmp_path / "split"
    with pytest.raises(TrainingStopped, match="stage I saved at iteration 2 of 4"):
        train(tiny(data_dir, split, *extra), reporter=Signaller(1, 2))
    assert load_train_state(split / "state" / "stage1.safetensors").step == 2
    with pytest.raises(TrainingStopped, match="stage II saved at iteration 1 of 3"):
        train(tiny(data_dir, split, *extra), resume=True, reporter=Signaller(2, 1))
    train(tiny(data_dir, split, *extra), resume=True)
    at_boundary = tmp_path / "boundary"
    with pytest.raises(TrainingStopped, match="stage I finished and saved"):
        train(tiny(data_dir, at_boundary, *extra), reporter=Signaller(1, 4))
    assert not (at_boundary / "state" / "stage2.safetensors").exists()
    train(tiny(data_dir, at_boundary, *extra), resume=True)

    assert_same_tensors(straight / "fnet.safetensors", split / "fnet.safetensors")
    assert_same_tensors(straight / "fnet.safetensors", at_boundary / "fnet.safetensors")
    assert_same_tensors(straight / "fnet_stage1.safetensors", split / "fnet_stage1.safetensors")
    for stage in (1, 2):
        name = f"state/stage{stage}.safetensors"
        assert_same_tensors(straight / name, split / name, skip=("rng/",))
    drop = ("sec_per_iter",)
    strip = [{k: v for k, v in row.items() if k not in drop} for row in log_rows(straight)]
    assert strip == [{k: v for k, v in row.items() if k not in drop} for row in log_rows(split)]


def test_a_run_stopped_early_is_finished_at_the_step_it_reached(
    data_dir: Path, tmp_path: Path
) -> None:
    extra = ("stages=1", "log.checkpoint_every=100")
    straight = tmp_path / "straight"
    train(tiny(data_dir, straight, *extra, "stage1.iterations=3"))
    run = tmp_path / "run"
    train(tiny(data_dir, run, *extra, "stage1.iterations=1"))
    older = tensors(run / "fnet_stage1.safetensors")
    with pytest.raises(TrainingStopped, match="stage I saved at iteration 3 of 6"):
        train(
            tiny(data_dir, run, *extra, "stage1.iterations=6"),
            resume=True,
            reporter=Signaller(1, 3),
        )
    train(tiny(data_dir, run, *extra, "stage1.iterations=3"), resume=True)
    assert not torch.equal(
        older["unique_ir.w_theta"], tensors(run / "fnet_stage1.safetensors")["unique_ir.w_theta"]
    )
    assert_same_tensors(straight / "fnet_stage1.safetensors", run / "fnet_stage1.safetensors")


def test_crash_between_checkpoints_resumes_from_the_last_one(
    data_dir: Path, tmp_path: Path
) -> None:
    extra = ("stages=1", "stage1.iterations=5", "log.checkpoint_every=2")
    straight = tmp_path / "straight"
    train(tiny(data_dir, straight, *extra))
    crashed = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tiny(data_dir, crashed, *extra), reporter=Crasher(1, 3))
    assert load_train_state(crashed / "state" / "stage1.safetensors").step == 2
    train(tiny(data_dir, crashed, *extra), resume=True)
    assert_same_tensors(straight / "fnet_stage1.safetensors", crashed / "fnet_stage1.safetensors")
    assert [r["step"] for r in log_rows(crashed)] == ["1", "2", "3", "4", "5"]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = trainer_module.stage_one_loss
    calls = []

    def poisoned(*args: torch.Tensor) -> LossTerms:
        terms = real(*args)
        calls.append(1)
        if len(calls) == 3:
            terms.total = terms.total * float("nan")
        return terms

    monkeypatch.setattr(trainer_module, "stage_one_loss", poisoned)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as caught:
        train(tiny(data_dir, out, "stage1.iterations=6", "log.checkpoint_every=2"))
    message = str(caught.value)
    assert "loss became nan at iteration 3" in message
    assert "stage1.safetensors (iteration 2)" in message and "--resume" in message
    state = load_train_state(out / "state" / "stage1.safetensors")
    assert state.step == 2
    assert all(torch.isfinite(v).all() for v in state.modules["fnet"].values())
    assert not (out / "fnet_stage1.safetensors").exists()


def test_an_existing_run_is_never_overwritten(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(tiny(data_dir, out, "stage1.iterations=1", "stage2.iterations=1"))
    with pytest.raises(FnetError, match=r"already holds a stage I run .* pass --resume"):
        train(tiny(data_dir, out, "stages=1", "stage1.iterations=1"))
    before = (out / "state" / "stage2.safetensors").read_bytes()
    with pytest.raises(FnetError, match=r"started from stage I at iteration 1; .* stale"):
        train(tiny(data_dir, out, "stage1.iterations=2", "stage2.iterations=2"), resume=True)
    assert (out / "state" / "stage2.safetensors").read_bytes() == before
    config_before = (out / "config.toml").read_text()
    with pytest.raises(FnetError, match=r"cannot resume stage I: the saved run used model"):
        train(tiny(data_dir, out, "model.filters=3", "stage1.iterations=1"), resume=True)
    assert (out / "config.toml").read_text() == config_before
    result = train(tiny(data_dir, out, "stage1.iterations=1", "stage2.iterations=2"), resume=True)
    assert result.steps == {1: 1, 2: 2}


def test_stage_two_starts_from_stage_one_or_a_weights_file(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FnetError, match="no stage I run"):
        train(tiny(data_dir, tmp_path / "empty", "stages=2"))
    first = tmp_path / "first"
    train(tiny(data_dir, first, "stages=1", "stage1.iterations=2"))
    train(tiny(data_dir, first, "stages=2", "stage2.iterations=1"))
    _, info = load_fnet(first / "fnet.safetensors")
    assert info.metadata["training"]["stage1"]["total"] == 2
    other = tmp_path / "other"
    init = first / "fnet_stage1.safetensors"
    train(
        tiny(
            data_dir,
            other,
            "stages=2",
            "stage2.iterations=1",
            f"stage2.init={json.dumps(str(init))}",
        )
    )
    _, info = load_fnet(other / "fnet.safetensors")
    assert info.metadata["training"]["stage2"]["init"]["from"] == str(init)
    assert "initialised from fnet_stage1.safetensors" in info.provenance


# --- command line -------------------------------------------------------------------------------


def test_cli_trains_resumes_and_reports_bad_data(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PROGRESS_ENV, "0.02")  # plain progress lines (the runner is no terminal)
    runner = CliRunner()
    out = tmp_path / "cli"
    tiny_sets = [arg for item in TINY[:4] for arg in ("--set", item)]
    args = ["train", "--data", str(data_dir), "--out", str(out), "--iterations", "2"]
    args += ["--batch", "2", "--crop", "16", "--stage", "1", *tiny_sets]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "stage I weights" in result.output
    lines = result.stderr.splitlines()
    assert any(re.match(r"train: stage I: [0-2]/2", line) for line in lines), result.stderr
    assert load_train_state(out / "state" / "stage1.safetensors").step == 2
    resumed = runner.invoke(app, ["train", "--out", str(out), "--resume", "--iterations", "3"])
    assert resumed.exit_code == 0, resumed.output
    assert "stage1.iterations: 2 -> 3" in resumed.output
    assert "resuming stage I at iteration 2" in resumed.output
    assert load_train_state(out / "state" / "stage1.safetensors").step == 3
    conflicting = runner.invoke(
        app, ["train", "--out", str(out), "--resume", "--config", str(out / "config.toml")]
    )
    assert conflicting.exit_code == 2 and "--resume continues the config" in conflicting.output

    (data_dir / "vi" / "p1.png").unlink()
    bad = runner.invoke(app, [*args[:4], str(tmp_path / "cli2"), *args[5:]])
    assert bad.exit_code == 2
    assert "pairs/p1: no visible image of that name" in bad.output
    missing = runner.invoke(app, ["train", "--out", str(tmp_path / "none"), "--resume"])
    assert missing.exit_code == 2 and "no saved run to resume" in missing.output
