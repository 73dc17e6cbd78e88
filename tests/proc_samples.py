"""What a soak test samples of a process (resident memory, threads, open descriptors from
``/proc``, Linux only) and the check that they stayed flat over a run."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Sample:
    """One look at a process: seconds on the run's clock and what ``/proc`` says."""

    t: float
    rss_kib: int
    threads: int
    fds: int


def read_proc(pid: int) -> tuple[int, int, int] | None:
    """Resident memory (KiB), threads and open descriptors of ``pid``; None once it has ended
    (or where there is no ``/proc``)."""
    try:
        fields = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    if "VmRSS" not in fields:  # exited, not reaped yet
        return None
    return int(fields["VmRSS"].split()[0]), int(fields["Threads"]), fds


def assert_flat(
    samples: list[Sample], start: float, stop: float, rss_growth_mib: float
) -> dict[str, list[float]]:
    """The samples from ``start`` to ``stop`` (seconds on their clock) show no leak.

    The median resident memory over the second half is less than ``rss_growth_mib`` above the
    median over the first quarter, and the second half has no more threads or descriptors at its
    most than the first quarter (a leak per reconnection shows there).

    Returns:
        ``rss_mib``: [first quarter's median, second half's median, maximum]; ``fds`` and
        ``threads``: [first quarter's maximum, second half's maximum].
    """
    span = stop - start
    early = [s for s in samples if start <= s.t < start + span / 4]
    late = [s for s in samples if start + span / 2 <= s.t < stop]
    assert len(early) >= 20 and len(late) >= 40, samples
    early_rss = statistics.median(s.rss_kib for s in early) / 1024
    late_rss = statistics.median(s.rss_kib for s in late) / 1024
    assert late_rss - early_rss < rss_growth_mib, (early_rss, late_rss)
    assert max(s.fds for s in late) <= max(s.fds for s in early)
    assert max(s.threads for s in late) <= max(s.threads for s in early)
    return {
        "rss_mib": [
            round(early_rss, 1),
            round(late_rss, 1),
            round(max(s.rss_kib for s in samples) / 1024, 1),
        ],
        "fds": [max(s.fds for s in early), max(s.fds for s in late)],
        "threads": [max(s.threads for s in early), max(s.threads for s in late)],
    }
