"""Deploy form of FNet: the unrolled iterations with every learned scalar folded in.

With the iteration count fixed, each block's theta_k and rho_k are constants. :func:`to_deploy`
turns a trained :class:`FNet` (training form) into a :class:`DeployFNet` (deploy form) that
computes the same function with fewer, wider convolutions, in the spirit of RepVGG's
reparameterisation:

- **read convolutions**: the D convolutions that read the same code x_k (step k+1's ``Da`` and
  step k+2's ``Db``) become one F -> 2C convolution, computed once;
- **mix convolutions**: the U and W convolutions whose results are summed become one multi-input
  convolution per step over ``[Da x_{k-1}, Db x_{k-2}, e]`` with weights
  ``[-(1 + rho_k) Ua, rho_k Ub, W_k]``; the rest of the step is the pointwise
  ``(1 + rho_k) x_{k-1} - rho_k x_{k-2}``;
- **tail convolutions**: ``Cu`` and ``Du`` (both read u) become one F -> 2 convolution, likewise
  ``Cv`` and ``Dv``;
- **thresholds**: ``alpha * theta_k`` and ``gamma * theta_k`` become constants of the sigmoid
  form ``sign(x) (|x| - alpha theta) sigmoid(gamma |x| - gamma theta)`` (never overflows).

The published model's 62 convolutions become 30 with the same multiply-accumulate count.
Options (:class:`DeployOptions`, measured in docs/performance.md): all ``W_k e`` of a block in
one C -> F (N + 1) convolution (bought nothing on CPU, off by default), the convolutions
with few outputs as taps plus ``Col2Im`` (:class:`TapConv`; fast on ONNX Runtime CPU, not
supported by TensorRT, off by default), and the gate's sigmoid written with ``Exp`` (accurate on
ONNX Runtime CPU, off by default).

Folding is done in float64 and the result stored in the requested dtype; in float64 the deploy
form equals the training form to rounding (about 1e-15).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from fnet_deploy.model.config import ModelConfig, ThresholdKind
from fnet_deploy.model.fnet import FNet
from fnet_deploy.model.layers import Residual
from fnet_deploy.model.lzsc import LZSC, IterationStep


@dataclass(frozen=True)
class DeployOptions:
    """Choices of the deploy-form conversion.

    Attributes:
        merge_encoders: compute all ``W_k e`` of a block with one C -> F (N + 1) convolution
            instead of feeding ``e`` into every step's mix convolution.
        col2im: compute every convolution with few outputs (the F -> 2C reads and the F -> 2
            tails) as a 1x1 convolution to C K^2 tap images plus a shift-and-sum (``fold``,
            ONNX ``Col2Im``, opset >= 18), see :class:`TapConv`. Several times faster on ONNX
            Runtime's CPU provider, slower in eager PyTorch, and not supported by TensorRT.
        exp_gate: compute the smooth-l0 gate ``sigmoid(z)`` as ``1 / (1 + exp(-z))``. ONNX
            Runtime's CPU ``Sigmoid`` is a fast approximation (absolute error about 1e-7, so a
            large relative error for z below -10, common on dark images) that puts its result
            up to 0.3 grey levels off; with ``Exp`` it is as accurate as PyTorch's float32, at
            the same speed (docs/performance.md). Off by default: float16 graphs keep the one
            ``Sigmoid`` (no ``Exp`` that overflows).
    """

    merge_encoders: bool = False
    col2im: bool = False
    exp_gate: bool = False

    def to_dict(self) -> dict[str, bool]:
        """Plain JSON-serialisable form."""
        return asdict(self)


def _conv_with(weight: Tensor, dtype: torch.dtype) -> nn.Conv2d:
    """A bias-free 'same' convolution (explicit padding) holding ``weight`` (out, in, k, k)."""
    out_channels, in_channels, kernel, _ = weight.shape
    layer = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False)
    layer.weight = nn.Parameter(weight.to(dtype).contiguous(), requires_grad=False)
    return layer


class TapConv(nn.Module):
    """A 'same' K x K convolution F -> C computed as taps plus a shift-and-sum.

    A 1x1 convolution gives the C K^2 tap images ``t[c, dy, dx] = sum_f W[c, f, dy, dx] x[f]``
    (the same multiply-accumulates as the K x K convolution, in a shape CPU GEMMs handle well
    when C is small), and ``fold`` (ONNX ``Col2Im``) adds each tap image shifted by its offset.
    The taps are stored spatially flipped because ``fold`` places tap (i, j) of the block at
    pixel p at p + (i, j) - K // 2. Input B x F x H x W, output B x C x H x W.
    """

    def __init__(self, weight: Tensor, dtype: torch.dtype) -> None:
        super().__init__()
        _, in_channels, kernel, _ = weight.shape
        taps = weight.flip(-2, -1).permute(0, 2, 3, 1).reshape(-1, in_channels, 1, 1)
        self.taps = nn.Conv2d(in_channels, taps.shape[0], 1, bias=False)
        self.taps.weight = nn.Parameter(taps.to(dtype).contiguous(), requires_grad=False)
        self.kernel = kernel

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        return nn.functional.fold(
            self.taps(x).flatten(2),
            output_size=(height, width),
            kernel_size=self.kernel,
            padding=self.kernel // 2,
        )


def _reading_conv(weight: Tensor, dtype: torch.dtype, options: DeployOptions) -> nn.Module:
    """A convolution with few outputs: plain, or :class:`TapConv` with ``options.col2im``."""
    return TapConv(weight, dtype) if options.col2im else _conv_with(weight, dtype)


@dataclass(frozen=True)
class FoldedThreshold:
    """One step's threshold with its constants folded (python floats, so any dtype works).

    ``l0``: ``sign(x) * (|x| - shift) * sigmoid(gain * |x| - offset)`` with ``shift = alpha
    theta``, ``gain = gamma``, ``offset = gamma theta`` (the sigmoid as ``1 / (1 + exp(offset -
    gain * |x|))`` with ``exp_gate``, see :class:`DeployOptions`). ``l1``: ``sign(x) *
    relu(|x| - shift)`` with ``shift = theta``.
    """

    kind: ThresholdKind
    shift: float
    gain: float
    offset: float
    exp_gate: bool = False

    @classmethod
    def fold(cls, config: ModelConfig, theta: float, exp_gate: bool = False) -> FoldedThreshold:
        """The threshold of ``config`` at ``theta``."""
        if config.threshold == "l0":
            return cls("l0", config.alpha * theta, config.gamma, config.gamma * theta, exp_gate)
        return cls("l1", theta, 0.0, 0.0)

    def __call__(self, x: Tensor) -> Tensor:
        # |x| as x * sign(x) (exact): the exporter computes a float16 Abs in float32 with casts
        # around it, which strongly typed float16 graphs must not have.
        sign = torch.sign(x)
        magnitude = x * sign
        if self.kind == "l0":
            if self.exp_gate:
                gate = torch.reciprocal(1.0 + torch.exp(self.offset - magnitude * self.gain))
            else:
                gate = torch.sigmoid(magnitude * self.gain - self.offset)
            return sign * (magnitude - self.shift) * gate
        return sign * torch.relu(magnitude - self.shift)


class DeployLZSC(nn.Module):
    """An LZSC block with its iterations unrolled and its scalars folded.

    Maps e (B x C x H x W) to the code x_N (B x F x H x W), like :class:`LZSC`.

    Convolutions: ``encoder`` (C -> F, or C -> F (N + 1) with merged encoders), ``reads[k]`` on
    x_k for k = 0..N-1 (F -> 2C: ``[Da_{k+1} x_k, Db_{k+2} x_k]``; F -> C for k = N - 1) and
    ``mixes[k - 1]`` for steps k = 1..N (over ``[Da_k x_{k-1}, Db_k x_{k-2}, e]``, the middle
    part absent for k = 1, ``e`` absent with merged encoders).
    """

    def __init__(self, block: LZSC, options: DeployOptions, dtype: torch.dtype) -> None:
        super().__init__()
        steps = [step for step in block.steps if isinstance(step, IterationStep)]
        n = len(steps) - 1
        self.channels = block.channels
        self.filters = block.config.filters
        self.iterations = n
        self.merged = options.merge_encoders
        with torch.no_grad():
            thetas = block.thresholds().double().tolist()
            rhos = block.momenta().double().tolist()
            w = [step.encode.weight.double() for step in steps]
            self.encoder = _conv_with(torch.cat(w) if self.merged else w[0], dtype)
            self.reads = nn.ModuleList()
            self.mixes = nn.ModuleList()
            for k in range(n):
                parts = [_residual(steps[k + 1], "prev").down.weight]
                if k + 2 <= n:
                    parts.append(_residual(steps[k + 2], "prev2").down.weight)
                self.reads.append(_reading_conv(torch.cat(parts).double(), dtype, options))
            for k in range(1, n + 1):
                parts = [-(1 + rhos[k]) * _residual(steps[k], "prev").up.weight.double()]
                if k >= 2:
                    parts.append(rhos[k] * _residual(steps[k], "prev2").up.weight.double())
                if not self.merged:
                    parts.append(w[k])
                self.mixes.append(_conv_with(torch.cat(parts, dim=1), dtype))
        self.keep = [1.0 + rho for rho in rhos]
        self.momentum = list(rhos)
        self.gates = [
            FoldedThreshold.fold(block.config, theta, options.exp_gate) for theta in thetas
        ]

    def forward(self, e: Tensor) -> Tensor:
        """Code x_N (B x F x H x W) of ``e`` (B x C x H x W)."""
        c = self.channels
        encoded = self.encoder(e)
        codes = encoded.split(self.filters, dim=1) if self.merged else (encoded,)
        x_prev = self.gates[0](codes[0])
        x_prev2 = x_prev
        carried = x_prev
        for k in range(1, self.iterations + 1):
            read = self.reads[k - 1](x_prev)
            inputs = [read[:, :c] if k < self.iterations else read]
            pointwise = x_prev * self.keep[k]
            if k >= 2:
                inputs.append(carried)
                pointwise = pointwise - x_prev2 * self.momentum[k]
            if not self.merged:
                inputs.append(e)
            pre = self.mixes[k - 1](torch.cat(inputs, dim=1)) + pointwise
            if self.merged:
                pre = pre + codes[k]
            if k < self.iterations:
                carried = read[:, c:]
            x_prev2, x_prev = x_prev, self.gates[k](pre)
        return x_prev


def _residual(step: IterationStep, which: str) -> Residual:
    term = getattr(step, which)
    if not isinstance(term, Residual):
        raise ValueError(f"step has no '{which}' term")
    return term


class DeployFNet(nn.Module):
    """FNet in deploy form: same inputs, output and function as :class:`FNet`.

    ``ir`` and ``vis`` are B x 1 x H x W in [0, 1]; the output ``fused`` is B x 1 x H x W
    (unclamped). Build it with :func:`to_deploy`.
    """

    def __init__(self, model: FNet, options: DeployOptions, dtype: torch.dtype) -> None:
        super().__init__()
        self.config = model.config
        self.options = options
        self.unique_ir = DeployLZSC(model.unique_ir, options, dtype)
        self.unique_vis = DeployLZSC(model.unique_vis, options, dtype)
        self.common = DeployLZSC(model.common, options, dtype)
        with torch.no_grad():
            self.tail_ir = _reading_conv(
                torch.cat((model.proj_ir.weight, model.dec_ir.weight)).double(), dtype, options
            )
            self.tail_vis = _reading_conv(
                torch.cat((model.proj_vis.weight, model.dec_vis.weight)).double(), dtype, options
            )
            self.tail_common = _reading_conv(model.dec_common.weight.double(), dtype, options)

    def forward(self, ir: Tensor, vis: Tensor) -> Tensor:
        """Fused image, B x 1 x H x W, from ``ir`` and ``vis`` (B x 1 x H x W, [0, 1])."""
        tail_ir = self.tail_ir(self.unique_ir(ir))
        tail_vis = self.tail_vis(self.unique_vis(vis))
        common_input = torch.cat((ir - tail_ir[:, :1], vis - tail_vis[:, :1]), dim=1)
        fused_common = self.tail_common(self.common(common_input))
        return tail_ir[:, 1:] + fused_common + tail_vis[:, 1:]

    def convolution_count(self) -> int:
        """Number of convolutions one forward pass runs."""
        return sum(isinstance(m, nn.Conv2d) for m in self.modules())


def to_deploy(
    model: FNet, options: DeployOptions | None = None, dtype: torch.dtype | None = None
) -> DeployFNet:
    """Convert a trained FNet (training form) into its deploy form.

    Args:
        model: the trained FNet; it is not modified.
        options: conversion choices (defaults: :class:`DeployOptions`).
        dtype: dtype of the deploy form's weights (default: the model's); folding itself is
            done in float64.

    Returns:
        A :class:`DeployFNet` in eval mode on the model's device, without gradients.
    """
    reference = next(model.parameters())
    deploy = DeployFNet(model, options or DeployOptions(), dtype or reference.dtype)
    return deploy.to(reference.device).eval().requires_grad_(False)
