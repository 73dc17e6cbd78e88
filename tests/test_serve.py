"""``fnet-deploy serve``: a real Triton server on loopback, fused through by ``fuse --model
triton://``, batching concurrent clients, stopped by SIGTERM; bad options refused before work."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from fnet_deploy.inference.select import ModelChoice, open_runner
from fnet_deploy.runtime.gain import ThermalGain
from fnet_deploy.runtime.pipeline import StopFlag, StreamOptions, StreamPipeline
from fnet_deploy.runtime.registration import Registrar
from fnet_deploy.runtime.stats import RunStats
from fnet_deploy.serving.repository import ServedModel, write_repository
from fnet_deploy.serving.server import Endpoints, TritonServer
from tests.conftest import NATO as NATO_SEQUENCE
from tests.fake_streams import Camera, MemorySink, wait_for
from tests.test_triton_runner import assert_fuse_matches_local, free_port, needs_server

CLI = [sys.executable, "-c", "from fnet_deploy.cli import app; app()"]
QUEUE_DELAY_MS = 1000
"""The served model's batching window in the test: long enough that concurrent clients share
calls however slow the machine, short enough for the test."""


@dataclass
class Served:
    process: subprocess.Popen[str]
    grpc: int
    http: int
    metrics: int
    lines: list[str]


def _ports() -> list[str]:
    ports = [free_port() for _ in range(3)]
    return [
        "--grpc-port",
        str(ports[0]),
        "--http-port",
        str(ports[1]),
        "--metrics-port",
        str(ports[2]),
    ]


@pytest.fixture(scope="module")
def served(tiny_weights: Path) -> Iterator[Served]:
    """``fnet-deploy serve`` of the tiny weights (PyTorch deploy form, batches of up to 8), in a
    process of its own; yields once it says where it serves."""
    ports = _ports()
    process = subprocess.Popen(
        [
            *CLI, "serve", "--weights", str(tiny_weights), "--backend", "torch", *ports,
            "--max-batch", "8", "--max-queue-delay-ms", str(QUEUE_DELAY_MS), "--threads", "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "400"},
    )  # fmt: skip
    lines: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:  # ends when the process does
        lines.append(line.rstrip())
        if line.startswith("serving "):
            break
    if process.poll() is not None or not lines[-1:] or not lines[-1].startswith("serving "):
        pytest.fail("serve did not start: " + " | ".join(lines[-10:]))
    reader = threading.Thread(
        target=lambda: lines.extend(text.rstrip() for text in process.stdout or []), daemon=True
    )
    reader.start()
    grpc, http, metrics = (int(ports[i]) for i in (1, 3, 5))
    try:
        yield Served(process, grpc, http, metrics, lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@needs_server
def test_serve_says_where_it_serves(served: Served) -> None:
    line = next(text for text in served.lines if text.startswith("serving "))
    assert f"triton://127.0.0.1:{served.grpc}/fnet" in line
    assert f"triton+http://127.0.0.1:{served.http}/fnet" in line
    assert f"http://127.0.0.1:{served.metrics}/metrics" in line


@needs_server
def test_fuse_through_serve_matches_the_local_runner(
    served: Served, tiny_weights: Path, crop_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    assert_fuse_matches_local(served.grpc, tiny_weights, crop_pair, tmp_path)


def _metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    match = re.search(rf'^{name}\{{model="fnet",version="1"\}} ([0-9.e+]+)$', text, re.M)
    assert match, f"{name} not in the metrics"
    return float(match.group(1))


@needs_server
def test_concurrent_clients_share_batches(served: Served) -> None:
    requests_before = _metric(served.metrics, "nv_inference_request_success")
    calls_before = _metric(served.metrics, "nv_inference_exec_count")
    clients, each = 8, 2
    errors: list[BaseException] = []
    start = threading.Barrier(clients)
    feed = {
        "ir": np.full((1, 1, 16, 16), 0.25, np.float32),
        "vis": np.full((1, 1, 16, 16), 0.75, np.float32),
    }

    def client() -> None:
        try:
            with open_runner(f"triton://127.0.0.1:{served.grpc}/fnet") as runner:
                start.wait()
                for _ in range(each):
                    assert runner.infer(feed)["fused"].shape == (1, 1, 16, 16)
        except BaseException as err:  # reported below, in the test's thread
            errors.append(err)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors

    def requests() -> float:  # Triton brings its metrics up to date every 2 s
        return _metric(served.metrics, "nv_inference_request_success") - requests_before

    wait_for(lambda: requests() >= clients * each, "metrics of every request", 120)
    calls = _metric(served.metrics, "nv_inference_exec_count") - calls_before
    assert requests() == clients * each
    assert calls < requests()  # Triton's dynamic batcher put several clients' frames in one call


@needs_server
def test_two_stream_pairs_fuse_through_serve(served: Served, tmp_path: Path) -> None:
    """``stream --pair ... --model triton://...``: both pairs' frames go through the server."""
    nato = NATO_SEQUENCE
    pairs = [
        f"vis=dir://{nato / 'vi'},ir=dir://{nato / 'ir'},out=dir://{tmp_path / name},name={name}"
        for name in ("a", "b")
    ]
    stats = tmp_path / "stats.json"
    args = [*CLI, "stream", "--model", f"triton://127.0.0.1:{served.grpc}/fnet", "--no-live"]
    for text in pairs:
        args += ["--pair", text]
    result = subprocess.run(
        [*args, "--stats", str(stats)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    document = json.loads(stats.read_text())
    assert document["backend"] == "triton"
    for name in ("a", "b"):
        frames = len(list((tmp_path / name).iterdir()))
        assert document["pairs"][name]["frames"]["written"] == frames == 12


@needs_server
def test_sigterm_stops_the_server_and_frees_its_ports(served: Served) -> None:
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(120) == 128 + signal.SIGTERM
    deadline = time.monotonic() + 60
    while any(text.startswith("stopped by SIGTERM") for text in served.lines) is False:
        assert time.monotonic() < deadline, served.lines
        time.sleep(0.1)
    for port in (served.grpc, served.http, served.metrics):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))  # nothing listens any more


def _refused(*args: str) -> str:
    result = subprocess.run([*CLI, "serve", *args], capture_output=True, text=True, timeout=300)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_bad_serve_options_are_one_line_before_work(tmp_path: Path) -> None:
    port = free_port()
    assert "--http-port" in _refused("--grpc-port", str(port), "--http-port", str(port))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = str(busy.getsockname()[1])
        assert f"--grpc-port {taken}: cannot listen on 127.0.0.1" in _refused(
            "--grpc-port", taken, *_ports()[2:]
        )
    assert "not a server's" in _refused("--model", "triton://127.0.0.1:1/fnet", *_ports())
    missing = str(tmp_path / "missing.safetensors")
    assert "missing.safetensors" in _refused("--weights", missing, *_ports())
    assert "--max-batch" in _refused("--max-batch", "0")


@needs_server
def test_a_stream_waits_out_the_server_restarting(tmp_path: Path, tiny_weights: Path) -> None:
    """The server is stopped mid-stream and started again on the same ports: the frames meanwhile
    are counted as backend errors and one backend outage, not as a failed run, and fusing goes
    on once the server is back (the runner retries with backoff, without a request per frame)."""
    model = ServedModel(
        "fnet", ModelChoice(backend="torch", weights=tiny_weights), max_batch=4, threads=1
    )
    models, backends = write_repository(tmp_path / "repo", model)
    endpoints = Endpoints("127.0.0.1", free_port(), free_port(), free_port())

    def started(log: str) -> TritonServer:
        server = TritonServer(models, backends, endpoints, tmp_path / log)
        server.start()
        server.wait_ready("fnet", 600.0, lambda: False)
        return server

    server = started("first.log")
    epoch = time.monotonic()
    vis, ir = (
        Camera(f"rtsp://cam/{role}", (64, 48), role == "vis", 10.0, epoch) for role in ("vis", "ir")
    )
    options = StreamOptions(reconnect_timeout=600.0, max_consecutive_errors=2)
    runner = open_runner(endpoints.model_uris("fnet")[0])
    stats = RunStats()
    stop = StopFlag()
    failures: list[BaseException] = []
    with runner:
        pipeline = StreamPipeline(
            vis, ir, runner, MemorySink("out"), Registrar(None), ThermalGain(), options, stats
        )

        def run() -> None:
            try:
                pipeline.run(stop)
            except BaseException as err:  # reported in the test's thread
                failures.append(err)

        thread = threading.Thread(target=run)
        thread.start()
        try:
            counts = stats.counts
            wait_for(lambda: counts.written >= 3, "frame fused through the first server", 600)
            server.stop()
            wait_for(
                lambda: counts.infer_errors >= 3, "frame counted while the server is down", 600
            )
            before = counts.written
            server = started("second.log")
            wait_for(lambda: counts.written > before + 2, "frame fused after the restart", 600)
        finally:
            stop.set("test over")
            thread.join(120)
            server.stop()
    assert not failures, failures
    assert stats.stopped_by == "test over"
    outages = stats.outages.summary(stats.started, time.monotonic())
    backend = [o for o in outages["recent"] if o["source"] == "backend"]
    assert outages["count"] == 1 and len(backend) == 1 and not backend[0]["ongoing"]
    messages = [event["message"] for event in stats.to_dict()["events"]]
    assert any("unreachable" in text for text in messages), messages
    assert any("back after" in text for text in messages), messages
