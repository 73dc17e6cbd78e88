"""Fusing image files: read -> preprocess -> FNet -> postprocess -> write.

Used by ``fnet-deploy fuse`` and by evaluation with on-the-fly fusion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np

from fnet_deploy.backends.base import OUTPUT_NAME, Runner
from fnet_deploy.data.color import Luminance
from fnet_deploy.data.images import (
    compose_output,
    image_size,
    read_ir,
    read_visible,
    require_same_size,
    to_uint8,
)
from fnet_deploy.data.thermal import ThermalNorm
from fnet_deploy.data.views import Layout, compose_view
from fnet_deploy.helpers.errors import FnetError, InputError
from fnet_deploy.helpers.memory import available_memory, gib
from fnet_deploy.model.config import ModelConfig
from fnet_deploy.model.cost import inference_bytes

if TYPE_CHECKING:  # torch is imported when the first image is fused
    import torch

ResizeMode = Literal["none", "ir-to-vis", "vis-to-ir"]
RESIZE_MODES: tuple[ResizeMode, ...] = ("none", "ir-to-vis", "vis-to-ir")
IMAGE_BYTES_PER_PIXEL = 48
"""Memory of the images around the network per pixel: the decoded inputs, float32 IR, luma,
chroma and fused planes, and the encoded output."""
AUTO_TILES = (2048, 1024, 512, 256, 128, 64)
"""Tile edges tried, largest first, when a whole image does not fit in memory."""


@dataclass(frozen=True)
class FuseOptions:
    """How image files are turned into network inputs and back.

    Attributes:
        luminance: ``ycbcr`` (colour visible input: BT.601 studio Y fused, chroma kept) or
            ``gray`` (OpenCV full-range grayscale, grayscale output).
        ir_norm: mapping of 16-bit IR to [0, 1] (8-bit is always /255).
        ir_percentiles: (low, high) percentiles for ``ir_norm="percentile"``.
        ir_range: (low, high) raw counts for ``ir_norm="fixed"`` (``None``: the full scale).
        resize: what to do when the two images differ in size (``none`` is an error).
        tile: fuse in tiles of this edge (pixels) with an exact margin; ``None`` fuses whole.
        layout: ``fused`` writes the fused image; ``side-by-side`` and ``grid`` write the labelled
            composite of :func:`fnet_deploy.data.views.compose_view`.
    """

    luminance: Luminance = "ycbcr"
    ir_norm: ThermalNorm = "percentile"
    ir_percentiles: tuple[float, float] = (1.0, 99.0)
    ir_range: tuple[float, float] | None = None
    resize: ResizeMode = "none"
    tile: int | None = None
    layout: Layout = "fused"


class ImageFuser:
    """Fuses pairs of images with one activated runner (any form of FNet, any backend).

    Args:
        runner: a runner (:func:`fnet_deploy.inference.select.open_runner`): weights in any form,
            an exported ONNX model or a TensorRT engine; activated on the first fusion, once
            that pair's files have been read (so bad inputs are refused before a model is
            loaded or exported); the caller deactivates it.
        config: the model's configuration (receptive radius for tiles, memory estimate);
            ``None``: what the runner reports once active (the published architecture before).
        device: where the runner computes (the available memory is checked on ``cpu`` only).
        options: how files become network inputs and back.
        notify: told in one line when an image is fused in tiles because of memory or of the
            sizes the model takes.

    Tiles work with every runner: a model with a range of sizes (a TensorRT profile) gets
    tiles whose windows fit the range; a fixed-size model takes images of its size only.
    """

    def __init__(
        self,
        runner: Runner,
        config: ModelConfig | None,
        device: torch.device,
        options: FuseOptions,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.runner = runner
        self._config = config
        self.device = device
        self.options = options
        self.notify = notify

    @property
    def config(self) -> ModelConfig:
        """The given configuration, else the active runner's, else the published one."""
        return self._config or self.runner.model_config or ModelConfig()

    def memory_needed(self, width: int, height: int, tile: int | None) -> float:
        """Estimated peak bytes of fusing a ``width`` x ``height`` pair (in tiles of ``tile``)."""
        window_h, window_w = height, width
        if tile:
            margin = 2 * self.config.receptive_radius
            window_h, window_w = min(height, tile + margin), min(width, tile + margin)
        network = inference_bytes(self.config, window_h, window_w)
        return network + IMAGE_BYTES_PER_PIXEL * width * height

    def largest_tile(self, width: int, height: int) -> int | None:
        """The largest tile edge whose windows the model takes (``None``: any; 0: none).

        Raises:
            FnetError: the model cannot fuse a ``width`` x ``height`` pair at all (smaller than
                its smallest size, or another size than a fixed-size model's).
        """
        limits = self.runner.size_range
        if limits is None:
            return None
        if height < limits.min_hw[0] or width < limits.min_hw[1]:
            raise FnetError(
                f"{width}x{height} (W x H) is smaller than the model takes ({limits.describe()})"
            )
        if limits.fixed:
            if not limits.fits(height, width):
                raise FnetError(
                    f"{width}x{height} (W x H) does not fit the model, which takes "
                    f"{limits.describe()}: export it with dynamic sizes, or resize the images"
                )
            return 0
        return max(0, min(limits.max_hw) - 2 * self.config.receptive_radius)

    def tile_for(self, width: int, height: int, announce: bool = True) -> int | None:
        """The tile edge to fuse a ``width`` x ``height`` pair with (``None``: whole).

        ``options.tile`` when given; else whole when the pair fits the model's sizes and the
        available memory (on the CPU; other devices' memory is not known here); else the
        largest of :data:`AUTO_TILES` (and of the largest tile the model's sizes allow) that
        fits both, announced through ``notify`` if
        ``announce``.

        Raises:
            FnetError: the given tile, or every tile, does not fit.
        """
        tile = self.options.tile
        largest = self.largest_tile(width, height)
        available = available_memory() if self.device.type == "cpu" else None

        def fits_memory(edge: int | None) -> bool:
            return available is None or self.memory_needed(width, height, edge) <= available

        what = f"fusing {width}x{height}" + (f" in tiles of {tile}" if tile else "")
        if tile and largest is not None and tile > largest:
            limits = self.runner.size_range
            assert limits is not None
            advice = f"use --tile {largest} or less" if largest else "fuse without --tile"
            raise FnetError(
                f"--tile {tile}: windows of {tile + 2 * self.config.receptive_radius} px exceed "
                f"what the model takes ({limits.describe()}); {advice}"
            )
        whole_fits_model = largest is None or largest == 0 or self._fits_whole(height, width)
        if (tile or whole_fits_model) and fits_memory(tile):
            return tile
        candidates = sorted({*AUTO_TILES, largest} if largest else set(AUTO_TILES), reverse=True)
        fitting = [t for t in candidates if (largest is None or t <= largest) and fits_memory(t)]
        needed = gib(self.memory_needed(width, height, tile))
        memory = "" if available is None else f", {gib(available)} is available"
        if tile or not fitting:
            advice = f"try --tile {fitting[0]}" if fitting else "crop or downscale the images"
            raise FnetError(f"{what} needs about {needed} of memory{memory}: {advice}")
        if announce and self.notify is not None:
            reason = (
                f"needs about {needed} of memory{memory}"
                if whole_fits_model
                else f"is larger than the model takes ({self._range_text()})"
            )
            self.notify(
                f"{what} {reason}: fusing in tiles of {fitting[0]} (exact; --tile sets the size)"
            )
        return fitting[0]

    def _fits_whole(self, height: int, width: int) -> bool:
        limits = self.runner.size_range
        return limits is None or limits.fits(height, width)

    def _range_text(self) -> str:
        limits = self.runner.size_range
        return "any size" if limits is None else limits.describe()

    def fuse_luma(self, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
        """Fuse two H x W float32 [0, 1] images into an H x W float32 [0, 1] image.

        Tiled when ``options.tile`` is set or the whole image would not fit (:meth:`tile_for`).
        """
        self.runner.activate()
        ir_t, vis_t = _as_batch(ir), _as_batch(vis)
        tile = self.tile_for(ir.shape[1], ir.shape[0])
        if tile:
            from fnet_deploy.model.tiling import tiled_forward

            fused = tiled_forward(self._forward, ir_t, vis_t, tile, self.config.receptive_radius)
        else:
            fused = self._forward(ir_t, vis_t)
        return fused.clamp(0.0, 1.0)[0, 0].numpy()

    def _forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        """The runner on B x 1 x h x w float32 CPU tensors; B x 1 x h x w, unclamped."""
        import torch

        self.runner.activate()
        feed = {"ir": ir.numpy(), "vis": vis.numpy()}
        return torch.from_numpy(self.runner.infer(feed)[OUTPUT_NAME])

    def fuse_files(self, ir_path: Path, vis_path: Path) -> np.ndarray:
        """Fuse two image files; returns the uint8 image to save (H x W, or H x W x 3 BGR).

        :meth:`read_pair` then :meth:`fuse_read`.

        Raises:
            InputError: as :meth:`read_pair` and :meth:`fuse_read`.
        """
        return self.fuse_read(self.read_pair(ir_path, vis_path))

    def read_pair(self, ir_path: Path, vis_path: Path) -> ReadPair:
        """Read and check a pair of image files as the network takes them, before any model is
        loaded: unreadable files, a pair too large for memory even in tiles (checked from the
        headers, before decoding) and differing sizes (unless ``options.resize``) are refused.

        Raises:
            InputError: naming the file at fault.
        """
        for path in (vis_path, ir_path):
            size = image_size(path)
            if size is not None:
                try:
                    self.tile_for(*size, announce=False)
                except FnetError as err:
                    raise InputError(path, str(err)) from None
        options = self.options
        ir = read_ir(ir_path, options.ir_norm, options.ir_percentiles, options.ir_range)
        vis = read_visible(vis_path, self.options.luminance)
        luma, chroma = vis.luma, vis.chroma
        if ir.shape != luma.shape:
            mode = self.options.resize
            if mode == "ir-to-vis":
                ir = _resize(ir, luma.shape)
            elif mode == "vis-to-ir":
                luma = _resize(luma, ir.shape)
                chroma = None if chroma is None else _resize(chroma, ir.shape)
            else:
                require_same_size(
                    ir_path,
                    ir,
                    vis_path,
                    luma,
                    "register the pair or pass --resize ir-to-vis or vis-to-ir",
                )
        return ReadPair(ir_path, ir, luma, chroma)

    def fuse_read(self, pair: ReadPair) -> np.ndarray:
        """Fuse a pair from :meth:`read_pair` (activating the runner); returns the uint8 image
        to save (H x W, or H x W x 3 BGR).

        With a ``layout`` other than ``fused`` the result is the BGR composite of the visible
        input, the IR input as the network saw it, and the fused image.

        Raises:
            InputError: the pair does not fit the model's sizes or the memory, even in tiles.
        """
        ir, luma, chroma = pair.ir, pair.luma, pair.chroma
        self.runner.activate()
        try:
            self.tile_for(ir.shape[1], ir.shape[0], announce=False)
        except FnetError as err:
            raise InputError(pair.ir_path, str(err)) from None
        fused = compose_output(self.fuse_luma(ir, luma), chroma)
        if self.options.layout == "fused":
            return fused
        return compose_view(fused, compose_output(luma, chroma), to_uint8(ir), self.options.layout)


@dataclass(frozen=True)
class ReadPair:
    """A pair of image files read as the network takes them (:meth:`ImageFuser.read_pair`).

    Attributes:
        ir_path: the infrared file, named by later errors.
        ir: H x W float32 [0, 1] infrared input.
        luma: H x W float32 [0, 1] visible luminance input.
        chroma: H x W x 2 float32 chroma to put back, or ``None`` (grey output).
    """

    ir_path: Path
    ir: np.ndarray
    luma: np.ndarray
    chroma: np.ndarray | None


def _as_batch(image: np.ndarray) -> torch.Tensor:
    """H x W array -> 1 x 1 x H x W float32 CPU tensor."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(image, np.float32))[None, None]


def _resize(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    height, width = shape[:2]
    shrinking = height * width < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)
