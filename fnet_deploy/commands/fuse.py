"""``fnet-deploy fuse``: fuse one image pair or two folders of pairs."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer

from fnet_deploy.assets import sample_pair
from fnet_deploy.backends.device import ANY_KIND, parse_device
from fnet_deploy.commands.common import (
    BackendOption,
    ColorOption,
    IrNormOption,
    IrPercentilesOption,
    IrRangeOption,
    LayoutOption,
    ModelOption,
    PrecisionOption,
    RunDeviceOption,
    WeightsOption,
    check_output,
    console,
    luminance_of,
    notice,
    parse_ir_range,
    parse_percentiles,
    phase,
    progress_bar,
    reports_errors,
)
from fnet_deploy.commands.outputs import OutputFolder, Outputs
from fnet_deploy.data.images import can_encode, write_image
from fnet_deploy.data.pairs import pair_folders
from fnet_deploy.helpers.errors import FnetError, InputError
from fnet_deploy.inference.images import FuseOptions, ImageFuser, ResizeMode
from fnet_deploy.inference.select import open_runner


@reports_errors
def fuse(
    ir: Annotated[
        Path | None,
        typer.Option(help="Infrared image, or a folder of them (paired with --vis by file name)."),
    ] = None,
    vis: Annotated[
        Path | None, typer.Option(help="Visible image (grey or colour), or a folder of them.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Output image (single pair) or folder (folders); PNG by default."),
    ] = None,
    weights: WeightsOption = None,
    model: ModelOption = None,
    backend: BackendOption = None,
    device: RunDeviceOption = "cpu",
    precision: PrecisionOption = None,
    color: ColorOption = "keep",
    ir_norm: IrNormOption = "percentile",
    ir_percentiles: IrPercentilesOption = "1,99",
    ir_range: IrRangeOption = None,
    resize: Annotated[
        ResizeMode,
        typer.Option(help="When the two images differ in size: error (none) or resize one."),
    ] = "none",
    tile: Annotated[
        int | None,
        typer.Option(min=16, help="Fuse in tiles of this edge in pixels (exact; saves memory)."),
    ] = None,
    layout: LayoutOption = "fused",
) -> None:
    """Fuse infrared + visible images with FNet.

    Without --ir/--vis, fuses the sample pair shipped with the package. Runs any form of the
    model: weights (default: the package's own, as their fastest exact form), an exported ONNX
    model or a TensorRT engine (--model); large images are fused in exact tiles.
    """
    if (ir is None) != (vis is None):
        raise FnetError("give both --ir and --vis, or neither (to fuse the shipped sample pair)")
    if ir is None or vis is None:
        ir, vis = sample_pair()
    options = FuseOptions(
        luminance=luminance_of(color),
        ir_norm=ir_norm,
        ir_percentiles=parse_percentiles(ir_percentiles),
        ir_range=parse_ir_range(ir_range),
        resize=resize,
        tile=tile,
        layout=layout,
    )
    if ir.is_dir() != vis.is_dir() and ir.exists() and vis.exists():
        raise FnetError("--ir and --vis must both be files or both be folders")
    folders = ir.is_dir()
    out = out or Path("fused" if folders else "fused.png")
    if folders and out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder (folders of pairs write a folder)")
    if folders and not out.exists() and out.suffix and can_encode(out):
        raise InputError(out, "looks like an image file; folders of pairs write a folder")
    if not folders and out.is_dir():
        raise InputError(out, "is a folder; give an image file name such as fused.png")
    if not folders and not can_encode(out):
        raise InputError(out, f"cannot write an image as '{out.suffix}' (use .png, .jpg, .tif)")
    check_output(out, "--out", folder=folders, inputs=(ir, vis))
    runner = open_runner(model, backend, device, precision, weights, notify=notice)
    compute_device = parse_device(device, ANY_KIND).as_torch()
    fuser = ImageFuser(runner, None, compute_device, options, notify=notice)
    used = Path(runner.source).name
    outputs = Outputs("fuse")
    try:
        if not folders:
            pair = fuser.read_pair(ir, vis)  # bad images are refused before any phase
            with phase(f"fusing {ir.name} + {vis.name} with {runner.name}"):
                image = fuser.fuse_read(pair)
            written = outputs.write(out, lambda path: write_image(path, image), "the fused image")
            if written == out:
                console.print(
                    f"fused {ir.name} + {vis.name} -> {out}  (model: {used}, {runner.name})"
                )
        else:
            _fuse_folders(fuser, ir, vis, outputs.folder(out, "the fused images"))
    finally:
        runner.deactivate()
    outputs.finish()


def _fuse_folders(fuser: ImageFuser, ir_dir: Path, vis_dir: Path, out: OutputFolder) -> None:
    listing = pair_folders(ir_dir, vis_dir)
    if not listing.pairs:
        raise InputError(ir_dir, f"no image shares a file name with one in {vis_dir}")
    unpaired = listing.unpaired_message()
    if unpaired:
        typer.echo(f"warning: unpaired files skipped: {unpaired}", err=True)
    failures: list[str] = []
    with progress_bar() as progress:
        task = progress.add_task("fusing", total=len(listing.pairs))
        for pair in listing.pairs:
            try:
                image = fuser.fuse_files(pair.ir, pair.vis)
            except InputError as err:
                failures.append(str(err))
            else:
                out.write(f"{pair.name}.png", functools.partial(write_image, image=image))
            progress.advance(task)
    done = len(listing.pairs) - len(failures)
    console.print(f"fused {done} of {len(listing.pairs)} pairs -> {out.root}")
    if failures:
        for failure in failures:
            typer.echo(f"error: {failure}", err=True)
        out.outputs.finish()
        raise typer.Exit(2)
