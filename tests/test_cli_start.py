"""The CLI starts light: its help and version import no command, and a command's help imports
neither PyTorch nor the work behind the command (issue 36, "fast start")."""

from __future__ import annotations

import inspect
import subprocess
import sys

import cv2
import pytest
from typer.testing import CliRunner

from fnet_deploy.cli import COMMANDS, app, load_command

PROBE = """
import sys
from fnet_deploy.cli import app
try:
    app({args!r}, prog_name="fnet-deploy")
except SystemExit:
    pass
print("IMPORTED", ",".join(sorted(m for m in ("torch", "cv2", "scipy") if m in sys.modules)))
"""
"""Runs the CLI in a fresh interpreter, then names the heavy modules it imported."""


def heavy_imports(*args: str) -> tuple[set[str], str]:
    """The heavy modules ``fnet-deploy ARGS`` imports, and what it printed."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=list(args))],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("IMPORTED"), done.stdout + done.stderr
    return set(filter(None, last.removeprefix("IMPORTED").strip().split(","))), done.stdout


@pytest.mark.parametrize("args", [["--help"], ["--version"], []], ids=["help", "version", "bare"])
def test_help_and_version_import_neither_torch_nor_opencv(args: list[str]) -> None:
    imported, shown = heavy_imports(*args)
    assert imported == set()
    if args != ["--version"]:
        for name in COMMANDS:  # every command is listed with its one-line help
            assert name in shown


COMMAND_HELPS = [[name, "--help"] for name in COMMANDS] + [["weights", "info", "--help"]]


@pytest.mark.parametrize("args", COMMAND_HELPS, ids=" ".join)
def test_a_commands_help_does_not_import_torch(args: list[str]) -> None:
    imported, shown = heavy_imports(*args)
    assert "torch" not in imported
    assert "Usage: fnet-deploy" in shown


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_listed_summary_is_the_commands_own(name: str) -> None:
    command = load_command(name)
    first_paragraph = inspect.cleandoc(command.help or "").split("\n\n")[0]
    assert COMMANDS[name].summary == " ".join(first_paragraph.split())


def test_bench_target_names_match_the_matrix() -> None:
    from fnet_deploy.bench.matrix import BACKENDS
    from fnet_deploy.bench.targets import TARGET_NAMES

    assert tuple(BACKENDS) == TARGET_NAMES


def test_a_command_run_quietens_opencv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENCV_LOG_LEVEL", raising=False)
    before = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_INFO)
    try:
        result = CliRunner().invoke(app, ["weights", "info"])
        assert result.exit_code == 0, result.output
        assert cv2.utils.logging.getLogLevel() == cv2.utils.logging.LOG_LEVEL_ERROR
    finally:
        cv2.utils.logging.setLogLevel(before)
