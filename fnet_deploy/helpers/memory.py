"""Whether a run fits in this machine's memory, decided before it starts."""

from __future__ import annotations

import os
from pathlib import Path

from fnet_deploy.helpers.errors import FnetError

MEMINFO = Path("/proc/meminfo")


def available_memory() -> int | None:
    """Bytes that new allocations can take without swapping: Linux's ``MemAvailable``, else the
    free physical pages; ``None`` where neither is known."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def gib(size: float) -> str:
    """``size`` bytes as ``"12.3 GiB"``."""
    return f"{size / 2**30:.1f} GiB"


def require_memory(needed: float, what: str, advice: str) -> None:
    """Refuse a run of ``what`` that needs ``needed`` bytes when less memory is available.

    Raises:
        FnetError: one line with the estimate, what is available and ``advice`` (what to do).
    """
    available = available_memory()
    if available is not None and needed > available:
        raise FnetError(
            f"{what} needs about {gib(needed)} of memory, {gib(available)} is available: {advice}"
        )
