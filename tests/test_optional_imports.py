"""The CLI works without the optional extras: they are imported only where they are used."""

from __future__ import annotations

import subprocess
import sys

from fnet_deploy.helpers.optional import EXTRAS


def test_cli_imports_no_optional_package() -> None:
    code = (
        "import sys, fnet_deploy.cli\n"
        f"loaded = sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(EXTRAS)!r}))\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
