"""``fnet-deploy explain``: the paper's interpretability figures for one image pair."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fnet_deploy.assets import sample_pair
from fnet_deploy.backends.device import torch_device
from fnet_deploy.commands.common import (
    ColorOption,
    DeviceOption,
    IrNormOption,
    IrPercentilesOption,
    IrRangeOption,
    WeightsOption,
    check_output,
    console,
    luminance_of,
    parse_ir_range,
    parse_percentiles,
    phase,
    reports_errors,
)
from fnet_deploy.commands.outputs import Outputs
from fnet_deploy.data.images import image_size, read_ir, read_visible, require_same_size
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.helpers.memory import gib, require_memory
from fnet_deploy.helpers.optional import require
from fnet_deploy.inference.images import IMAGE_BYTES_PER_PIXEL
from fnet_deploy.model.config import ModelConfig
from fnet_deploy.model.cost import inference_bytes, trace_bytes
from fnet_deploy.model.weights import load_fnet, resolve_weights


@reports_errors
def explain(
    ir: Annotated[Path | None, typer.Option(help="Infrared image.")] = None,
    vis: Annotated[Path | None, typer.Option(help="Visible image (grey or colour).")] = None,
    out: Annotated[
        Path, typer.Option(help="Output folder for the PNGs, explain.json, arrays.npz, index.html.")
    ] = Path("explain"),
    weights: WeightsOption = None,
    device: DeviceOption = "cpu",
    color: ColorOption = "keep",
    ir_norm: IrNormOption = "percentile",
    ir_percentiles: IrPercentilesOption = "1,99",
    ir_range: IrRangeOption = None,
    top: Annotated[
        int, typer.Option(min=1, max=64, help="Strongest channels shown per feature code.")
    ] = 8,
) -> None:
    """Explain one fusion: unique and common features, reconstructions, learned thresholds.

    Writes one PNG per view, explain.json (the numbers), arrays.npz (image-sized arrays) and
    index.html (the views with captions). Without --ir/--vis, explains the shipped sample pair.
    Always runs the training form in PyTorch (the other commands run the faster deploy form),
    since the views are the training form's intermediate codes and reconstructions.
    The trace keeps every iteration in memory: about 10 kB per pixel (3 GiB at 480x640); a pair
    that would not fit in the available memory is refused before it is read.
    """
    if (ir is None) != (vis is None):
        raise FnetError("give both --ir and --vis, or neither (to explain the shipped sample pair)")
    if ir is None or vis is None:
        ir, vis = sample_pair()
    check_output(out, "--out", folder=True, inputs=(ir, vis))
    require("matplotlib")
    from fnet_deploy.explain import explain_images, write_explanation
    from fnet_deploy.explain.report import HTML_NAME

    compute_device = torch_device(device)
    model, info = load_fnet(resolve_weights(weights), compute_device)
    for path in (vis, ir):
        size = image_size(path)
        if size is not None and compute_device.type == "cpu":
            require_memory(
                _explain_bytes(model.config, *size),
                f"{path}: explaining {size[0]}x{size[1]}",
                "explain a crop of the pair (the trace keeps every iteration; it cannot be tiled)",
            )
    ir_image = read_ir(ir, ir_norm, parse_percentiles(ir_percentiles), parse_ir_range(ir_range))
    luminance = luminance_of(color)
    vis_image = read_visible(vis, luminance).luma
    require_same_size(ir, ir_image, vis, vis_image, "explain needs a registered pair")
    height, width = ir_image.shape
    if compute_device.type == "cpu":
        require_memory(
            _explain_bytes(model.config, width, height),
            f"explaining {width}x{height}",
            "explain a crop of the pair (the trace keeps every iteration; it cannot be tiled)",
        )
    console.print(
        f"tracing {ir.name} + {vis.name} ({width}x{height}, "
        f"~{gib(_explain_bytes(model.config, width, height))} of memory)"
    )
    with phase(f"tracing {ir.name} + {vis.name}"):
        explanation = explain_images(model, ir_image, vis_image, top=top)
    meta = {
        "ir": str(ir),
        "vis": str(vis),
        "weights": str(info.path),
        "weights_sha256": info.sha256,
        "luminance": luminance,
        "ir_norm": ir_norm,
        "ir_range": parse_ir_range(ir_range),
        "device": device,
        "model": info.config.to_dict(),
    }
    outputs = Outputs("explain")
    with phase("drawing the views"):
        written = outputs.write(
            out, lambda folder: write_explanation(explanation, folder, meta), "the views"
        )
    if written == out:
        console.print(
            f"explained {ir.name} + {vis.name} -> {out / HTML_NAME}  (weights: {info.path.name})"
        )
    outputs.finish()


def _explain_bytes(config: ModelConfig, width: int, height: int) -> float:
    """Estimated peak memory of explaining one ``width`` x ``height`` pair."""
    network = trace_bytes(config, height, width) + inference_bytes(config, height, width)
    return network + IMAGE_BYTES_PER_PIXEL * width * height
