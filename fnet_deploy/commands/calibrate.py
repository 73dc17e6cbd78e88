"""``fnet-deploy calibrate``: estimate the IR-to-visible map and write the calibration JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
import typer

from fnet_deploy.calibration.estimate import (
    Method,
    Plausibility,
    estimate_from_images,
    estimate_from_points,
    read_points,
)
from fnet_deploy.commands.common import check_output, console, phase, reports_errors
from fnet_deploy.commands.outputs import Outputs
from fnet_deploy.data.images import IMAGE_SUFFIXES, quiet_native_stderr
from fnet_deploy.helpers.errors import FnetError, InputError
from fnet_deploy.runtime.preprocess import to_single_channel
from fnet_deploy.runtime.registration import Transform
from fnet_deploy.runtime.sources import DEFAULT_DIR_FPS, CorruptFrame, SourceLost, open_source
from fnet_deploy.runtime.uri import parse_uri


@reports_errors
def calibrate(
    ir: Annotated[
        str,
        typer.Option(help="IR image, or a source (video, dir://, v4l2://...) to take a frame of."),
    ],
    vis: Annotated[str, typer.Option(help="Visible image or source, same moment as --ir.")],
    out: Annotated[Path, typer.Option(help="Calibration JSON to write.")] = Path(
        "registration.json"
    ),
    points: Annotated[
        Path | None,
        typer.Option(
            help="Point pairs 'x_ir y_ir x_vis y_vis' per line (>= 4 for a homography, 3 "
            "affine, 1 translation); without it the map is estimated from the frames."
        ),
    ] = None,
    transform: Annotated[
        Transform, typer.Option(help="homography, affine or translation.")
    ] = "homography",
    method: Annotated[
        Method,
        typer.Option(
            help="Without --points: 'ecc' (intensity alignment of roughly aligned cameras) or "
            "'orb' / 'sift' (feature matching + RANSAC)."
        ),
    ] = "ecc",
    frame: Annotated[
        int, typer.Option(min=0, help="Which frame of a video or folder source to use.")
    ] = 0,
    max_error: Annotated[
        float, typer.Option(min=0.0, help="Largest accepted rms reprojection error (px).")
    ] = 3.0,
    max_anisotropy: Annotated[
        float, typer.Option(min=1.0, help="Largest accepted shear / axis-scale ratio.")
    ] = 2.0,
    max_rotation: Annotated[
        float,
        typer.Option(min=0.0, max=180.0, help="Largest accepted rotation of the map (degrees)."),
    ] = 10.0,
) -> None:
    """Estimate the map from IR to visible pixels and write it for `stream --registration`.

    From four or more picked point pairs (--points), or from one frame pair: 'ecc' aligns the
    frames' gradients starting from 'same field of view'; 'orb'/'sift' match features.
    Implausible maps (degenerate, extreme scale, rotation or shear, large error, little overlap)
    are rejected, and so is an affine map or homography from frames that aligns their edges no
    better than a translation or keeps less than half its common area.
    """
    check_output(out, "--out", suffixes=(".json",), inputs=(points, Path(ir), Path(vis)))
    stills = [_still_image(text) for text in (ir, vis)]  # image files: read before any work
    if any(still is None for still in stills):
        with phase(f"reading frame {frame} of each source"):
            stills = [
                _nth_frame(text, frame) if still is None else still
                for text, still in zip((ir, vis), stills, strict=True)
            ]
    ir_image, vis_image = (to_single_channel(still) for still in stills if still is not None)
    limits = Plausibility(
        max_rms_error=max_error, max_anisotropy=max_anisotropy, max_rotation=max_rotation
    )
    ir_size = (ir_image.shape[1], ir_image.shape[0])
    vis_size = (vis_image.shape[1], vis_image.shape[0])
    if points is not None:
        ir_points, vis_points = read_points(points)
        for name, pts, (width, height) in (
            ("IR", ir_points, ir_size),
            ("visible", vis_points, vis_size),
        ):
            outside = (pts[:, 0] < -0.5) | (pts[:, 0] > width - 0.5)
            outside |= (pts[:, 1] < -0.5) | (pts[:, 1] > height - 0.5)
            if outside.any():
                row = int(np.argmax(outside))
                raise InputError(
                    points, f"pair {row + 1}: {name} point outside the {width}x{height} frame"
                )
        try:
            registration = estimate_from_points(
                ir_points, vis_points, transform, ir_size, vis_size, limits
            )
        except FnetError as err:
            raise InputError(points, str(err)) from None
    else:
        with phase(f"estimating the map from the frames ({method})"):
            registration = estimate_from_images(ir_image, vis_image, transform, method, limits)
    outputs = Outputs("calibrate")
    written = outputs.write(out, registration.save, "the calibration")
    x, y, w, h = registration.valid_crop
    fit = ", ".join(f"{key} {value}" for key, value in registration.fit.items())
    console.print(
        f"wrote {written}: {transform} IR {ir_size[0]}x{ir_size[1]} -> visible "
        f"{vis_size[0]}x{vis_size[1]}, valid crop {w}x{h} at ({x}, {y}); fit: {fit}"
    )
    console.print(np.array2string(registration.matrix, precision=4, suppress_small=True))
    outputs.finish()


def _still_image(text: str) -> np.ndarray | None:
    """The image of ``text`` when it names an image file, else ``None`` (a video or source)."""
    uri = parse_uri(text, "source")
    if uri.scheme == "file" and uri.path.suffix.lower() in IMAGE_SUFFIXES:
        return _read_image(uri.path)
    return None


def _nth_frame(text: str, index: int) -> np.ndarray:
    """Frame ``index`` of a video or another source (FFmpeg's own messages kept off stderr)."""
    source = open_source(parse_uri(text, "source"), DEFAULT_DIR_FPS)
    with quiet_native_stderr():
        source.open()
        try:
            for position in range(index + 1):
                try:
                    found = source.read()
                except (CorruptFrame, SourceLost) as err:
                    raise FnetError(f"{text}: {err}") from None
                if found is None:
                    raise FnetError(f"{text}: has no frame {index}")
                if position == index:
                    return found.image
            raise AssertionError("unreachable")
        finally:
            source.close()


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise InputError(path, "cannot decode image (truncated, corrupt or not an image)")
    return image[:, :, :3] if image.ndim == 3 else image
