"""Long work says what it is doing when nobody watches a terminal.

The commands run through the real CLI in a child process whose stdout and stderr are files (no
TTY; one driver process imports the CLI once and forks a child per row, see
``tests/test_missing_extras.py``) on small real inputs, with ``FNET_DEPLOY_PROGRESS_SECONDS`` set
short so that the rows stay fast. Each row must succeed and print, on stderr, the plain lines of
its phases (``<command>: <what it is doing>``), and for the phases long enough, the repeated
status lines ending in the elapsed time (``... (3 s)``). The commands that take seconds even on
a tiny model are checked where a test runs them anyway, in process (the CLI runner is no
terminal either): ``export`` and ``explain`` in ``tests/test_kept_outputs.py`` (the runs that
check their kept results), ``train`` in ``tests/test_train.py``.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from fnet_deploy.cli import app
from fnet_deploy.commands import common
from fnet_deploy.commands.common import PROGRESS_ENV, PlainProgress, ProgressLines, phase
from fnet_deploy.model.weights import packaged_weights
from tests.conftest import NATO
from tests.test_missing_extras import Outcome, run_cases

pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork"), reason="the driver forks one child per case"
)

INTERVAL = 0.05
"""Seconds between progress lines in the rows (the default is 5)."""
TICK = re.compile(r"\(\d+ s\)$")
"""The end of a repeated status line: the phase's elapsed seconds."""


@dataclass(frozen=True)
class Row:
    """A command line that must print ``lines`` (each the start of a stderr line) and, with
    ``ticks``, repeated status lines of a phase starting so."""

    name: str
    args: tuple[str, ...]
    lines: tuple[str, ...]
    ticks: str | None = None


def _inputs(work: Path) -> None:
    """Two real pairs: 80 x 80 crops of the Nato camp frames 4 and 5."""
    for number in (4, 5):
        for modality in ("ir", "vi"):
            frame = cv2.imread(str(NATO / modality / f"{number:06d}.png"), cv2.IMREAD_GRAYSCALE)
            (work / "pairs" / modality).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(work / "pairs" / modality / f"{number}.png"), frame[100:180, 140:220])


def _rows(work: Path) -> list[Row]:
    """The rows: the packaged weights in their PyTorch deploy form (no ONNX export into the
    cache, which would take seconds), so that each command works for a few tenths of a second."""
    pairs = work / "pairs"
    ir, vis = pairs / "ir" / "5.png", pairs / "vi" / "5.png"
    folders = ("--ir", str(pairs / "ir"), "--vis", str(pairs / "vi"))
    default = str(packaged_weights())
    torch_form = ("--backend", "torch")
    out = work / "out"
    bench = ("bench", "--no-peaks", "--backend", "torch-training", "--size", "64x64")
    return [
        Row(
            "fuse-pair",
            ("fuse", *torch_form, "--ir", str(ir), "--vis", str(vis), "--out", f"{out}/f.png"),
            ("fuse: fusing 5.png + 5.png with torch",),
            ticks="fuse: fusing 5.png + 5.png",
        ),
        Row(
            "fuse-folders",
            ("fuse", *torch_form, *folders, "--out", str(out / "fused")),
            ("fuse: fusing: 0/2",),
            ticks="fuse: fusing: ",
        ),
        Row(
            "stream",
            (
                "stream",
                *torch_form,
                "--vis",
                f"dir://{pairs / 'vi'}",
                "--ir",
                f"dir://{pairs / 'ir'}",
                "--out",
                str(out / "s.mp4"),
            ),
            ("stream: fusing dir://", "stream: vis source"),
            ticks="stream: ",
        ),
        Row(
            "eval",
            ("eval", *folders, "--weights", default, *torch_form, "--out", str(out / "ev")),
            ("eval: fusing with fnet: 0/2",),
            ticks="eval: fusing with fnet: ",
        ),
        Row(
            "check",
            ("check", default, *torch_form, "--ir", str(ir), "--vis", str(vis)),
            ("check: checking fnet_default.safetensors: 0/1",),
            ticks="check: checking fnet_default.safetensors: ",
        ),
        Row(
            "bench",
            (*bench, "--iterations", "2", "--warmup", "0", "--json", str(out / "b.json")),
            ("bench: torch-training fp32 64x64 b1: 0/1",),
            ticks="bench: torch-training fp32 64x64 b1: 0/1",
        ),
        Row(
            "calibrate",
            (
                "calibrate",
                "--ir",
                str(NATO / "ir" / "000005.png"),
                "--vis",
                str(NATO / "vi" / "000005.png"),
                "--out",
                str(out / "r.json"),
            ),
            ("calibrate: estimating the map from the frames (ecc)",),
        ),
    ]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    work = tmp_path_factory.mktemp("progress")
    _inputs(work)
    rows = _rows(work)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(PROGRESS_ENV, str(INTERVAL))
        patch.setenv("OMP_NUM_THREADS", "1")
        return run_cases(work, [(row.name, row.args, ()) for row in rows], timeout=300)


ROWS = _rows(Path("/nonexistent-work"))


def test_the_rows_cover_every_long_running_command() -> None:
    commands = {row.args[0] for row in ROWS}
    assert commands == {"fuse", "stream", "eval", "check", "bench", "calibrate"}


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_a_command_without_a_terminal_prints_its_phases_and_status_lines(
    row: Row, outcomes: dict[str, Outcome]
) -> None:
    outcome = outcomes[row.name]
    assert outcome.code == 0, outcome
    lines = outcome.stderr.splitlines()
    for start in row.lines:
        assert any(line.startswith(start) for line in lines), (start, outcome.stderr)
    if row.ticks is not None:
        ticks = [line for line in lines if line.startswith(row.ticks) and TICK.search(line)]
        assert ticks, (row.ticks, outcome.stderr)
    assert "\x1b[" not in outcome.stderr, "terminal control codes in a plain log"


def test_the_stream_status_line_counts_the_frames(outcomes: dict[str, Outcome]) -> None:
    status = re.compile(
        r"^stream: (\d+) fused of (\d+) visible frames read, [\d.]+ fps, dropped live 0, "
        r"unpaired 0, pending (\d+), backend errors 0 \(\d+ s\)$"
    )
    counts = [status.match(line) for line in outcomes["stream"].stderr.splitlines()]
    found = [tuple(int(group) for group in match.groups()) for match in counts if match]
    assert found, outcomes["stream"].stderr
    for fused, read, pending in found:
        # The counters belong to different threads and a status line reads them one after
        # another, so it is no snapshot: each stays within the frames read (the exact sum
        # holds at the end of a run, tests/test_stream_soak.py).
        assert fused <= read <= 2 and pending <= read


def test_lines_start_after_a_short_delay_and_repeat_at_the_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    printed: list[tuple[float, str]] = []
    monkeypatch.setattr(
        common.console, "print", lambda text, **_: printed.append((time.monotonic(), text))
    )
    lines = ProgressLines(0.1)
    start = time.monotonic()
    lines.begin("quick")
    lines.begin("working", lambda: "3 done")  # a phase that ended at once printed nothing
    time.sleep(0.45)
    lines.close()
    texts = [text for _, text in printed]
    assert texts[0] == "working" and "quick" not in texts, texts
    assert len(texts) >= 3 and all(text.startswith("3 done (") for text in texts[1:]), texts
    assert printed[0][0] - start >= 0.1 - 0.01
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(printed)]
    assert min(gaps) >= 0.1 - 0.01
    time.sleep(0.15)
    assert len(printed) == len(texts), "a line after close()"


def test_a_failing_status_costs_its_text_not_the_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    printed: list[str] = []
    monkeypatch.setattr(common.console, "print", lambda text, **_: printed.append(text))

    def broken() -> str:
        raise ZeroDivisionError

    lines = ProgressLines(0.02)
    lines.begin("counting", broken)
    time.sleep(0.15)
    lines.close()
    assert printed[0] == "counting" and len(printed) >= 2, printed
    assert all(
        re.fullmatch(r"counting \(ZeroDivisionError in its status\) \(0 s\)", text)
        for text in printed[1:]
    ), printed


def test_a_terminal_gets_no_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common.console, "_force_terminal", True)
    before = threading.active_count()
    with phase("working") as lines:
        assert lines is None
        assert threading.active_count() == before
    assert not isinstance(common.progress_bar(), PlainProgress)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_a_bad_interval_is_refused_in_one_line_before_any_work(value: str, tmp_path: Path) -> None:
    out = tmp_path / "fused.png"
    result = CliRunner().invoke(app, ["fuse", "--out", str(out)], env={PROGRESS_ENV: value})
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        f"error: ${PROGRESS_ENV}: expected a positive number of seconds, got {value!r}"
    ]
    assert not out.exists()


def test_the_time_left_counts_only_the_steps_done_since_the_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A resumed run begins at its saved step: no estimate until a step is done here, then one
    from this run's own pace (not ``0 s left`` from the steps done before)."""
    now = [100.0]
    monkeypatch.setattr(common.time, "monotonic", lambda: now[0])
    task = common._PlainTask("train: stage I", total=5000, completed=3547, started=now[0])
    assert task.describe() == "train: stage I: 3547/5000"
    now[0] += 30.0
    task.completed += 10  # 10 steps in 30 s: 3 s each, 1443 to go
    assert task.describe() == "train: stage I: 3557/5000, about 4329 s left"
