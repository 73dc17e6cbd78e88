"""Watching a stream: Prometheus metrics (``--metrics-port``, the browser view's ``/metrics``),
a ``/stats.json`` that is always current, fps over the fusing time, the sync wait apart from
the pairing."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fnet_deploy.cli import app
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.runtime.prometheus import StreamMetrics, parse_metrics_address
from fnet_deploy.runtime.stats import STAGES, RunStats
from fnet_deploy.runtime.uri import parse_uri
from fnet_deploy.runtime.web_view import WebViewSink
from tests.videos import write_video

prometheus_client = pytest.importorskip(
    "prometheus_client", reason="the metrics are served by prometheus_client"
)
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

CLI = [sys.executable, "-c", "from fnet_deploy.cli import app; app()"]


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of a Prometheus text document: (name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    """The sample ``name`` of the single pair with ``labels``."""
    return found[(name, tuple(sorted({"pair": "main", **labels}.items())))]


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return bytes(response.read())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9100", ("0.0.0.0", 9100)),
        ("0", ("0.0.0.0", 0)),
        ("127.0.0.1:9100", ("127.0.0.1", 9100)),
        ("[::1]:9100", ("::1", 9100)),
    ],
)
def test_metrics_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_metrics_address(text) == expected


@pytest.mark.parametrize("text", ["", "70000", "-1", "web", "127.0.0.1:", ":9100", "[::1]9100"])
def test_bad_metrics_addresses_name_the_option(text: str) -> None:
    with pytest.raises(FnetError, match=r"^--metrics-port: expected a port"):
        parse_metrics_address(text)


def test_counts_and_latencies_are_exported_per_pair() -> None:
    metrics = StreamMetrics()
    stats = RunStats()
    metrics.add_pair("main", stats)
    stats.counts.vis_read, stats.counts.ir_read, stats.counts.written = 7, 6, 5
    stats.counts.vis_unpaired, stats.counts.infer_errors, stats.counts.reconnects = 1, 1, 2
    stats.queue_depth.update({"vis": 3, "ir": 0, "pairing": 1})
    for seconds in (0.002, 0.2, 3.0):
        stats.latency["infer"].add(seconds)
    body, kind = metrics.exposition()
    assert kind.startswith("text/plain")
    found = samples(body.decode())
    assert value(found, "fnet_frames_read_total", source="vis") == 7
    assert value(found, "fnet_frames_read_total", source="ir") == 6
    assert value(found, "fnet_frames_fused_total") == 5
    assert value(found, "fnet_frames_dropped_total", source="vis", reason="unpaired") == 1
    assert value(found, "fnet_frames_dropped_total", source="ir", reason="live") == 0
    assert value(found, "fnet_backend_errors_total") == 1
    assert value(found, "fnet_reconnects_total") == 2
    assert value(found, "fnet_queue_depth", queue="vis") == 3
    assert value(found, "fnet_stage_latency_seconds_count", stage="infer") == 3
    assert value(found, "fnet_stage_latency_seconds_bucket", stage="infer", le="0.25") == 2
    assert value(found, "fnet_stage_latency_seconds_sum", stage="infer") == pytest.approx(3.202)
    assert {dict(labels)["stage"] for name, labels in found if name.endswith("_count")} == set(
        STAGES
    )


def test_throughput_counts_the_fusing_time_only() -> None:
    stats = RunStats(started=100.0)
    assert stats.phase == "setting up" and stats.throughput == 0.0
    stats.fusing_started, stats.first_written, stats.finished = 130.0, 131.0, 140.0
    stats.counts.written = 50
    doc = stats.to_dict()
    assert doc["phase"] == "finished"
    assert (doc["setup_s"], doc["fusing_s"], doc["wall_time_s"]) == (30.0, 10.0, 40.0)
    assert doc["first_frame_s"] == 31.0
    assert doc["throughput_fps"] == 5.0


def test_stats_json_is_current_without_waiting_for_the_pipeline() -> None:
    view = WebViewSink(parse_uri("http://127.0.0.1:0", "sink"), fps=5)
    try:
        assert json.loads(get(view.url + "stats.json"))["stopped_by"] == "starting"
        stats = RunStats()
        metrics = StreamMetrics()
        metrics.add_pair("main", stats)
        view.attach(stats, metrics)
        assert json.loads(get(view.url + "stats.json"))["phase"] == "setting up"
        stats.counts.written = 4  # no progress tick: the next request sees it at once
        assert json.loads(get(view.url + "stats.json"))["frames"]["written"] == 4

        def refresh() -> None:  # a running pipeline brings its counts up to date when asked
            stats.counts.vis_read = 9

        stats.refresh = refresh
        assert json.loads(get(view.url + "stats.json"))["frames"]["vis_read"] == 9
        found = samples(get(view.url + "metrics").decode())
        assert value(found, "fnet_frames_fused_total") == 4
    finally:
        view.close()


def test_the_sync_wait_is_apart_from_the_pairing(tmp_path: Path, tiny_weights: Path) -> None:
    stats_path = tmp_path / "s.json"
    result = CliRunner().invoke(
        app,
        [
            "stream", "--weights", str(tiny_weights), "--backend", "torch", "--no-live",
            "--out", f"dir://{tmp_path / 'frames'}", "--stats", str(stats_path),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(stats_path.read_text())
    latency, written = doc["latency_ms"], doc["frames"]["written"]
    assert written == 12
    assert latency["sync_wait"]["count"] == latency["sync"]["count"] == written
    # the two parts of the old "sync" stage, neither longer than the frame's whole way
    assert latency["sync_wait"]["mean"] + latency["sync"]["mean"] <= (
        latency["end_to_end"]["mean"] + 0.002
    )
    assert doc["setup_s"] + doc["fusing_s"] == pytest.approx(doc["wall_time_s"], abs=0.002)
    assert doc["throughput_fps"] == pytest.approx(written / doc["fusing_s"], rel=0.01)
    assert 0 < doc["first_frame_s"] <= doc["wall_time_s"]


def _read_until(process: subprocess.Popen[str], patterns: dict[str, str]) -> dict[str, str]:
    """Read the process's output lines until each pattern's first group is found."""
    found: dict[str, str] = {}
    seen: list[str] = []
    assert process.stdout is not None
    while len(found) < len(patterns):
        line = process.stdout.readline()
        assert line, "the stream ended before saying where it serves:\n" + "".join(seen)
        seen.append(line)
        for key, pattern in patterns.items():
            match = re.search(pattern, line)
            if match and key not in found:
                found[key] = match.group(1)
    return found


@pytest.mark.slow
def test_metrics_and_stats_are_scraped_during_a_real_stream(
    tmp_path: Path, tiny_weights: Path
) -> None:
    vis = write_video(tmp_path / "vis.avi", 25, 600, (160, 120))
    ir = write_video(tmp_path / "ir.avi", 25, 600, (160, 120))
    out, stats_path = tmp_path / "fused.mp4", tmp_path / "s.json"
    process = subprocess.Popen(
        [
            *CLI, "stream", "--vis", str(vis), "--ir", str(ir), "--weights", str(tiny_weights),
            "--backend", "torch", "--out", str(out), "--out", "http://127.0.0.1:0",
            "--metrics-port", "127.0.0.1:0", "--stats", str(stats_path), "--no-live",
        ],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        urls = _read_until(
            process,
            {"metrics": r"Prometheus metrics at (\S+)", "view": r"browser view at (\S+)"},
        )
        deadline = time.monotonic() + 120
        while True:  # until a few frames are fused (the run lasts far longer)
            found = samples(get(urls["metrics"]).decode())
            fused = value(found, "fnet_frames_fused_total")
            if fused >= 3:
                break
            assert process.poll() is None, "the stream ended before 3 frames were scraped"
            assert time.monotonic() < deadline, "fewer than 3 frames fused in 120 s"
            time.sleep(0.1)
        assert process.poll() is None  # scraped during the run
        assert value(found, "fnet_frames_read_total", source="vis") >= fused
        assert value(found, "fnet_backend_errors_total") == 0
        assert value(found, "fnet_reconnects_total") == 0
        for queue in ("vis", "ir", "pairing"):
            assert value(found, "fnet_queue_depth", queue=queue) >= 0
        count = value(found, "fnet_stage_latency_seconds_count", stage="end_to_end")
        assert count >= 1
        assert value(found, "fnet_stage_latency_seconds_bucket", stage="end_to_end", le="+Inf") == (
            count
        )
        live: dict[str, Any] = json.loads(get(urls["view"] + "stats.json"))
        assert live["phase"] == "fusing"
        assert live["frames"]["written"] >= fused  # asked after the scrape: never behind it
        served = samples(get(urls["view"] + "metrics").decode())
        assert value(served, "fnet_frames_fused_total") >= fused
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 128 + signal.SIGTERM, output
    doc = json.loads(stats_path.read_text())
    assert doc["stopped_by"] == "signal SIGTERM"
    assert doc["frames"]["written"] >= fused
    assert out.exists()


def test_several_pairs_are_exported_each_with_its_name(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the metrics as the run leaves them, read just before the server closes
    closing = StreamMetrics.close
    last: list[Samples] = []

    def close_after_reading(metrics: StreamMetrics) -> None:
        last.append(samples(metrics.exposition()[0].decode()))
        closing(metrics)

    monkeypatch.setattr(StreamMetrics, "close", close_after_reading)
    pairs = []
    for name, count in (("north", 6), ("south", 4)):
        vis = write_video(tmp_path / f"{name}_vis.avi", 10, count)
        ir = write_video(tmp_path / f"{name}_ir.avi", 10, count)
        pairs += ["--pair", f"vis={vis},ir={ir},out=dir://{tmp_path / name},name={name}"]
    result = CliRunner().invoke(
        app,
        [
            "stream", "--weights", str(tiny_weights), "--backend", "torch", "--no-live", *pairs,
            "--metrics-port", "127.0.0.1:0",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Prometheus metrics at http://127.0.0.1:" in result.output
    (found,) = last
    for name, count in (("north", 6), ("south", 4)):
        assert found[("fnet_frames_fused_total", (("pair", name),))] == count
        stage = (("pair", name), ("stage", "batch_wait"))
        assert found[("fnet_stage_latency_seconds_count", stage)] == count


def test_a_metrics_port_in_use_is_refused_before_any_work(
    tmp_path: Path, tiny_weights: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = tmp_path / "fused.mp4"
        result = CliRunner().invoke(
            app,
            [
                "stream", "--weights", str(tiny_weights), "--no-live", "--out", str(out),
                "--metrics-port", f"127.0.0.1:{port}",
            ],
        )  # fmt: skip
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("error: --metrics-port: cannot serve on ")
    assert f"port {port}" in lines[0]
    assert not out.exists() and os.listdir(tmp_path) == []
