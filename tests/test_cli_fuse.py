"""`fnet-deploy fuse` as a user runs it: good inputs, bad inputs, folders."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from fnet_deploy.cli import app


def run(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["fuse", *map(str, args)])
    return result.exit_code, result.output


def one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error: ")
    assert "Traceback" not in output
    return lines[0]


def test_single_colour_pair(
    tmp_path: Path, crop_pair: tuple[Path, Path], default_weights: Path
) -> None:
    ir, vis = crop_pair
    out = tmp_path / "out" / "fused.png"
    code, output = run("--ir", ir, "--vis", vis, "--out", out, "--weights", default_weights)
    assert code == 0, output
    fused = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert fused.shape == (64, 80, 3)
    assert fused.std() > 5  # a real picture, not a constant


def test_gray_convention_writes_grey(
    tmp_path: Path, crop_pair: tuple[Path, Path], tiny_weights: Path
) -> None:
    ir, vis = crop_pair
    out = tmp_path / "fused.png"
    code, output = run(
        "--ir", ir, "--vis", vis, "--out", out, "--weights", tiny_weights, "--color", "gray"
    )
    assert code == 0, output
    assert cv2.imread(str(out), cv2.IMREAD_UNCHANGED).shape == (64, 80)


def test_tiled_cli_equals_untiled(
    tmp_path: Path, crop_pair: tuple[Path, Path], default_weights: Path
) -> None:
    ir, vis = crop_pair
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert run("--ir", ir, "--vis", vis, "--out", a, "--weights", default_weights)[0] == 0
    assert (
        run("--ir", ir, "--vis", vis, "--out", b, "--weights", default_weights, "--tile", "32")[0]
        == 0
    )
    diff = np.abs(cv2.imread(str(a)).astype(int) - cv2.imread(str(b)).astype(int))
    assert diff.max() <= 1


def test_16bit_ir(tmp_path: Path, crop_pair: tuple[Path, Path], tiny_weights: Path) -> None:
    ir8, vis = crop_pair
    ir16 = tmp_path / "ir16.png"
    raw = cv2.imread(str(ir8), cv2.IMREAD_GRAYSCALE).astype(np.uint16) * 40 + 7000
    cv2.imwrite(str(ir16), raw)
    out = tmp_path / "fused.png"
    for norm in ("percentile", "minmax", "fixed"):
        code, output = run(
            "--ir",
            ir16,
            "--vis",
            vis,
            "--out",
            out,
            "--weights",
            tiny_weights,
            "--ir-norm",
            norm,
        )
        assert code == 0, output
        assert out.exists()


def test_missing_file(tmp_path: Path, crop_pair: tuple[Path, Path], tiny_weights: Path) -> None:
    _, vis = crop_pair
    out = tmp_path / "fused.png"
    code, output = run(
        "--ir", tmp_path / "nope.png", "--vis", vis, "--out", out, "--weights", tiny_weights
    )
    assert code == 2
    assert "nope.png: file not found" in one_error_line(output)
    assert not out.exists()


def test_mismatched_sizes_then_resize(
    tmp_path: Path, crop_pair: tuple[Path, Path], tiny_weights: Path
) -> None:
    ir, vis = crop_pair
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), cv2.imread(str(ir), cv2.IMREAD_GRAYSCALE)[:40, :50])
    out = tmp_path / "fused.png"
    code, output = run("--ir", small, "--vis", vis, "--out", out, "--weights", tiny_weights)
    assert code == 2
    line = one_error_line(output)
    assert "small.png" in line and "--resize" in line
    assert not out.exists()
    code, output = run(
        "--ir",
        small,
        "--vis",
        vis,
        "--out",
        out,
        "--weights",
        tiny_weights,
        "--resize",
        "ir-to-vis",
    )
    assert code == 0, output
    assert cv2.imread(str(out)).shape[:2] == (64, 80)


def test_wrong_checkpoint(tmp_path: Path, crop_pair: tuple[Path, Path]) -> None:
    ir, vis = crop_pair
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"definitely not weights")
    out = tmp_path / "fused.png"
    code, output = run("--ir", ir, "--vis", vis, "--out", out, "--weights", bad)
    assert code == 2
    assert "bad.pth: not a weights file" in one_error_line(output)
    assert not out.exists()


def test_without_weights_the_packaged_default_fuses(
    tmp_path: Path, crop_pair: tuple[Path, Path]
) -> None:
    ir, vis = crop_pair
    code, output = run("--ir", ir, "--vis", vis, "--out", tmp_path / "f.png")
    assert code == 0, output
    fused = cv2.imread(str(tmp_path / "f.png"))
    assert fused is not None
    assert fused.shape[:2] == cv2.imread(str(ir), cv2.IMREAD_GRAYSCALE).shape
    assert 10 < float(fused.mean()) < 245


def test_no_weights_in_a_build_without_defaults_is_a_clear_error(
    tmp_path: Path, crop_pair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:

    from fnet_deploy.model import weights as weights_file

    monkeypatch.setattr(weights_file, "packaged_weights", lambda: None)
    ir, vis = crop_pair
    code, output = run("--ir", ir, "--vis", vis, "--out", tmp_path / "f.png")
    assert code == 2
    assert "--weights" in one_error_line(output)


def test_truncated_image(tmp_path: Path, crop_pair: tuple[Path, Path], tiny_weights: Path) -> None:
    ir, vis = crop_pair
    cut = tmp_path / "cut.png"
    cut.write_bytes(vis.read_bytes()[:200])
    out = tmp_path / "fused.png"
    code, output = run("--ir", ir, "--vis", cut, "--out", out, "--weights", tiny_weights)
    assert code == 2
    assert "cut.png: cannot decode image" in one_error_line(output)
    assert not out.exists()


def test_folders_with_unpaired_and_broken_files(
    tmp_path: Path, crop_pair: tuple[Path, Path], tiny_weights: Path
) -> None:
    ir, vis = crop_pair
    ir_dir, vis_dir, out_dir = tmp_path / "ir", tmp_path / "vi", tmp_path / "out"
    ir_dir.mkdir()
    vis_dir.mkdir()
    for name in ("a", "b"):
        (ir_dir / f"{name}.png").write_bytes(ir.read_bytes())
        (vis_dir / f"{name}.png").write_bytes(vis.read_bytes())
    (ir_dir / "lonely.png").write_bytes(ir.read_bytes())
    (ir_dir / "broken.png").write_bytes(ir.read_bytes()[:100])
    (vis_dir / "broken.png").write_bytes(vis.read_bytes())
    code, output = run(
        "--ir", ir_dir, "--vis", vis_dir, "--out", out_dir, "--weights", tiny_weights
    )
    assert code == 2
    assert "no visible partner for lonely" in output
    assert "broken.png: cannot decode image" in output
    assert sorted(p.name for p in out_dir.iterdir()) == ["a.png", "b.png"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--device", "banana"],
            "--device 'banana': unknown device (PyTorch runs on cpu, cuda[:N])",
        ),
        (["--ir-percentiles", "99,1"], "--ir-percentiles expects low,high with low < high"),
        (["--ir-percentiles", "-5,200"], "--ir-percentiles expects percentiles between 0 and 100"),
    ],
)
def test_bad_option_values_are_one_line(
    tmp_path: Path, crop_pair: tuple[Path, Path], args: list[str], message: str
) -> None:
    ir, vis = crop_pair
    code, output = run("--ir", ir, "--vis", vis, "--out", tmp_path / "f.png", *args)
    assert code == 2
    assert message in one_error_line(output)
    assert not (tmp_path / "f.png").exists()


def test_output_under_a_regular_file_is_one_line(
    tmp_path: Path, crop_pair: tuple[Path, Path]
) -> None:
    ir, vis = crop_pair
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    code, output = run("--ir", ir, "--vis", vis, "--out", blocker / "fused.png")
    assert code == 2
    assert f"{blocker} is a file, not a folder" in one_error_line(output)


def test_an_output_that_is_an_input_is_refused(
    tmp_path: Path, crop_pair: tuple[Path, Path]
) -> None:
    ir, vis = crop_pair
    before = vis.read_bytes()
    code, output = run("--ir", ir, "--vis", vis, "--out", vis)
    assert code == 2
    assert "would overwrite an input" in one_error_line(output)
    assert vis.read_bytes() == before


def test_folders_without_a_single_pair_are_an_error(
    tmp_path: Path, crop_pair: tuple[Path, Path]
) -> None:
    ir, vis = crop_pair
    (tmp_path / "ir").mkdir()
    (tmp_path / "vi").mkdir()
    (tmp_path / "ir" / "a.png").write_bytes(ir.read_bytes())
    (tmp_path / "vi" / "b.png").write_bytes(vis.read_bytes())
    code, output = run("--ir", tmp_path / "ir", "--vis", tmp_path / "vi", "--out", tmp_path / "o")
    assert code == 2
    assert "no image shares a file name" in one_error_line(output)
