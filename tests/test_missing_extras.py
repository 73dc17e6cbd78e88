"""Every command, with each optional package missing in turn: one line naming the extra, exit 2.

The CLI runs in a child process in which a ``sys.meta_path`` finder makes the hidden top-level
packages look uninstalled (``import onnx`` raises ``ModuleNotFoundError`` as it would there). One
driver process imports the CLI once (which loads no optional package, see
``test_optional_imports.py``) and forks a child per case, so the whole table costs one torch
import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import pytest
import torch

from fnet_deploy.export.onnx_graph import OnnxSpec, build_metadata, build_onnx, save_onnx
from fnet_deploy.helpers.optional import EXTRAS
from fnet_deploy.model import FNet, ModelConfig, load_fnet, save_fnet
from tests.conftest import NATO

pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork"), reason="the driver forks one child per case"
)

DRIVER = r"""
import json, os, signal, sys, traceback

class Hide:
    def __init__(self, names):
        self.names = set(names)

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

from fnet_deploy.cli import app

for case in json.loads(open(sys.argv[1]).read()):
    pid = os.fork()
    if pid == 0:
        with open(case["log"] + ".out", "w") as out, open(case["log"] + ".err", "w") as err:
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
        for name in [m for m in sys.modules if m.partition(".")[0] in case["hide"]]:
            del sys.modules[name]
        sys.meta_path.insert(0, Hide(case["hide"]))
        if case.get("announce_at_once"):  # every phase prints its line as it begins
            import fnet_deploy.commands.common as common
            common.ANNOUNCE_SECONDS = 0.0
        signal.alarm(case.get("timeout", 0))  # a hang ends in SIGALRM (exit -14), a failure
        try:
            app(case["args"], prog_name="fnet-deploy")
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    with open(case["log"] + ".code", "w") as handle:
        handle.write(str(os.waitstatus_to_exitcode(status)))
"""


@dataclass(frozen=True)
class Case:
    """A command line run with ``hide`` uninstalled: ``extra`` is what its error must name
    (``None``: it must work), ``not_written`` a path that must not exist afterwards."""

    name: str
    hide: tuple[str, ...]
    args: tuple[str, ...]
    extra: str | None = None
    not_written: str | None = None


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return [line for line in (self.stdout + self.stderr).splitlines() if line.strip()]


def _cases(work: Path) -> list[Case]:
    fp32, fp16, weights = work / "fnet.onnx", work / "fnet_fp16.onnx", work / "tiny.safetensors"
    ir, vis = work / "pairs" / "ir" / "5.png", work / "pairs" / "vi" / "5.png"
    pair = ("--ir", str(ir), "--vis", str(vis), "--weights", str(weights))
    bench = ("bench", "--no-peaks", "--size", "16x16", "--iterations", "1", "--warmup", "0")
    tiny = ("--crop", "16", "--batch", "2", "--set", "model.filters=4", "--set", "threads=1")
    train = ("train", "--data", str(work / "pairs"), "--stage", "1", "--iterations", "1", *tiny)
    folders = ("--ir", str(NATO / "ir"), "--vis", str(NATO / "vi"), "--baseline", "average")

    def case(name: str, hide: str, args: tuple[str, ...], extra: str, suffix: str = "") -> Case:
        """A failing case; ``--out`` (a path of its own) must still be absent afterwards."""
        out = str(work / "out" / f"{name}{suffix}")
        return Case(name, (hide,), (*args, "--out", out), extra, out)

    return [
        case("export-onnx", "onnx", ("export",), "export"),
        case("export-onnxscript", "onnxscript", ("export",), "export"),
        case("export-onnxruntime", "onnxruntime", ("export",), "onnx"),
        case("export-tensorrt", "tensorrt", ("export", "--engine"), "tensorrt"),
        case("export-polygraphy", "polygraphy", ("export", "--engine"), "tensorrt"),
        Case("check-onnxruntime", ("onnxruntime",), ("check", str(fp32), *pair), "onnx"),
        Case("check-fp16-onnx", ("onnx",), ("check", str(fp16), *pair), "export"),
        Case("check-tensorrt", ("tensorrt",), ("check", str(work / "x.engine"), *pair), "tensorrt"),
        Case("bench-onnxruntime", ("onnxruntime",), (*bench, "--backend", "onnxruntime"), "onnx"),
        Case("bench-onnx", ("onnx",), (*bench, "--backend", "torch,onnxruntime"), "export"),
        Case(
            "bench-onnxscript",
            ("onnxscript",),
            (*bench, "--backend", "onnxruntime-col2im"),
            "export",
        ),
        Case("bench-tensorrt", ("tensorrt",), (*bench, "--backend", "tensorrt"), "tensorrt"),
        Case("bench-plot", ("matplotlib",), (*bench, "--plot", str(work / "b.png")), "plot"),
        case("eval-plot", "matplotlib", ("eval", *folders, "--plot"), "plot"),
        case("explain", "matplotlib", ("explain", *pair), "plot"),
        case(
            "fuse-triton",
            "tritonclient",
            ("fuse", "--ir", str(ir), "--vis", str(vis), "--model", "triton://127.0.0.1:8001/fnet"),
            "serve",
            ".png",
        ),
        Case(
            "serve-pytriton",
            ("pytriton",),
            ("serve", "--weights", str(weights), "--grpc-port", "1", "--http-port", "2"),
            "serve",
        ),
        case("stream-onnxruntime", "onnxruntime", ("stream", "--model", str(fp32)), "onnx", ".mp4"),
        Case(
            "stream-rtsp-server",
            ("gi",),
            ("stream", "--weights", str(weights), "--out", "rtsp://@127.0.0.1:0/fused"),
            "rtsp-server",
        ),
        Case("check-fp32-onnx", ("onnx",), ("check", str(fp32), *pair)),
        Case(
            "train-without-tensorboard-and-matplotlib",
            ("tensorboard", "matplotlib"),
            (*train, "--out", str(work / "run")),
        ),
    ]


@pytest.fixture(scope="module")
def outcomes(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dict[str, Outcome], list[Case], Path]:
    work = tmp_path_factory.mktemp("missing_extras")
    torch.manual_seed(0)
    save_fnet(work / "tiny.safetensors", FNet(ModelConfig(filters=2, kernel_size=3, iterations=1)))
    model, info = load_fnet(work / "tiny.safetensors")
    for precision, name in (("fp32", "fnet.onnx"), ("fp16", "fnet_fp16.onnx")):
        spec = OnnxSpec(precision)
        save_onnx(build_onnx(model, spec, build_metadata(info, spec)), work / name)
    for number in (5, 6):  # two real pairs: 48 x 48 crops of the shipped Nato camp frames
        for modality in ("ir", "vi"):
            frame = cv2.imread(str(NATO / modality / f"{number:06d}.png"), cv2.IMREAD_GRAYSCALE)
            (work / "pairs" / modality).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(work / "pairs" / modality / f"{number}.png"), frame[100:148, 150:198])
    (work / "x.engine").write_bytes(b"an engine only TensorRT reads")
    cases = _cases(work)
    results = run_cases(
        work,
        [(c.name, c.args, c.hide) for c in cases],
        timeout=120 * len(cases),  # a bound on hangs, not on the machine's speed
        announce_at_once=True,
    )
    return results, cases, work


def run_cases(
    work: Path,
    cases: list[tuple[str, tuple[str, ...], tuple[str, ...]]],
    timeout: int,
    case_timeout: int = 0,
    announce_at_once: bool = False,
) -> dict[str, Outcome]:
    """Run ``(name, args, hidden packages)`` command lines in one driver process that imports the
    CLI once and forks a child per case; ``case_timeout`` > 0 ends a child that runs longer with
    SIGALRM (exit code -14). With ``announce_at_once`` every progress phase prints its line as it
    begins (``ANNOUNCE_SECONDS = 0``), so that a refusal that comes after work has started shows
    on every machine, not only on a slow one. Logs go to ``work/logs``."""
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    table = [
        {
            "hide": list(hide),
            "args": list(args),
            "log": str(logs / name),
            "timeout": case_timeout,
            "announce_at_once": announce_at_once,
        }
        for name, args, hide in cases
    ]
    (work / "cases.json").write_text(json.dumps(table))
    subprocess.run(
        [sys.executable, "-c", DRIVER, str(work / "cases.json")], check=True, timeout=timeout
    )
    return {
        name: Outcome(
            code=int((logs / f"{name}.code").read_text()),
            stdout=(logs / f"{name}.out").read_text(),
            stderr=(logs / f"{name}.err").read_text(),
        )
        for name, _, _ in cases
    }


ERROR_CASES = [c.name for c in _cases(Path("work")) if c.extra is not None]


@pytest.mark.parametrize("name", ERROR_CASES)
def test_a_missing_extra_is_one_line_naming_it_and_exit_2(
    name: str, outcomes: tuple[dict[str, Outcome], list[Case], Path]
) -> None:
    results, cases, _ = outcomes
    case = next(c for c in cases if c.name == name)
    outcome = results[name]
    assert "Traceback" not in outcome.stdout + outcome.stderr, outcome.stderr
    assert outcome.code == 2, outcome
    assert len(outcome.lines) == 1, outcome.lines
    assert f"fnet-deploy[{case.extra}]" in outcome.lines[0]
    if case.not_written is not None:
        assert not Path(case.not_written).exists(), "work started before the check"


def test_every_optional_package_is_hidden_by_some_case() -> None:
    hidden = {name for case in _cases(Path("work")) for name in case.hide}
    assert hidden == set(EXTRAS)


def test_an_fp32_model_is_checked_without_onnx(
    outcomes: tuple[dict[str, Outcome], list[Case], Path],
) -> None:
    outcome = outcomes[0]["check-fp32-onnx"]
    assert outcome.code == 0, outcome
    assert "PASS" in outcome.stdout
    assert "float16 emulated" not in outcome.stdout


def test_training_without_tensorboard_or_matplotlib_runs_and_says_so(
    outcomes: tuple[dict[str, Outcome], list[Case], Path],
) -> None:
    results, _, work = outcomes
    outcome = results["train-without-tensorboard-and-matplotlib"]
    assert outcome.code == 0, outcome
    assert "Traceback" not in outcome.stderr
    assert (work / "run" / "fnet_stage1.safetensors").is_file()
    assert not (work / "run" / "loss_curves.png").exists()
    notes = "\n".join(outcome.lines)
    assert "fnet-deploy[train]" in notes and "fnet-deploy[plot]" in notes
