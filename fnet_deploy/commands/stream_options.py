"""The options of ``fnet-deploy stream``, each declared once with its help."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fnet_deploy.commands.pair_specs import MAX_DELAY_MS, MAX_FPS

DEFAULT_OUT = "fused.mp4"
"""Where a single pair's fused video goes without ``--out``."""

VisOption = Annotated[
    str | None,
    typer.Option(
        help="Visible source: file://clip.mp4, dir://frames/, "
        "v4l2:///dev/video0?width=640&height=512&fps=30&format=Y16, csi://0, "
        "rtsp://...?transport=tcp&latency=200, gst://<pipeline>, or a bare path. "
        "Default: the shipped sequence."
    ),
]

IrOption = Annotated[str | None, typer.Option(help="Infrared source (same forms as --vis).")]

OutOption = Annotated[
    list[str] | None,
    typer.Option(
        help="Output: file://out.mp4 (.mp4/.avi/.mkv), dir://frames/, display://0, "
        "rtsp://@:8554/fused (served), rtsp://host/path (pushed), http://@:8080 (browser "
        f"view), gst://<pipeline> or a bare path (default: {DEFAULT_OUT}); repeat it for "
        "several outputs of one run."
    ),
]

FpsOption = Annotated[
    float,
    typer.Option(
        min=0.001,
        max=MAX_FPS,
        help="Frame rate of dir:// sources without fps= or timestamps=.",
    ),
]

MaxSkewMsOption = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=MAX_DELAY_MS,
        help="Largest time gap between paired frames (default: half the slower "
        "stream's frame period).",
    ),
]

IrOffsetMsOption = Annotated[
    float,
    typer.Option(
        min=-MAX_DELAY_MS,
        max=MAX_DELAY_MS,
        help="Added to IR timestamps (constant delay between the cameras).",
    ),
]

RegistrationOption = Annotated[
    Path | None,
    typer.Option(
        help="Calibration JSON from `fnet-deploy calibrate` (IR-to-visible map); default: "
        "none (the shipped one for the shipped sequence)."
    ),
]

SizeOption = Annotated[
    str | None,
    typer.Option(
        help="Model input size WIDTHxHEIGHT, e.g. 640x512 (default: the registered crop's size)."
    ),
]

IrSmoothingOption = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=0.999,
        help="Temporal smoothing of the IR range of --ir-norm percentile or minmax (0: none; "
        "0.9: about 10 frames).",
    ),
]

StatsOption = Annotated[
    Path | None, typer.Option(help="Write the run's statistics to this JSON file.")
]

MetricsPortOption = Annotated[
    str | None,
    typer.Option(
        "--metrics-port",
        help="Serve Prometheus metrics (path /metrics) while the run lasts, on PORT (every "
        "interface) or HOST:PORT (127.0.0.1:9100: this machine only); port 0 picks a free "
        "one. An http:// output serves them at /metrics too.",
    ),
]

MaxErrorsOption = Annotated[
    int, typer.Option(min=1, help="Consecutive backend errors that stop the run.")
]

ReconnectOption = Annotated[
    str,
    typer.Option(
        "--reconnect-timeout-s",
        help="Seconds a lost live source may take to come back; 0 or inf: retry forever "
        "(backoff capped at 8 s), every outage counted in the stats.",
    ),
]

OutFpsOption = Annotated[
    float | None,
    typer.Option(
        min=0.001, max=MAX_FPS, help="Frame rate of the output video (default: the visible's)."
    ),
]

LiveOption = Annotated[
    bool | None,
    typer.Option(
        "--live/--no-live", help="Show the live statistics table (default: on a terminal)."
    ),
]

EncoderOption = Annotated[
    str | None,
    typer.Option(
        help="H.264 encoder of rtsp:// outputs: nvv4l2h264 (Jetson), nvh264, vaapih264, "
        "v4l2h264, x264, openh264 (default: the best one GStreamer has)."
    ),
]

PairOption = Annotated[
    list[str] | None,
    typer.Option(
        help="One camera pair of several fused by one model: vis=URI,ir=URI,out=URI, then "
        "if wanted name=..., registration=FILE, size=WxH, ir-offset-ms=... or any other "
        "per-pair option by its name. Repeat for each pair."
    ),
]

PairsOption = Annotated[
    Path | None,
    typer.Option(
        help="A TOML file with one 'pair' table per pair (the keys of --pair), instead of --pair."
    ),
]

BatchTimeoutMsOption = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=MAX_DELAY_MS,
        help="With several pairs: how long a batch waits for the other pairs' frames "
        "(default: 40).",
    ),
]

MaxBatchOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="With several pairs: most frames per model call (default: one per pair, at "
        "most 2 on a CPU and 16 on a GPU, fewer if memory is short; a stop waits for the "
        "call in progress).",
    ),
]
