"""Bad input across every command: one line naming the file or option, exit 2, nothing written.

Each row runs the real CLI (one driver process imports it once and forks a child per row, see
``tests/test_missing_extras.py``) and must end with exit code 2, exactly one non-empty line on
stderr that starts with ``error:`` and names the culprit, no traceback, nothing at the row's
output location, and every input file byte for byte as it was. Each row has a timeout: a hang
is a failure. New commands and options add their rows here.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from fnet_deploy.model import FNet, save_fnet
from fnet_deploy.runtime.capabilities import has_gstreamer
from tests.conftest import NATO, TINY
from tests.test_missing_extras import Outcome, run_cases

pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork"), reason="the driver forks one child per case"
)

CASE_TIMEOUT = 60
"""Seconds a row may take; every row fails before any work, in well under a second of its own."""


@dataclass(frozen=True)
class Case:
    """A command line that must be refused: ``names`` is what its one line must contain (the
    file or option and the problem), ``out`` where nothing may appear. A refusal that can only
    come from the work itself (``after_work``: a map found implausible once estimated) may follow
    the command's progress lines; every other row is refused before its first phase, which the
    driver announces as it begins (``announce_at_once``), so that a late refusal fails here on
    every machine, not only on a slow one."""

    name: str
    args: tuple[str, ...]
    names: tuple[str, ...]
    out: Path | None = None
    after_work: bool = False


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` grey pixels (and holds almost none)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _inputs(work: Path) -> dict[str, Path]:
    """The files the rows read: real crops, broken images, broken weights, a blocking file."""
    files: dict[str, Path] = {}
    for modality in ("ir", "vi"):
        frame = cv2.imread(str(NATO / modality / "000005.png"), cv2.IMREAD_GRAYSCALE)
        folder = work / "pairs" / modality
        folder.mkdir(parents=True)
        cv2.imwrite(str(folder / "5.png"), frame[100:148, 150:198])
        files[modality] = folder / "5.png"
    files["small"] = work / "small.png"
    cv2.imwrite(str(files["small"]), np.zeros((32, 40), np.uint8))
    files["empty"] = work / "empty.png"
    files["empty"].write_bytes(b"")
    files["truncated"] = work / "truncated.png"
    files["truncated"].write_bytes(files["ir"].read_bytes()[:60])
    files["fake"] = work / "fake.png"
    files["fake"].write_text("not an image\n")
    files["huge"] = work / "huge.png"
    files["huge"].write_bytes(_png_header(60000, 60000))
    torch.manual_seed(0)
    files["weights"] = work / "tiny.safetensors"
    save_fnet(files["weights"], FNet(TINY))
    files["foreign"] = work / "foreign.safetensors"
    save_file({"encoder.weight": torch.zeros(3, 3)}, str(files["foreign"]))
    nan_model = FNet(TINY)
    with torch.no_grad():
        next(nan_model.parameters()).fill_(float("nan"))
    files["nan"] = work / "nan.safetensors"
    save_fnet(files["nan"], nan_model)
    files["pickled"] = work / "pickled.pth"
    files["pickled"].write_bytes(pickle.dumps({"state": object.__new__(Case)}))
    files["onnx"] = work / "corrupt.onnx"
    files["onnx"].write_bytes(b"\x08\x07garbage that is not a protobuf model")
    for modality in ("ir", "vi"):  # a corner whose ecc affine fit turns by 32 degrees
        frame = cv2.imread(str(NATO / modality / "000005.png"), cv2.IMREAD_GRAYSCALE)
        files[f"{modality}_corner"] = work / f"{modality}_corner.png"
        cv2.imwrite(str(files[f"{modality}_corner"]), frame[16:64, 288:336])
    files["old_run"] = work / "old_run"  # frames a previous stream run left
    files["old_run"].mkdir()
    for number in range(3):
        cv2.imwrite(str(files["old_run"] / f"{number:06d}.png"), np.zeros((8, 8), np.uint8))
    files["blocker"] = work / "blocker"
    files["blocker"].write_text("a regular file\n")
    (work / "other").mkdir()
    cv2.imwrite(str(work / "other" / "6.png"), np.zeros((48, 48), np.uint8))
    files["registration"] = work / "registration.json"
    files["registration"].write_text("{not json")
    files["pairs_unknown"] = work / "pairs_unknown.toml"  # a key spelt as in Python
    files["pairs_unknown"].write_text(
        f'[[pair]]\nvis = "{files["vi"].parent}"\nir = "{files["ir"].parent}"\n'
        f'out = "{work / "out" / "u.mp4"}"\nir_offset_ms = -40\n'
    )
    files["loop"] = work / "loop.png"  # a symlink loop: loop.png -> loop2.png -> loop.png
    files["loop"].symlink_to(work / "loop2.png")
    (work / "loop2.png").symlink_to(files["loop"])
    files["model_dir"] = work / "model_dir"
    files["model_dir"].mkdir()
    files["empty_onnx"] = work / "empty.onnx"
    files["empty_onnx"].write_bytes(b"")
    files["collinear"] = work / "collinear.txt"  # four point pairs on one line
    files["collinear"].write_text("".join(f"{i} {i} {i} {i}\n" for i in range(0, 40, 10)))
    files["pairs_scalar"] = work / "pairs_scalar.toml"
    files["pairs_scalar"].write_text("pair = 3\n")
    files["pairs_one_table"] = work / "pairs_one_table.toml"  # [pair], not [[pair]]
    files["pairs_one_table"].write_text(f'[pair]\nvis = "{files["vi"].parent}"\n')
    files["flat_data"] = work / "flat_data"  # images, but no ir/ and vi/ sub-folders
    files["flat_data"].mkdir()
    cv2.imwrite(str(files["flat_data"] / "1.png"), np.zeros((48, 48), np.uint8))
    files["pairs_garbage"] = work / "pairs_garbage.toml"
    files["pairs_garbage"].write_text("[[pair]\nvis = \n")
    return files


def _cases(work: Path) -> list[Case]:
    f = _inputs(work) if work.exists() else {k: work / k for k in _NAMES}
    out = work / "out"
    under = f["blocker"] / "sub"
    pair = ("--ir", str(f["ir"]), "--vis", str(f["vi"]))
    tiny = ("--weights", str(f["weights"]))
    fuse = ("fuse", *tiny)
    stream = ("stream", "--no-live", "--vis", str(f["vi"].parent), "--ir", str(f["ir"].parent))
    bench = ("bench", "--no-peaks", "--size", "16x16", "--iterations", "1")
    train = ("train", "--data", str(work / "pairs"), "--stage", "1", "--iterations", "1")
    train += ("--set", "model.filters=4", "--crop", "16", "--batch", "2")
    evaluate = ("eval", "--ir", str(NATO / "ir"), "--vis", str(NATO / "vi"))
    calibrate = ("calibrate", "--ir", str(f["ir"]), "--vis", str(f["vi"]))
    cases: list[Case] = []

    def add(
        name: str,
        args: tuple[str, ...],
        *names: str,
        target: Path | None = None,
        after_work: bool = False,
    ) -> None:
        cases.append(Case(name, args, names, target, after_work))

    def add_out(name: str, args: tuple[str, ...], where: Path, *names: str) -> None:
        add(name, (*args, "--out", str(where)), *names, target=where)

    image_out = out / "fused.png"
    # fuse: unreadable images
    for kind, problem in (
        ("empty", "empty"),
        ("truncated", "decode"),
        ("fake", "decode"),
        ("huge", "memory"),
    ):
        add_out(
            f"fuse-{kind}-ir",
            (*fuse, "--ir", str(f[kind]), "--vis", str(f["vi"])),
            image_out,
            f[kind].name,
            problem,
        )
    add_out(
        "fuse-missing-vis",
        (*fuse, "--ir", str(f["ir"]), "--vis", str(work / "no.png")),
        image_out,
        "no.png",
        "not found",
    )
    add_out(
        "fuse-size-mismatch",
        (*fuse, "--ir", str(f["small"]), "--vis", str(f["vi"])),
        image_out,
        "small.png",
        "differs",
    )
    add_out("fuse-only-ir", (*fuse, "--ir", str(f["ir"])), image_out, "--vis")
    # fuse: weights
    for kind in ("foreign", "nan", "pickled"):
        add_out(
            f"fuse-{kind}-weights",
            ("fuse", *pair, "--weights", str(f[kind])),
            image_out,
            f[kind].name,
        )
    add_out(
        "fuse-missing-weights",
        ("fuse", *pair, "--weights", str(work / "no.safetensors")),
        image_out,
        "no.safetensors",
    )
    # fuse: outputs
    add("fuse-out-is-input", (*fuse, *pair, "--out", str(f["vi"])), "--out", "overwrite")
    add_out("fuse-out-under-file", (*fuse, *pair), under / "f.png", "blocker", "not a folder")
    add_out("fuse-out-suffix", (*fuse, *pair), out / "f.txt", "f.txt", ".txt")
    add("fuse-out-is-folder", (*fuse, *pair, "--out", str(work / "pairs")), "pairs", "folder")
    folders = ("--ir", str(f["ir"].parent), "--vis", str(f["vi"].parent))
    add_out("fuse-folders-out-image", (*fuse, *folders), out / "result.png", "result.png", "folder")
    # fuse: numbers and choices
    add_out("fuse-tile-small", (*fuse, *pair, "--tile", "3"), image_out, "--tile")
    add_out("fuse-tile-text", (*fuse, *pair, "--tile", "x"), image_out, "--tile")
    add_out(
        "fuse-percentiles-nan",
        (*fuse, *pair, "--ir-percentiles", "nan,99"),
        image_out,
        "--ir-percentiles",
    )
    add_out(
        "fuse-percentiles-order",
        (*fuse, *pair, "--ir-percentiles", "99,1"),
        image_out,
        "--ir-percentiles",
    )
    add_out("fuse-device", (*fuse, *pair, "--device", "tpu"), image_out, "--device")
    add_out("fuse-unknown-option", (*fuse, *pair, "--nope", "1"), image_out, "--nope")
    add_out("fuse-layout", (*fuse, *pair, "--layout", "mosaic"), image_out, "--layout")

    video = out / "o.mp4"
    # stream: numbers
    for option, value in (
        ("--out-fps", "inf"),
        ("--out-fps", "1e9"),
        ("--out-fps", "nan"),
        ("--out-fps", "0"),
        ("--ir-offset-ms", "nan"),
        ("--ir-offset-ms", "inf"),
        ("--ir-offset-ms", "-1e9"),
        ("--fps", "0"),
        ("--fps", "inf"),
        ("--max-skew-ms", "-1"),
        ("--ir-smoothing", "1.5"),
        ("--reconnect-timeout-s", "-1"),
        ("--reconnect-timeout-s", "nan"),
        ("--reconnect-timeout-s", "1e9"),
        ("--reconnect-timeout-s", "soon"),
        ("--max-errors", "0"),
    ):
        add_out(f"stream{option}={value}", (*stream, option, value), video, option)
    add_out("stream-size-huge", (*stream, "--size", "100000x100000"), video, "--size", "memory")
    add_out("stream-size-text", (*stream, "--size", "big"), video, "--size")
    add_out("stream-size-tiny", (*stream, "--size", "4x4"), video, "--size")
    add_out(
        "stream-ir-range", (*stream, "--ir-norm", "fixed", "--ir-range", "9,1"), video, "--ir-range"
    )
    # stream: outputs and inputs
    add_out("stream-out-under-file", stream, under / "o.mp4", "blocker", "not a folder")
    add_out("stream-out-suffix", stream, out / "o.xyz", "o.xyz", "suffix")
    add("stream-dir-under-file", (*stream, "--out", f"dir://{under}"), "blocker", target=under)
    add("stream-out-is-input", (*stream, "--out", f"dir://{f['vi'].parent}"), "overwrite")
    add(
        "stream-dir-old-run", (*stream, "--out", f"dir://{f['old_run']}"), "old_run", "?overwrite=1"
    )
    add(
        "stream-dir-overwrite-value",
        (*stream, "--out", f"dir://{out}/?overwrite=maybe"),
        "overwrite='maybe'",
        target=out,
    )
    add(
        "stream-stats-under-file",
        (*stream, "--stats", str(under / "s.json"), "--out", str(video)),
        "blocker",
        target=under,
    )
    if Path("/proc/self").is_dir():  # root may write anywhere by the permission bits, not here
        add(
            "stream-stats-unwritable",
            (*stream, "--stats", "/proc/fnet-deploy-none/s.json", "--out", str(video)),
            "/proc",
            "not writable",
            target=video,
        )
    add(
        "stream-stats-suffix",
        (*stream, "--stats", str(out / "s.txt"), "--out", str(video)),
        "--stats",
        ".txt",
        target=out,
    )
    add_out(
        "stream-missing-vis",
        ("stream", "--vis", str(work / "none"), "--ir", str(f["ir"].parent)),
        video,
        "none",
    )
    add_out(
        "stream-registration",
        (*stream, "--registration", str(f["registration"])),
        video,
        "registration.json",
    )
    add_out("stream-only-vis", ("stream", "--vis", str(f["vi"].parent)), video, "--ir")
    # OpenCV warns about the missing camera on stderr unless its log level is errors
    cameras = ("stream", *tiny, "--backend", "torch", "--vis", "v4l2:///dev/video-none")
    cameras += ("--ir", "v4l2:///dev/video-none2")
    add_out("stream-missing-camera", cameras, video, "v4l2:///dev/video-none", "cannot open")
    # stream: several pairs
    both = f"vis={f['vi'].parent},ir={f['ir'].parent}"
    pairs = ("stream", "--no-live", *tiny)
    add(
        "stream-pairs-one-output",
        (*pairs, "--pair", f"{both},out={video}", "--pair", f"{both},out=file://{video}"),
        "--pair",
        "both write",
        target=video,
    )
    add(
        "stream-pair-out-is-input",
        (*pairs, "--pair", f"{both},out={video}", "--pair", f"{both},out=dir://{f['vi'].parent}"),
        "--pair",
        "input",
        target=video,
    )
    unknown = ("--pairs", str(f["pairs_unknown"]))
    add("stream-pairs-unknown-key", (*pairs, *unknown), "pairs_unknown", "ir_offset_ms", target=out)
    garbage = ("--pairs", str(f["pairs_garbage"]))
    add("stream-pairs-not-toml", (*pairs, *garbage), "pairs_garbage", "TOML", target=out)
    add(
        "stream-pairs-both-ways",
        (*pairs, *unknown, "--pair", f"{both},out={video}"),
        "--pair and --pairs",
        target=out,
    )
    add("stream-pair-and-vis", (*stream, "--pair", f"{both},out={video}"), "--vis", target=out)
    add("stream-pair-no-out", (*pairs, "--pair", both), "--pair 1", "missing out", target=out)
    add(  # a key that --pair does not know, after out= (not taken as part of its path)
        "stream-pair-unknown-key-after-out",
        (*pairs, "--pair", f"{both},out={video},fsp=3"),
        "--pair 1",
        "unknown key 'fsp'",
        target=video,
    )
    for kind, what in (("scalar", "pair = 3"), ("one_table", "one [pair] table")):
        add(
            f"stream-pairs-{kind}",
            (*pairs, "--pairs", str(f[f"pairs_{kind}"])),
            f"pairs_{kind}.toml",
            what,
            "[[pair]]",
            target=out,
        )
    add(
        "stream-pair-offset-nan",
        (*pairs, "--pair", f"{both},out={video},ir-offset-ms=nan"),
        "--pair 1",
        "ir-offset-ms",
        target=video,
    )
    add_out("stream-max-batch-one-pair", (*stream, "--max-batch", "4"), video, "--max-batch")
    add_out(
        "stream-batch-timeout-one-pair",
        (*stream, "--batch-timeout-ms", "10"),
        video,
        "--batch-timeout-ms",
        "several pairs",
    )
    add(
        "stream-pair-batch-timeout",
        (*pairs, "--pair", f"{both},out={video}", "--batch-timeout-ms", "-1"),
        "--batch-timeout-ms",
        target=video,
    )
    # stream: URI options of cameras and served outputs, --encoder (edge I/O)
    to_ir = ("--ir", str(f["ir"].parent))
    for name, vis, names in (
        ("v4l2-unknown-option", "v4l2:///dev/video0?widht=640", ("widht", "fps, height")),
        ("v4l2-width-value", "v4l2:///dev/video0?width=0&height=8", ("width='0'",)),
        ("v4l2-width-alone", "v4l2:///dev/video0?width=640", ("width and height",)),
        ("v4l2-format", "v4l2:///dev/video0?format=Y16-BE", ("format='Y16-BE'",)),
        ("csi-flip", "csi://0?flip=9", ("flip='9'",)),
        ("csi-sensor", "csi://left", ("csi://left", "sensor number")),
        ("rtsp-transport", "rtsp://127.0.0.1:9/x?transport=quic", ("transport='quic'",)),
        ("rtsp-typo", "rtsp://127.0.0.1:9/x?latncy=100", ("'latncy'", "'latency'")),
    ):
        add_out(f"stream-{name}", ("stream", "--vis", vis, *to_ir), video, *names)
    if not has_gstreamer():
        add_out(
            "stream-csi-needs-gstreamer",
            ("stream", "--vis", "csi://0", "--ir", "csi://1"),
            video,
            "csi://0",
            "needs OpenCV built with GStreamer, as on JetPack",
        )
    for name, sink, names in (
        ("http-port", "http://127.0.0.1:99999", ("'99999'",)),
        ("http-path", "http://:8080/view", ("'/view'", "this machine only", "every interface")),
        ("http-quality", "http://:0?quality=0", ("quality='0'",)),
        ("rtsp-out-path", "rtsp://@:8554", ("rtsp://@:8554", "path")),
        ("rtsp-out-bitrate", "rtsp://@:0/fused?bitrate=fast", ("bitrate='fast'",)),
    ):
        add(f"stream-{name}", (*stream, "--out", sink), *names)
    add_out("stream-encoder-unknown", (*stream, "--encoder", "h266"), video, "--encoder", "h266")
    add_out("stream-encoder-not-rtsp", (*stream, "--encoder", "x264"), video, "--encoder", "rtsp")

    # explain
    add_out(
        "explain-huge",
        ("explain", *tiny, "--ir", str(f["huge"]), "--vis", str(f["huge"])),
        out / "explain",
        "huge.png",
        "memory",
    )
    add_out("explain-out-under-file", ("explain", *tiny, *pair), under / "x", "blocker")
    add(
        "explain-out-is-file",
        ("explain", *tiny, *pair, "--out", str(f["blocker"])),
        "blocker",
        "not a folder",
    )
    add_out("explain-top", ("explain", *tiny, *pair, "--top", "0"), out / "explain", "--top")
    add_out(
        "explain-fake",
        ("explain", *tiny, "--ir", str(f["fake"]), "--vis", str(f["vi"])),
        out / "explain",
        "fake.png",
    )

    # export
    add_out("export-out-under-file", ("export", *tiny), under / "e", "blocker")
    add("export-out-is-file", ("export", *tiny, "--out", str(f["blocker"])), "blocker")
    add_out("export-opset", ("export", *tiny, "--opset", "7"), out / "e", "--opset")
    int8 = ("export", *tiny, "--precision", "int8")
    calib = ("--calib-ir", str(work / "pairs" / "ir"), "--calib-vis", str(work / "pairs" / "vi"))
    add_out("export-calib-ir-alone", (*int8, *calib[:2]), out / "e", "--calib-ir", "--calib-vis")
    add_out(
        "export-calib-no-int8",
        ("export", *tiny, *calib),
        out / "e",
        "--calib-ir",
        "--precision int8",
    )
    method = ("--calib-method", "minmax")
    add_out("export-calib-method", (*int8, *method), out / "e", "--calib-method", "minmax")
    add_out("export-method-no-int8", ("export", *tiny, *method), out / "e", "--calib-method")
    layers = ("--float-layers", "unique_ir.nope")
    add_out("export-float-layers", (*int8, *layers), out / "e", "--float-layers", "nope")
    missing = ("--calib-ir", str(work / "none"), *calib[2:])
    add_out("export-calib-missing", (*int8, *missing), out / "e", "none", "not found")
    a_file = ("--calib-ir", str(f["ir"]), *calib[2:])
    add_out("export-calib-is-file", (*int8, *a_file), out / "e", "5.png", "expected a folder")
    implicit = ("export", *tiny, "--implicit-int8")
    add_out("export-implicit-int8", implicit, out / "e", "--implicit-int8", "--engine")
    add_out("export-nan-weights", ("export", "--weights", str(f["nan"])), out / "e", "nan")

    # bench
    add("bench-json-under-file", (*bench, "--json", str(under / "b.json")), "blocker", target=under)
    add("bench-json-suffix", (*bench, "--json", str(out / "b.txt")), "--json", target=out)
    add(
        "bench-size-huge",
        ("bench", "--no-peaks", "--size", "20000x20000"),
        "--size",
        "memory",
    )
    add("bench-size-text", ("bench", "--no-peaks", "--size", "big"), "--size")
    add("bench-batch", (*bench, "--batch", "0"), "--batch")
    add("bench-max-time-s", (*bench, "--max-time-s", "inf"), "--max-time-s")
    add("bench-backend", (*bench, "--backend", "cudnn9"), "--backend")
    add("bench-weights", (*bench, "--weights", str(f["pickled"])), "pickled.pth")

    # train
    add_out("train-crop-huge", (*train, "--crop", "100000"), out / "run", "--crop", "memory")
    add_out("train-lr-nan", (*train, "--lr", "nan"), out / "run", "lr")
    add_out("train-max-minutes", (*train, "--max-time-min", "inf"), out / "run", "--max-time-min")
    add_out("train-iterations", (*train, "--iterations", "0"), out / "run", "--iterations")
    add_out("train-out-under-file", train, under / "run", "blocker")
    add_out(
        "train-data-twice", (*train, "--data", f"{work}/./pairs/"), out / "run", "--data", "twice"
    )
    add_out("train-missing-data", ("train", "--data", str(work / "nodata")), out / "run", "nodata")
    add_out(
        "train-data-without-ir-vi",
        ("train", "--data", str(f["flat_data"])),
        out / "run",
        "flat_data",
        "no ir/ and no vi/",
    )

    # eval
    add_out("eval-out-under-file", (*evaluate, "--baseline", "average"), under / "ev", "blocker")
    add_out("eval-nothing", evaluate, out / "ev", "nothing to evaluate")
    unpaired = ("eval", "--ir", str(f["ir"].parent), "--vis", str(work / "other"))
    add_out("eval-no-pairs", (*unpaired, "--baseline", "average"), out / "ev", "file name")
    add_out("eval-baseline", (*evaluate, "--baseline", "median9"), out / "ev", "--baseline")

    # calibrate
    add_out("calibrate-suffix", calibrate, out / "r.txt", "--out", ".txt")
    add_out("calibrate-under-file", calibrate, under / "r.json", "blocker")
    add_out(
        "calibrate-max-error", (*calibrate, "--max-error", "nan"), out / "r.json", "--max-error"
    )
    corner = ("calibrate", "--ir", str(f["ir_corner"]), "--vis", str(f["vi_corner"]))
    add(
        "calibrate-affine-rotated",
        (*corner, "--transform", "affine", "--out", str(out / "r.json")),
        "implausible map",
        "rotation",
        target=out / "r.json",
        after_work=True,
    )
    add_out(
        "calibrate-max-rotation", (*calibrate, "--max-rotation", "200"), out / "r.json", "rotation"
    )
    add_out(
        "calibrate-fake",
        ("calibrate", "--ir", str(f["fake"]), "--vis", str(f["vi"])),
        out / "r.json",
        "fake.png",
    )

    add_out(
        "calibrate-collinear-points",
        (*calibrate, "--points", str(f["collinear"])),
        out / "r.json",
        "collinear.txt",
        "one line",
    )
    add(  # connecting is the work; FFmpeg's own "Connection refused" line must not show
        "calibrate-rtsp-unreachable",
        ("calibrate", "--ir", "rtsp://127.0.0.1:9/ir", "--vis", str(f["vi"])),
        "rtsp://127.0.0.1:9/ir",
        "cannot open",
        after_work=True,
    )

    # every command: an input that is a symlink loop, a model that is not a model file
    add_out(
        "fuse-symlink-loop",
        (*fuse, "--ir", str(f["loop"]), "--vis", str(f["vi"])),
        image_out,
        "loop.png",
        "symlink loop",
    )
    add_out(
        "fuse-model-folder",
        ("fuse", *pair, "--model", str(f["model_dir"])),
        image_out,
        "model_dir",
        "is a folder",
    )
    add_out(
        "fuse-missing-engine",
        ("fuse", *pair, "--model", str(work / "none.engine")),
        image_out,
        "none.engine",
        "not found",
    )
    add_out(
        "fuse-empty-onnx",
        ("fuse", *pair, "--model", str(f["empty_onnx"])),
        image_out,
        "empty.onnx",
        "empty",
    )
    add_out(
        "fuse-corrupt-onnx",
        ("fuse", *pair, "--model", str(f["onnx"])),
        image_out,
        "corrupt.onnx",
        "not a readable ONNX model",
    )
    add_out(
        "stream-symlink-loop",
        ("stream", "--no-live", "--vis", str(f["loop"]), "--ir", str(f["ir"].parent)),
        video,
        "loop.png",
        "symlink loop",
    )
    add("check-symlink-loop", ("check", str(f["loop"]), *pair, *tiny), "loop.png", "symlink loop")
    add_out(
        "stream-model-folder",
        (*stream, "--model", str(f["model_dir"])),
        video,
        "model_dir",
        "is a folder",
    )
    add_out(
        "eval-missing-engine",
        (*evaluate, "--model", str(work / "none.engine")),
        out / "ev",
        "none.engine",
        "not found",
    )

    # options that contradict each other: refused, not one of them silently dropped
    both_models = ("--model", str(f["onnx"]), "--weights", str(f["weights"]))
    add_out("fuse-model-and-weights", ("fuse", *pair, *both_models), image_out, "not both")
    add_out("stream-model-and-weights", ("stream", "--no-live", *both_models), video, "not both")
    add_out("eval-model-and-weights", (*evaluate, *both_models), out / "ev", "not both")
    add_out(
        "eval-backend-without-model",
        (*evaluate, "--baseline", "average", "--backend", "torch"),
        out / "ev",
        "--backend",
        "--weights or --model",
    )

    # check and weights
    add("check-corrupt-onnx", ("check", str(f["onnx"]), *pair, *tiny), "corrupt.onnx")
    add("check-missing-model", ("check", str(work / "none.onnx"), *pair, *tiny), "none.onnx")
    add("weights-info-pickled", ("weights", "info", str(f["pickled"])), "pickled.pth")
    add("weights-info-fake", ("weights", "info", str(f["fake"])), "fake.png")

    # stream --metrics-port (issue 36)
    for port in ("70000", "web", "127.0.0.1:", "[::1]9100"):
        metrics = (*stream, "--metrics-port", port)
        add_out(f"stream-metrics-port={port}", metrics, video, "--metrics-port")
    return cases


_NAMES = ("ir", "vi", "small", "empty", "truncated", "fake", "huge", "weights", "foreign", "nan")
_NAMES += ("pickled", "onnx", "blocker", "registration", "ir_corner", "vi_corner", "old_run")
_NAMES += ("pairs_unknown", "pairs_garbage", "pairs_scalar", "pairs_one_table", "flat_data")
_NAMES += ("loop", "model_dir", "empty_onnx", "collinear")


def _digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (the inputs) except the logs and outputs."""
    return {
        str(path): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.parts[len(folder.parts)] not in ("logs", "out", "cases.json")
    }


@pytest.fixture(scope="module")
def outcomes(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dict[str, Outcome], list[Case], dict[str, str], dict[str, str]]:
    work = tmp_path_factory.mktemp("bad_input")
    cases = _cases(work)
    before = _digest(work)
    results = run_cases(
        work,
        [(c.name, c.args, ()) for c in cases],
        timeout=CASE_TIMEOUT * len(cases),  # a bound on hangs: each row has its own alarm
        case_timeout=CASE_TIMEOUT,
        announce_at_once=True,
    )
    return results, cases, before, _digest(work)


NAMES = [c.name for c in _cases(Path("/nonexistent-work"))]


def test_the_table_covers_every_command_with_at_least_120_rows() -> None:
    cases = _cases(Path("/nonexistent-work"))
    assert len(cases) >= 120
    commands = {c.args[0] for c in cases}
    assert commands >= {"fuse", "stream", "explain", "export", "bench", "train", "eval"}
    assert commands >= {"calibrate", "check", "weights"}


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    name: str,
    outcomes: tuple[dict[str, Outcome], list[Case], dict[str, str], dict[str, str]],
) -> None:
    results, cases, before, after = outcomes
    case = next(c for c in cases if c.name == name)
    outcome = results[name]
    assert "Traceback" not in outcome.stdout + outcome.stderr, outcome.stderr
    assert outcome.code == 2, outcome
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    if case.after_work:  # the command's progress lines, then its error
        assert all(line.startswith(f"{case.args[0]}: ") for line in lines[:-1]), lines
        lines = lines[-1:]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for word in case.names:
        assert word in lines[0], (word, lines[0])
    if case.out is not None:
        assert not case.out.exists(), f"{case.out} was written"
    assert after == before, "an input changed"


def test_no_row_leaves_anything_in_the_output_folder(
    outcomes: tuple[dict[str, Outcome], list[Case], dict[str, str], dict[str, str]],
) -> None:
    _, cases, _, _ = outcomes
    out = next(c.out for c in cases if c.out is not None and c.out.parent.name == "out")
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
