"""N clients through one ``fnet-deploy serve`` against N local processes, in one run.

    python benchmarks/bench_serve.py [--clients 1,2,4,8] [--frames 12] [--size 176x128]
        [--weights W] [--max-queue-delay-ms 2] [--json F]

The served model is the one ``fnet-deploy serve`` runs for the options (by default the packaged
weights, on a CPU as their cached ONNX form under ONNX Runtime), in the bundled Triton server on
loopback, batches of up to 8. For each N, two ways take turns:

- ``served``: N client processes, each sending ``--frames`` frames one at a time through
  ``--model triton://127.0.0.1:PORT/fnet`` (the server's dynamic batcher may put several
  clients' frames in one call);
- ``local``: N processes, each with its own runner of the same model (what N machines, or N
  ``fnet-deploy stream`` processes on one machine, would do).

Each process opens its runner, fuses one frame untimed, waits for the others, then times its
frames (Nato camp pairs resized to ``--size``). Reported per way and N: frames per second over
the window from the first timed frame to the last (all processes together), per-frame latency
p50 / p95, and for ``served`` the mean batch size from Triton's own metrics. The machine (CPU,
cores, load average before and after) goes with the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fnet_deploy.assets import asset_path
from fnet_deploy.inference.select import ModelChoice, open_runner
from fnet_deploy.serving.repository import ServedModel, write_repository
from fnet_deploy.serving.server import Endpoints, TritonServer

NATO = asset_path("sequences", "nato_camp")


def read_grey(path: Path, size: tuple[int, int]) -> np.ndarray:
    """A grey image resized to ``size`` (W, H), uint8."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise SystemExit(f"{path}: cannot read")
    return cv2.resize(image, size)


def frames(size: tuple[int, int], count: int) -> list[dict[str, np.ndarray]]:
    """``count`` feeds (1 x 1 x H x W float32) of Nato camp pairs resized to ``size`` (W, H)."""
    names = sorted(p.name for p in (NATO / "vi").glob("*.png"))
    feeds = []
    for i in range(count):
        name = names[i % len(names)]
        ir, vis = (read_grey(NATO / folder / name, size) for folder in ("ir", "vi"))
        feeds.append(
            {"ir": (ir / 255.0).astype(np.float32)[None, None],
             "vis": (vis / 255.0).astype(np.float32)[None, None]}
        )  # fmt: skip
    return feeds


def worker(model: str, weights: str | None, size: tuple[int, int], count: int, go: Path) -> None:
    """One process: open the runner, warm it up, wait for ``go``, time ``count`` frames; prints
    JSON (start and end of the timed window, per-frame seconds)."""
    if model:
        runner = open_runner(model)
    else:
        runner = ModelChoice(weights=Path(weights) if weights else None).open()
    feeds = frames(size, count + 1)
    with runner:
        runner.infer(feeds[0])
        print("ready", flush=True)
        while not go.exists():
            time.sleep(0.005)
        seconds = []
        start = time.time()
        for feed in feeds[1:]:
            t0 = time.perf_counter()
            runner.infer(feed)
            seconds.append(time.perf_counter() - t0)
        end = time.time()
    print(json.dumps({"start": start, "end": end, "seconds": seconds}), flush=True)


def run_way(
    n: int, model: str, weights: str | None, size: tuple[int, int], count: int, work: Path
) -> dict[str, Any]:
    """N worker processes started together; their timed windows and frames joined."""
    go = work / f"go-{model != ''}-{n}"
    width, height = size
    command = [
        sys.executable, __file__, "--worker", model, "--weights", weights or "",
        "--size", f"{width}x{height}", "--frames", str(count), "--go", str(go),
    ]  # fmt: skip
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(n)]
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != "ready":
            raise SystemExit(f"a worker failed to start: {line!r}")
    go.touch()
    results = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a worker failed (exit {proc.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    window = max(r["end"] for r in results) - min(r["start"] for r in results)
    seconds = sorted(s for r in results for s in r["seconds"])
    return {
        "processes": n,
        "frames": len(seconds),
        "fps": round(len(seconds) / window, 3),
        "p50_ms": round(1000 * statistics.median(seconds), 1),
        "p95_ms": round(1000 * seconds[min(len(seconds) - 1, int(0.95 * len(seconds)))], 1),
    }


def metric(port: int, name: str) -> float:
    """One of Triton's counters for model ``fnet``."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    for line in text.splitlines():
        if line.startswith(f'{name}{{model="fnet"'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", default="1,2,4,8")
    parser.add_argument("--frames", type=int, default=12, help="timed frames per process")
    parser.add_argument("--size", default="176x128", help="WIDTHxHEIGHT of each frame")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--max-queue-delay-ms", type=float, default=2.0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--go", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    if args.worker is not None:
        worker(args.worker, args.weights or None, (width, height), args.frames, args.go)
        return
    clients = [int(v) for v in args.clients.split(",")]
    choice = ModelChoice(weights=Path(args.weights) if args.weights else None)
    choice.open().activate()  # the ONNX cache is filled before any process times anything
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as folder:
        work = Path(folder)
        served = ServedModel(
            "fnet", choice, max_batch=8, queue_delay_us=round(args.max_queue_delay_ms * 1000)
        )
        models, backends = write_repository(work / "repo", served)
        ends = Endpoints("127.0.0.1", free_port(), free_port(), free_port())
        server = TritonServer(models, backends, ends, work / "server.log")
        server.start()
        try:
            server.wait_ready("fnet", 600.0, lambda: False)
            uri = ends.model_uris("fnet")[0]
            for n in clients:
                requests = metric(ends.metrics_port, "nv_inference_request_success")
                calls = metric(ends.metrics_port, "nv_inference_exec_count")
                row = run_way(n, uri, args.weights, (width, height), args.frames, work)
                done = metric(ends.metrics_port, "nv_inference_request_success") - requests
                made = metric(ends.metrics_port, "nv_inference_exec_count") - calls
                row.update(way="served", mean_batch=round(done / made, 2) if made else None)
                rows.append(row)
                local = run_way(n, "", args.weights, (width, height), args.frames, work)
                rows.append({**local, "way": "local"})
                print(json.dumps(rows[-2]), json.dumps(rows[-1]), sep="\n", flush=True)
        finally:
            server.stop()
    report = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_before": [round(v, 2) for v in load_before],
            "load_after": [round(v, 2) for v in os.getloadavg()],
        },
        "size": f"{width}x{height}",
        "frames_per_process": args.frames,
        "max_queue_delay_ms": args.max_queue_delay_ms,
        "rows": rows,
    }
    print("| N | served fps | local fps | served / local | served p50 ms | local p50 ms | "
          "mean batch |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for n in clients:
        s = next(r for r in rows if r["way"] == "served" and r["processes"] == n)
        loc = next(r for r in rows if r["way"] == "local" and r["processes"] == n)
        print(
            f"| {n} | {s['fps']} | {loc['fps']} | {s['fps'] / loc['fps']:.2f} | {s['p50_ms']} | "
            f"{loc['p50_ms']} | {s['mean_batch']} |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
