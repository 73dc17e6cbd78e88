"""What ``fnet-deploy stream`` shows while it runs and when it ends.

One live view, one progress line and one summary for every run: a single pair's show its
per-stage latencies, a run of named pairs one row per pair under a line about the batches.
Without a terminal, plain lines take the live view's place (``label`` at the start, then
:func:`progress_line` every few seconds); the runtime's own messages (reconnections, skipped
frames) show above the view, or as ``stream: <message>`` lines.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from rich.console import Group
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from fnet_deploy.commands.common import console, phase
from fnet_deploy.runtime.multi import MultiStats
from fnet_deploy.runtime.runs import StreamStats
from fnet_deploy.runtime.stats import STAGES, RunStats

STATE_WIDTH = 20
"""Characters of a pair's state shown in the live table (errors are printed whole at the end)."""


@contextlib.contextmanager
def runtime_logging() -> Iterator[None]:
    """Show the runtime's messages above the live view; without a terminal, as plain lines."""
    logger = logging.getLogger("fnet_deploy.runtime")
    handler: logging.Handler
    if console.is_terminal:
        handler = RichHandler(console=console, show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("stream: %(message)s"))
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


@contextlib.contextmanager
def live_view(
    show: bool, stats: StreamStats, label: str
) -> Iterator[Callable[[StreamStats], None] | None]:
    """The run's progress call: a rich Live table of ``stats`` when ``show``; without a
    terminal, also plain lines (``label``, then :func:`progress_line` every few seconds), read
    from the counts that the run brings up to date before each call."""
    with contextlib.ExitStack() as stack:
        view = None
        if show:
            view = stack.enter_context(Live(console=console, refresh_per_second=4, transient=True))
        lines = stack.enter_context(phase(label, lambda: progress_line(stats)))
        if view is None and lines is None:
            yield None
            return

        def update(latest: StreamStats) -> None:
            if view is not None:
                view.update(stats_view(latest))

        yield update


def progress_line(stats: StreamStats) -> str:
    """One line of a run's progress: frames fused, throughput, and where the others went (a
    single pair) or how the frames were batched (named pairs)."""
    if isinstance(stats, MultiStats):
        pairs = ", ".join(
            f"{name} {pair.counts.written}"
            + ("" if pair.stopped_by == "running" else f" ({_shorten(pair.stopped_by)})")
            for name, pair in stats.pairs.items()
        )
        batch = stats.batch
        return (
            f"{stats.written} fused ({pairs}), {stats.throughput:.2f} fps, "
            f"{batch.get('calls', 0)} batches of {batch.get('mean_batch') or 0:.2f} frames on "
            "average"
        )
    counts = stats.counts
    return (
        f"{counts.written} fused of {counts.vis_read} visible frames read, "
        f"{stats.throughput:.2f} fps, dropped live {counts.vis_dropped_live}, "
        f"unpaired {counts.vis_unpaired}, pending {counts.vis_pending}, "
        f"backend errors {counts.infer_errors}"
    )


def stats_view(stats: StreamStats) -> Group:
    """The live table: a pair's counts and per-stage latency percentiles, or one row per pair
    (frames fused, fps, unpaired and dropped frames, reconnections, backend errors, median
    end-to-end latency, state) under a line about the batches."""
    if isinstance(stats, MultiStats):
        return _pairs_view(stats)
    counts = stats.counts
    header = Text(
        f"{counts.written} fused  {stats.throughput:.2f} fps  "
        f"paired {counts.paired}  unpaired {counts.vis_unpaired}  pending {counts.vis_pending}  "
        f"IR unused {counts.ir_unused}  "
        f"dropped live {counts.vis_dropped_live}/{counts.ir_dropped_live}  "
        f"corrupt {counts.vis_corrupt}/{counts.ir_corrupt}  "
        f"backend errors {counts.infer_errors}  reconnects {counts.reconnects}"
    )
    table = Table("stage (ms)", "p50", "p95", "p99", "max", box=None)
    for stage in STAGES:
        summary = stats.latency[stage].summary()
        if summary["count"]:
            table.add_row(stage, *(f"{summary[key]:.1f}" for key in ("p50", "p95", "p99", "max")))
    return Group(header, table)


def _pairs_view(stats: MultiStats) -> Group:
    batch = stats.batch
    fill = batch.get("fill_ratio")
    header = Text(
        f"{stats.written} fused  {stats.throughput:.2f} fps  "
        f"batches {batch.get('calls', 0)}  mean size {batch.get('mean_batch') or 0:.2f}  "
        f"fill {0.0 if fill is None else fill:.2f}  "
        f"pushed by timeout {batch.get('pushed_by_timeout', 0)}"
    )
    table = Table(
        "pair",
        "fused",
        "fps",
        "unpaired",
        "dropped",
        "reconn.",
        "errors",
        "e2e ms",
        "state",
        box=None,
        padding=(0, 1, 0, 0),
    )
    for name, pair in stats.pairs.items():
        counts = pair.counts
        latency = pair.latency["end_to_end"].summary()
        table.add_row(
            name,
            str(counts.written),
            f"{pair.throughput:.1f}",
            str(counts.vis_unpaired),
            f"{counts.vis_dropped_live}/{counts.ir_dropped_live}",
            str(counts.reconnects),
            str(counts.infer_errors),
            f"{latency['p50']:.0f}" if latency["count"] else "-",
            _shorten(pair.stopped_by),
        )
    return Group(header, table)


def _shorten(text: str, width: int = STATE_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def summary(stats: StreamStats, stats_path: Path | None) -> None:
    """The final table, and one line: frames fused, where to, how long, how it ended."""
    console.print(stats_view(stats))
    where = f"; statistics in {stats_path}" if stats_path else ""
    if isinstance(stats, RunStats):
        what = f"{stats.counts.written} fused frames -> {stats.info.get('sink', '')}"
    else:
        what = f"{stats.written} fused frames from {len(stats.pairs)} pairs"
    console.print(f"{what} in {stats.elapsed:.1f} s ({stats.stopped_by}){where}")
