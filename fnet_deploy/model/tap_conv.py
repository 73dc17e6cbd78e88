"""FNet's few-channel 9x9 convolutions as large matrix products ("tap-GEMM"), for CPU training.

FNet's convolutions all map 64 channels to C = 1 or 2 or back. PyTorch's CPU convolution is slow
on the 64 -> C shapes, forward and in the input gradient of C -> 64 (the same shape): there is
too little output per input to keep the cores busy. Written as a product of a small weight
matrix with the whole feature map and a sum of the k x k shifted taps (``fold``), or the
reverse (``unfold``, then a product), the same sums run as one GEMM with a long inner or outer
dimension. The arithmetic is the convolution's, only the order of the additions differs
(``tests/test_tap_conv.py`` checks every variant, forward and both gradients, against float64).

For a 'same' convolution of ``x`` (B x Ci x H x W) with ``w`` (Co x Ci x k x k), r = k // 2:

- **few outputs** (Ci > Co): ``y = fold(Wf @ x)``, where ``Wf`` (Co k k x Ci) holds ``w`` with its
  taps flipped (``fold`` sums each column's k x k block into the output, the adjoint of
  ``unfold``, hence the flip). Weight gradient ``unfold(g) @ x^T``, flipped back; the input
  gradient is a Co -> Ci convolution of ``g`` with the flipped, transposed ``w``, which PyTorch's
  own convolution computes fast.
- **few inputs** (Ci < Co): forward and weight gradient by PyTorch's own convolution (fast on
  these shapes), input gradient ``fold(Wm^T @ g)`` with ``Wm = w`` as Co x (Ci k k).

:func:`conv2d_tap` is the pure function; :class:`TapConv2d` a drop-in ``nn.Conv2d`` that calls
it; :func:`set_conv_form` switches a model's eligible convolutions between the two forms in place
(parameters shared, state_dict keys unchanged).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.grad import conv2d_weight

ConvForm = Literal["native", "tap"]


def _flipped_rows(w: Tensor) -> Tensor:
    """``w`` (Co x Ci x k x k) as the (Co k k) x Ci matrix of its spatially flipped taps."""
    co, ci, k, _ = w.shape
    return w.flip(2, 3).permute(0, 2, 3, 1).reshape(co * k * k, ci)


def _left_product(matrix: Tensor, batch: Tensor) -> Tensor:
    """``matrix @ batch[b]`` for every b: (M x K) and B x K x N -> B x M x N, one GEMM per
    image into one buffer (``torch.matmul`` broadcasting copies the operands and the result)."""
    out = batch.new_empty(batch.shape[0], matrix.shape[0], batch.shape[2])
    for index in range(batch.shape[0]):
        torch.mm(matrix, batch[index], out=out[index])
    return out


class _FewOutputs(torch.autograd.Function):
    """Same-padded convolution with many inputs and few outputs, by ``fold``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor) -> Tensor:
        batch, ci, height, width = x.shape
        k = w.shape[-1]
        rows = _flipped_rows(w)
        flat = x.contiguous().reshape(batch, ci, height * width)
        ctx.save_for_backward(flat, w)
        return F.fold(_left_product(rows, flat), (height, width), k, padding=k // 2)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        flat, w = ctx.saved_tensors
        co, ci, k, _ = w.shape
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            # The input gradient is a Co -> Ci convolution: PyTorch's fast direction.
            grad_x = F.conv2d(grad, w.flip(2, 3).transpose(0, 1), padding=k // 2)
        if ctx.needs_input_grad[1]:
            cols = F.unfold(grad.contiguous(), k, padding=k // 2)
            per_tap = torch.mm(cols[0], flat[0].t())
            for index in range(1, cols.shape[0]):
                per_tap.addmm_(cols[index], flat[index].t())
            grad_w = per_tap.reshape(co, k, k, ci).permute(0, 3, 1, 2).flip(2, 3)
        return grad_x, grad_w


class _FewInputs(torch.autograd.Function):
    """Same-padded convolution with few inputs and many outputs: PyTorch's forward and weight
    gradient, the input gradient by ``fold``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor) -> Tensor:
        ctx.save_for_backward(x, w)
        return F.conv2d(x, w, padding=w.shape[-1] // 2)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, w = ctx.saved_tensors
        batch, _, height, width = x.shape
        co, _, k, _ = w.shape
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            flat = grad.contiguous().reshape(batch, co, height * width)
            grad_x = F.fold(
                _left_product(w.reshape(co, -1).t(), flat), (height, width), k, padding=k // 2
            )
        if ctx.needs_input_grad[1]:
            grad_w = conv2d_weight(x, w.shape, grad, padding=k // 2)
        return grad_x, grad_w


def conv2d_tap(x: Tensor, w: Tensor) -> Tensor:
    """Bias-free, stride-1, zero 'same'-padded convolution of ``x`` with ``w`` in tap-GEMM form.

    Args:
        x: B x Ci x H x W, any floating dtype.
        w: Co x Ci x k x k, k odd, same dtype and device.

    Returns:
        B x Co x H x W, ``F.conv2d(x, w, padding=k // 2)`` up to the order of the additions
        (contiguous layout).
    """
    if w.shape[0] < w.shape[1]:
        return _FewOutputs.apply(x, w)
    return _FewInputs.apply(x, w)


class TapConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (bias-free, stride 1, 'same' odd kernel, one group) computed by
    :func:`conv2d_tap`; same parameters and state_dict."""

    def forward(self, input: Tensor) -> Tensor:
        return conv2d_tap(input, self.weight)


def eligible(module: nn.Module) -> bool:
    """Whether ``module`` is a convolution that :class:`TapConv2d` computes exactly: bias-free,
    stride 1, no dilation, one group, odd square kernel with 'same' zero padding, and a channel
    count of 8 or fewer on one side."""
    if not isinstance(module, nn.Conv2d) or module.bias is not None:
        return False
    k = module.kernel_size[0]
    return (
        module.kernel_size == (k, k)
        and k % 2 == 1
        and module.stride == (1, 1)
        and module.dilation == (1, 1)
        and module.groups == 1
        and module.padding == (k // 2, k // 2)
        and module.padding_mode == "zeros"
        and min(module.in_channels, module.out_channels) <= 8
    )


def set_conv_form(model: nn.Module, form: ConvForm) -> int:
    """Compute every eligible convolution of ``model`` in ``form``, in place.

    The module objects keep their parameters (an optimiser built before or after stays valid)
    and their state_dict keys; only the class that computes the forward pass changes.

    Returns:
        How many convolutions are in that form now.
    """
    target = TapConv2d if form == "tap" else nn.Conv2d
    count = 0
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and eligible(module):
            module.__class__ = target
            count += 1
    return count


def conv_form_of(model: nn.Module) -> ConvForm:
    """``tap`` if any convolution of ``model`` is a :class:`TapConv2d`, else ``native``."""
    return "tap" if any(isinstance(m, TapConv2d) for m in model.modules()) else "native"
