"""Old spellings of options, values and pair keys: accepted for one release, said in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from fnet_deploy.cli import app
from fnet_deploy.commands.pair_specs import read_pairs
from fnet_deploy.commands.renames import CONVERTED, DEVICE_KINDS, PAIR_KEYS, modernise
from fnet_deploy.export.plan import ExportPlan
from tests.conftest import NATO
from tests.test_many_pairs import DEFAULTS


def _said(command: str, args: list[str]) -> tuple[list[str], list[str]]:
    lines: list[str] = []
    return modernise(command, args, lines.append), lines


def test_old_options_become_new_with_one_notice_each() -> None:
    args, lines = _said(
        "stream",
        ["--ir-gain", "minmax", "--gain-smoothing=0.5", "--ir-gain", "fixed", "--out", "a.mp4"],
    )
    assert args == [
        "--ir-norm",
        "minmax",
        "--ir-smoothing=0.5",
        "--ir-norm",
        "fixed",
        "--out",
        "a.mp4",
    ]
    assert lines == [
        "warning: --ir-gain is deprecated: use --ir-norm (the old spelling goes in 0.3)",
        "warning: --gain-smoothing is deprecated: use --ir-smoothing (the old spelling goes "
        "in 0.3)",
    ]


def test_old_device_kinds_keep_their_index() -> None:
    args, lines = _said("fuse", ["--device", "tensorrt:1", "--backend", "onnxruntime"])
    assert args == ["--device", "ort-trt:1", "--backend", "onnxruntime"]
    assert len(lines) == 1 and "--device tensorrt is deprecated: use --device ort-trt" in lines[0]
    assert _said("fuse", ["--device=TensorRT"])[0] == ["--device=ort-trt"]
    assert _said("fuse", ["--device", "cuda:0"]) == (["--device", "cuda:0"], [])


def test_values_and_other_commands_are_left_alone() -> None:
    untouched = ["--out", "--ir-gain", "--vis", "x", "--", "--batch-size"]
    assert _said("fuse", untouched) == (untouched, [])
    assert _said("train", ["--", "--batch-size", "2"]) == (["--", "--batch-size", "2"], [])


def test_an_old_spelling_on_the_command_line_runs_as_the_new_one() -> None:
    result = CliRunner().invoke(app, ["train", "--batch-size", "0"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[0].startswith("warning: --batch-size is deprecated: use --batch"), lines
    errors = " ".join(lines[1:])
    assert "'--batch'" in errors and "--batch-size" not in errors, lines  # the new option's check


def test_old_pair_keys_are_read_with_one_notice(capsys: pytest.CaptureFixture[str]) -> None:
    texts = [
        f"vis={NATO / 'vi'},ir={NATO / 'ir'},out=/tmp/p{i}.mp4,ir-gain=minmax,gain-smoothing=0"
        for i in range(3)
    ]
    specs = read_pairs(texts, None, {"--vis": None, "--ir": None, "--out": None}, DEFAULTS)
    assert [(spec.ir_norm, spec.ir_smoothing) for spec in specs] == [("minmax", 0.0)] * 3
    said = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert said == [
        "warning: pair key ir-gain is deprecated: use ir-norm (the old spelling goes in 0.3)",
        "warning: pair key gain-smoothing is deprecated: use ir-smoothing (the old spelling "
        "goes in 0.3)",
    ]
    assert set(PAIR_KEYS.values()) <= {"ir-norm", "ir-smoothing"} and DEVICE_KINDS


def _export_plan(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str
) -> tuple[ExportPlan, list[str]]:
    """The plan ``fnet-deploy export --out DIR *args`` builds (its run replaced by a stand-in)
    and the notices it printed."""
    from fnet_deploy.commands import export

    plans: list[ExportPlan] = []

    def record(plan: ExportPlan, *_: object) -> int:
        plans.append(plan)
        return 0

    monkeypatch.setattr(export, "run_export", record)
    result = CliRunner().invoke(app, ["export", "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 0, result.output
    (plan,) = plans
    return plan, [line for line in result.stderr.splitlines() if line.startswith("warning:")]


def test_export_height_and_width_give_a_notice_and_the_plan_of_size(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    new, quiet = _export_plan(monkeypatch, tmp_path, "--size", "128x96")
    old, said = _export_plan(monkeypatch, tmp_path, "--height", "96", "--width", "128")
    assert old == new and (new.width, new.height) == (128, 96) and quiet == []
    assert said == [
        "warning: --height/--width is deprecated: use --size WIDTHxHEIGHT (the old spelling "
        "goes in 0.3)"
    ]


def test_export_precision_flags_become_values_of_precision(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    listed, quiet = _export_plan(monkeypatch, tmp_path, "--precision", "fp16,int8")
    repeated, _ = _export_plan(monkeypatch, tmp_path, "--precision", "fp16", "--precision", "int8")
    old, said = _export_plan(monkeypatch, tmp_path, "--fp16", "--int8")
    assert listed == repeated == old and listed.fp16 and listed.int8 is not None and quiet == []
    assert [line.split(": use ")[1] for line in said] == [
        "--precision fp16 (the old spelling goes in 0.3)",
        "--precision int8 (the old spelling goes in 0.3)",
    ]
    reference, _ = _export_plan(monkeypatch, tmp_path, "--precision", "fp32")
    assert not reference.fp16 and reference.int8 is None


def test_an_old_negated_flag_becomes_the_new_one() -> None:
    assert _said("check", ["--no-emulate-fp16", "m.onnx"]) == (
        ["--no-emulate-on-cpu", "m.onnx"],
        [
            "warning: --no-emulate-fp16 is deprecated: use --no-emulate-on-cpu (the old "
            "spelling goes in 0.3)"
        ],
    )


@pytest.mark.parametrize("command", sorted(CONVERTED))
def test_converted_old_options_stay_hidden_beside_their_new_one(command: str) -> None:
    group: Any = typer.main.get_command(app)
    params = {opt: param for param in group.get_command(None, command).params for opt in param.opts}
    for rename in CONVERTED[command]:
        assert params[rename.old].hidden and not params[rename.new].hidden, rename
