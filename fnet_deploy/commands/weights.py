"""``fnet-deploy weights``: inspect and convert weights files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fnet_deploy.commands.common import ColorMode, color_of, luminance_of, reports_errors
from fnet_deploy.helpers.errors import InputError
from fnet_deploy.model.weights import load_fnet, resolve_weights, save_fnet

app = typer.Typer(help="Inspect and convert FNet weights files.", no_args_is_help=True)


@app.command("info")
@reports_errors
def info(
    weights: Annotated[
        Path | None, typer.Argument(help="Weights file (default: the packaged weights).")
    ] = None,
) -> None:
    """Show a weights file's format, config, provenance and learned thresholds."""
    model, meta = load_fnet(resolve_weights(weights))
    table = Table(title=f"{meta.path}", show_header=False)
    table.add_row("format", meta.source_format)
    table.add_row("sha256", meta.sha256)
    table.add_row("config", str(meta.config.to_dict()))
    table.add_row("parameters", f"{sum(p.numel() for p in model.parameters()):,}")
    table.add_row("color", f"{color_of(meta.luminance)} ({meta.luminance})")
    table.add_row("provenance", meta.provenance or "-")
    for name in ("unique_ir", "unique_vis", "common"):
        block = getattr(model, name)
        thetas = ", ".join(f"{t:.4f}" for t in block.thresholds().tolist())
        rhos = ", ".join(f"{r:.4f}" for r in block.momenta().tolist()[1:])
        table.add_row(f"{name} theta_0..N", thetas)
        table.add_row(f"{name} rho_1..N", rhos)
    Console().print(table)


@app.command("convert")
@reports_errors
def convert(
    source: Annotated[Path, typer.Argument(help="Weights to convert (e.g. FNet_official.pth).")],
    dest: Annotated[Path, typer.Argument(help="Output .safetensors file.")],
    color: Annotated[
        ColorMode,
        typer.Option(
            help="How the weights were trained to take colour visible input: 'keep' (BT.601 "
            "studio-range Y) or 'gray' (OpenCV full-range grey)."
        ),
    ] = "keep",
) -> None:
    """Convert weights (e.g. the published .pth) to the fnet-deploy safetensors format."""
    if dest.suffix != ".safetensors":
        raise InputError(dest, "output must end in .safetensors")
    model, meta = load_fnet(source)
    save_fnet(
        dest,
        model,
        luminance=luminance_of(color),
        provenance=f"converted from {meta.path.name} (sha256 {meta.sha256}): {meta.provenance}",
    )
    typer.echo(f"wrote {dest}")
