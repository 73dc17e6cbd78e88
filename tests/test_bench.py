"""Benchmark building blocks: the cost model, timing statistics, the matrix and the command."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fnet_deploy.backends.torch_runner import TorchRunner
from fnet_deploy.bench import matrix
from fnet_deploy.bench.matrix import Cell, add_speedups, run_cell
from fnet_deploy.bench.peaks import Peaks, peaks_per_precision
from fnet_deploy.bench.timing import Timing, time_runner
from fnet_deploy.cli import app
from fnet_deploy.model import FNet, ModelConfig
from fnet_deploy.model.cost import forward_cost

TINY = ModelConfig(filters=4, kernel_size=3, iterations=1)


def test_flops_match_the_design_figures() -> None:
    cost = forward_cost(ModelConfig(), 480, 640)
    assert cost.flops == 2 * 419_904 * 480 * 640  # docs/model.md §9.1: about 258 GFLOP
    assert forward_cost(ModelConfig(), 512, 640).flops == pytest.approx(275.2e9, rel=1e-3)
    assert forward_cost(ModelConfig(), 480, 640, batch=3).flops == 3 * cost.flops
    assert cost.io_bytes == 3 * 480 * 640 * 4


def test_activation_bytes_count_every_conv_input_and_output() -> None:
    # TINY: per 1-channel block, W0 (1->F), W1 (1->F), D (F->1), U (1->F): in+out elements per pixel
    f = TINY.filters
    block1 = (1 + f) + (1 + f) + (f + 1) + (1 + f)
    block2 = (2 + f) + (2 + f) + (f + 2) + (2 + f)
    tail = 5 * (f + 1)  # Cu, Cv, Du, Dz, Dv
    per_pixel = 2 * block1 + block2 + tail
    cost = forward_cost(TINY, 10, 20, bytes_per_element=2)
    assert cost.activation_bytes == per_pixel * 10 * 20 * 2


def test_timing_statistics() -> None:
    timing = Timing(samples=[0.1, 0.2, 0.3, 0.4], batch=2)
    assert timing.median == pytest.approx(0.25)
    assert timing.frames_per_second == pytest.approx(8.0)
    assert timing.percentile(100) == pytest.approx(0.4)


def test_time_runner_counts_calls() -> None:
    feed = {"ir": np.zeros((1, 1, 16, 16), np.float32), "vis": np.zeros((1, 1, 16, 16), np.float32)}
    with TorchRunner(FNet(TINY)) as runner:
        timing = time_runner(runner, feed, warmup=1, iterations=4)
    assert len(timing.samples) == 4 and all(s > 0 for s in timing.samples)


def test_cell_beside_floors_and_skips(tmp_path: Path) -> None:
    peaks = Peaks("cpu", "float32", 1e11, 1e10, 1e11, 5e10)
    model = FNet(TINY)
    result = run_cell(
        Cell("torch-training", "fp32", 16, 24, 2), model, "cpu", peaks, 0, 2, 10.0, tmp_path
    )
    cost = forward_cost(TINY, 16, 24, 2)
    assert result.compute_floor_ms == pytest.approx(1e3 * cost.flops / 1e11)
    assert result.memory_floor_ms == pytest.approx(1e3 * cost.activation_bytes / 1e10)
    assert result.median_ms is not None and result.fps == pytest.approx(2e3 / result.median_ms)
    assert result.fraction_of_floor is not None and 0 < result.fraction_of_floor < 1
    skipped = run_cell(
        Cell("torch-training", "fp16", 16, 24, 1), model, "cpu", peaks, 0, 2, 10.0, tmp_path
    )
    assert skipped.skipped is not None and "CUDA" in skipped.skipped
    assert skipped.median_ms is None


def test_bench_command_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "--size",
            "32x24",
            "--batch",
            "1,2",
            "--iterations",
            "2",
            "--warmup",
            "0",
            "--json",
            str(out),
            "--plot",
            str(tmp_path / "latency.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    peaks = document["peaks"]["fp32"]  # per precision, each measured in its own dtype
    assert peaks["dtype"] == "float32" and peaks["flops_per_s"] > 0 and peaks["bytes_per_s"] > 0
    assert document["complete"] is True and document["cells"] == 4
    rows = document["results"]
    cells = [(r["backend"], r["batch"], r["height"], r["width"]) for r in rows]
    assert cells == [  # the default: the training form (the baseline) and the deploy form
        (backend, batch, 24, 32) for backend in ("torch-training", "torch") for batch in (1, 2)
    ]
    assert all(r["median_ms"] > 0 and r["compute_floor_ms"] > 0 for r in rows)
    assert "p50 ms" in result.output
    assert (tmp_path / "latency.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size", "640by480"], "--size expects WIDTHxHEIGHT like 640x480"),
        (["--size", "640x0"], "--size 640x0: width and height must be at least 1"),
        (["--batch", "x"], "--batch expects sizes like 1,2,4"),
        (["--batch", "0"], "--batch expects positive sizes"),
        (["--precision", "fp8"], "--precision: expected a comma-separated list of fp32, fp16"),
        (["--backend", ","], "--backend: expected a comma-separated list of torch"),
        (["--random-init", "--weights", "w.pth"], "--random-init times an untrained FNet"),
        (["--device", "ort-trt"], "every bench backend runs on cpu, cuda[:N]"),
    ],
)
def test_bench_rejects_bad_options_in_one_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["bench", "--no-peaks", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output


def test_bench_where_no_cell_can_run_fails_saying_why(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = [
        "bench",
        "--no-peaks",
        "--device",
        "cpu",
        "--precision",
        "fp16",
        "--size",
        "16x16",
    ]
    result = CliRunner().invoke(app, [*args, "--iterations", "1", "--json", str(out)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "no benchmark cell could run here: " in lines[0], result.stderr
    assert "CUDA" in lines[0] and not out.exists()


def test_deploy_and_onnxruntime_cells_with_speedups(tmp_path: Path) -> None:
    model = FNet(TINY)
    results = [
        run_cell(Cell(backend, "fp32", 20, 28, 1), model, "cpu", None, 1, 2, 10.0, tmp_path)
        for backend in ("torch-training", "torch", "onnxruntime", "onnxruntime-col2im")
    ]
    assert [r.skipped for r in results] == [None] * 4
    assert (tmp_path / "fnet_fp32.onnx").exists()
    add_speedups(results)
    assert results[0].speedup == pytest.approx(1.0)
    base = results[0].median_ms
    assert base is not None
    for r in results[1:]:
        assert r.median_ms is not None and r.speedup == pytest.approx(base / r.median_ms)
    if importlib.util.find_spec("tensorrt") is None:
        trt = run_cell(Cell("tensorrt", "fp16", 20, 28, 1), model, "cpu", None, 0, 1, 1.0, tmp_path)
        assert trt.skipped is not None and "tensorrt" in trt.skipped  # a reason, not a number
        assert trt.median_ms is None


def test_each_precision_gets_the_peaks_of_its_own_dtype() -> None:
    measured: list[tuple[str, torch.dtype]] = []

    def measure(device: str, dtype: torch.dtype) -> Peaks:
        measured.append((device, dtype))
        return Peaks(device, str(dtype).removeprefix("torch."), 1.0, 1.0, 1.0, 1.0)

    found = peaks_per_precision(["fp32", "fp16", "int8"], "cuda", measure)
    assert {name: p.dtype for name, p in found.items()} == {
        "fp32": "float32",
        "fp16": "float16",
        "int8": "float32",
    }
    assert measured == [("cuda", torch.float32), ("cuda", torch.float16)]  # once per dtype
    on_cpu = peaks_per_precision(["fp32", "fp16"], "cpu", measure)
    assert {p.dtype for p in on_cpu.values()} == {"float32"}


def test_a_cell_runs_on_its_own_copy_of_the_model(tmp_path: Path) -> None:
    model = FNet(TINY).double()  # the training-form runner casts what it is given to float32
    result = run_cell(
        Cell("torch-training", "fp32", 16, 24, 1), model, "cpu", None, 0, 1, 10.0, tmp_path
    )
    assert result.median_ms is not None
    assert all(p.dtype == torch.float64 for p in model.parameters())


def test_a_failing_cell_is_recorded_and_the_others_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> TorchRunner:
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setitem(matrix.BACKENDS, "torch-nhwc", broken)
    out = tmp_path / "bench.json"
    args = ["bench", "--no-peaks", "--backend", "torch-nhwc,torch", "--size", "24x16"]
    result = CliRunner().invoke(
        app, [*args, "--iterations", "1", "--warmup", "0", "--json", str(out)]
    )
    assert result.exit_code == 2, result.output
    assert "1 of 2 benchmark cells failed" in " ".join(result.stderr.split())
    rows = json.loads(out.read_text())["results"]
    assert rows[0]["backend"] == "torch-nhwc" and rows[0]["median_ms"] is None
    assert rows[0]["error"] == "RuntimeError: CUDA out of memory (simulated)"
    assert rows[1]["backend"] == "torch" and rows[1]["error"] is None and rows[1]["median_ms"] > 0
