"""Several camera pairs: batched in one process, unbatched in one process, or one process each.

    python benchmarks/bench_multi_stream.py [--pairs 4] [--frames 24] [--size 176x128]
        [--weights W | --tiny] [--backend B] [--device cpu] [--repeat 1] [--json F]

Each pair is a visible and an infrared recording (MJPEG AVI at 10 fps, ``--size``, ``--frames``
frames of the shipped Nato camp sequence, each pair starting at another frame), written to a
temporary folder. The same work, every pair's frames fused and written to an AVI, is done three
ways, each by the real CLI in subprocesses:

- ``batched``: one ``fnet-deploy stream`` with one ``--pair`` per pair (one model, batches of up
  to ``--pairs`` frames);
- ``unbatched``: the same with ``--max-batch 1`` (one model, one frame per call);
- ``separate``: ``--pairs`` single-pair ``fnet-deploy stream`` processes started together (one
  model each).

Reported per way (median over ``--repeat`` rounds, the ways taking turns within a round): the
wall time from launch to the last exit (start-up included: what a user waits for), frames per
second over it, the streaming rate (frames fused per second of each process's own run time, from
its statistics JSON, summed over processes that run at the same time; a single-pair run's time
includes opening its runner, a few tenths of a second, a several-pair run's does not), the
frames fused, the mean batch size, and the peak resident memory of the processes together
(``/proc``, sampled every 0.1 s). The machine (CPU, cores, load average before and after) goes
with the numbers. Every run's statistics JSON is kept in the results.
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
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import torch

from fnet_deploy.assets import asset_path
from fnet_deploy.model import FNet, ModelConfig, save_fnet

CLI = [sys.executable, "-m", "fnet_deploy.cli", "stream", "--no-live"]
NATO = asset_path("sequences", "nato_camp")
FPS = 10
SAMPLE_SECONDS = 0.1


def write_pairs(
    folder: Path, pairs: int, frames: int, size: tuple[int, int]
) -> list[dict[str, Path]]:
    """``pairs`` visible/IR AVI recordings of ``frames`` Nato camp frames resized to ``size``."""
    names = sorted(p.name for p in (NATO / "vi").glob("*.png"))
    made = []
    for pair in range(pairs):
        paths = {}
        for modality in ("vi", "ir"):
            path = folder / f"pair{pair}_{modality}.avi"
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), FPS, size)
            for i in range(frames):
                name = names[(pair * 3 + i) % len(names)]
                image = cv2.imread(str(NATO / modality / name), cv2.IMREAD_COLOR)
                writer.write(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
            writer.release()
            paths[modality] = path
        paths["out"] = folder / f"pair{pair}_fused.avi"
        made.append(paths)
    return made


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` in KiB (0 once it has ended)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def launch(commands: list[list[str]]) -> tuple[float, int, list[str]]:
    """Start the commands together; wall seconds until the last exits, peak summed RSS (KiB),
    and their outputs. Fails on a non-zero exit."""
    started = time.monotonic()
    processes = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for cmd in commands
    ]
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, sum(rss_kib(p.pid) for p in processes))
            done.wait(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    outputs = [p.communicate()[0] for p in processes]
    wall = time.monotonic() - started
    done.set()
    sampler.join()
    for process, output in zip(processes, outputs, strict=True):
        if process.returncode != 0:
            raise SystemExit(f"a stream run failed ({process.returncode}):\n{output}")
    return wall, peak, outputs


def run_way(way: str, pairs: list[dict[str, Path]], model: list[str], work: Path) -> dict[str, Any]:
    """One way of doing the work; its wall time, frames, batches, memory and stats."""
    for pair in pairs:
        pair["out"].unlink(missing_ok=True)
    if way == "separate":
        commands = [
            [
                *CLI,
                *model,
                "--vis",
                str(pair["vi"]),
                "--ir",
                str(pair["ir"]),
                "--out",
                str(pair["out"]),
                "--stats",
                str(work / f"separate{i}.json"),
            ]
            for i, pair in enumerate(pairs)
        ]
        stats_files = [work / f"separate{i}.json" for i in range(len(pairs))]
    else:
        options = [
            item
            for pair in pairs
            for item in ("--pair", f"vis={pair['vi']},ir={pair['ir']},out={pair['out']}")
        ]
        extra = ["--max-batch", "1"] if way == "unbatched" else []
        stats_files = [work / f"{way}.json"]
        commands = [[*CLI, *model, *options, *extra, "--stats", str(stats_files[0])]]
    wall, peak, _ = launch(commands)
    docs = [json.loads(path.read_text()) for path in stats_files]
    if way == "separate":
        written = sum(doc["frames"]["written"] for doc in docs)
        mean_batch = 1.0
    else:
        written = docs[0]["written"]
        mean_batch = docs[0]["batch"]["mean_batch"]
    # the processes stream at the same time: their rates add up
    streaming = sum(doc["throughput_fps"] for doc in docs)
    return {
        "way": way,
        "processes": len(commands),
        "wall_s": round(wall, 2),
        "written": written,
        "fps": round(written / wall, 3),
        "streaming_fps": round(streaming, 3),
        "mean_batch": mean_batch,
        "peak_rss_mib": round(peak / 1024, 1),
        "backend": docs[0]["backend"],
        "stats": docs,
    }


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "opencv": cv2.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--frames", type=int, default=24, help="frames per recording")
    parser.add_argument("--size", default="176x128", help="frame and model size WxH")
    parser.add_argument("--weights", type=Path, help="default: the package's trained weights")
    parser.add_argument("--tiny", action="store_true", help="a seeded 4-filter model instead")
    parser.add_argument("--backend", help="--backend of every run (default: the default choice)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--ways", default="batched,unbatched,separate")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    ways = args.ways.split(",")
    with tempfile.TemporaryDirectory(prefix="bench_multi_") as tmp:
        work = Path(tmp)
        model = ["--device", args.device]
        if args.tiny:
            torch.manual_seed(0)
            save_fnet(work / "tiny.safetensors", FNet(ModelConfig(filters=4, kernel_size=3)))
            model += ["--weights", str(work / "tiny.safetensors")]
        elif args.weights:
            model += ["--weights", str(args.weights)]
        if args.backend:
            model += ["--backend", args.backend]
        pairs = write_pairs(work, args.pairs, args.frames, (width, height))
        # One run first so that a first use (the ONNX export into the cache) is not timed.
        launch(
            [
                [
                    *CLI,
                    *model,
                    "--vis",
                    str(pairs[0]["vi"]),
                    "--ir",
                    str(pairs[0]["ir"]),
                    "--out",
                    str(work / "warm.avi"),
                ]
            ]
        )
        load_before = os.getloadavg()
        rounds: dict[str, list[dict[str, Any]]] = {way: [] for way in ways}
        for r in range(args.repeat):
            for way in ways[r % len(ways) :] + ways[: r % len(ways)]:
                result = run_way(way, pairs, model, work)
                rounds[way].append(result)
                print(
                    f"{way:10s} {result['processes']} process(es) {result['wall_s']:7.2f} s "
                    f"{result['written']} frames {result['fps']:7.2f} fps "
                    f"(streaming {result['streaming_fps']:.2f}) "
                    f"mean batch {result['mean_batch']} peak RSS {result['peak_rss_mib']} MiB",
                    flush=True,
                )
        load_after = os.getloadavg()
    summary = {}
    for way, results in rounds.items():
        median_wall = statistics.median(r["wall_s"] for r in results)
        summary[way] = {
            "wall_s": median_wall,
            "fps": round(results[0]["written"] / median_wall, 3),
            "streaming_fps": statistics.median(r["streaming_fps"] for r in results),
            "written": results[0]["written"],
            "processes": results[0]["processes"],
            "mean_batch": results[0]["mean_batch"],
            "peak_rss_mib": max(r["peak_rss_mib"] for r in results),
            "backend": results[0]["backend"],
        }
    doc = {
        "command": " ".join(sys.argv),
        "pairs": args.pairs,
        "frames_per_pair": args.frames,
        "size": [width, height],
        "model": "tiny (4 filters, seeded)" if args.tiny else str(args.weights or "default"),
        "machine": machine(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in load_after],
        "summary": summary,
        "runs": rounds,
    }
    print(json.dumps({k: v for k, v in doc.items() if k != "runs"}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
