"""FNet / IFNet / LZSC against an independent re-statement of docs/model.md §2."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fnet_deploy.model import LZSC, FNet, IFNet, ModelConfig
from fnet_deploy.model.threshold import smooth_l0, soft_l1

SMALL = ModelConfig(filters=4, kernel_size=3, iterations=3)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_default_fnet_has_the_published_parameter_count() -> None:
    assert n_params(FNet()) == 419_916


@pytest.mark.parametrize("iterations", [1, 2, 4, 6])
def test_lzsc_convolution_count_follows_iterations(iterations: int) -> None:
    block = LZSC(1, ModelConfig(iterations=iterations))
    convs = [m for m in block.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 1 + 3 + 5 * (iterations - 1)
    assert block.thresholds().shape == (iterations + 1,)


def test_initial_schedule_matches_the_design() -> None:
    block = LZSC(1)
    k = torch.arange(5.0)
    assert torch.allclose(block.thresholds(), F.softplus(-0.5 * k - 2.0))
    sp = F.softplus(0.5 * k)
    assert torch.allclose(block.momenta(), (sp - F.softplus(torch.tensor(0.0))) / sp)
    rhos = block.momenta()
    assert rhos[0] == 0 and bool((rhos[1:] > 0).all()) and bool((rhos.diff() > 0).all())


def conv(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, w, padding=w.shape[-1] // 2)


def reference_lzsc(block: LZSC, e: torch.Tensor, threshold=smooth_l0) -> torch.Tensor:
    """docs/model.md §2.2 written out step by step, with the block's own weights."""
    s = block.steps
    th = lambda k: F.softplus(block.w_theta * k + block.b_theta)  # noqa: E731
    sp = lambda k: F.softplus(block.w_rho * k + block.b_rho)  # noqa: E731
    rho = lambda k: (sp(k) - sp(0)) / sp(k)  # noqa: E731
    res = lambda pair, x: x - conv(conv(x, pair.down.weight), pair.up.weight)  # noqa: E731
    xs = [threshold(conv(e, s[0].encode.weight), th(0))]
    xs.append(threshold((1 + rho(1)) * res(s[1].prev, xs[0]) + conv(e, s[1].encode.weight), th(1)))
    for k in range(2, len(s)):
        pre = (1 + rho(k)) * res(s[k].prev, xs[k - 1]) - rho(k) * res(s[k].prev2, xs[k - 2])
        xs.append(threshold(pre + conv(e, s[k].encode.weight), th(k)))
    return xs[-1]


def randomize_scalars(module: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        if p.numel() == 1:
            with torch.no_grad():
                p.add_(0.3 * torch.randn(1, generator=gen, dtype=p.dtype))


@pytest.mark.parametrize("kind", ["l0", "l1"])
def test_lzsc_matches_the_written_out_recursion(kind: str) -> None:
    torch.manual_seed(0)
    config = ModelConfig(filters=6, kernel_size=5, iterations=4, threshold=kind)
    block = LZSC(2, config).double()
    randomize_scalars(block, 1)
    e = torch.rand(2, 2, 17, 23, dtype=torch.float64)
    threshold = smooth_l0 if kind == "l0" else (lambda x, t: soft_l1(x, t))
    expected = reference_lzsc(block, e, threshold)
    assert torch.allclose(block(e), expected, atol=1e-12, rtol=0)


def test_fnet_matches_the_written_out_model() -> None:
    torch.manual_seed(1)
    model = FNet(ModelConfig(filters=5, kernel_size=3, iterations=3)).double()
    ir, vis = (
        torch.rand(1, 1, 12, 15, dtype=torch.float64),
        torch.rand(1, 1, 12, 15, dtype=torch.float64),
    )
    u, v = reference_lzsc(model.unique_ir, ir), reference_lzsc(model.unique_vis, vis)
    p = torch.cat((ir - conv(u, model.proj_ir.weight), vis - conv(v, model.proj_vis.weight)), 1)
    z = reference_lzsc(model.common, p)
    fused = (
        conv(u, model.dec_ir.weight)
        + conv(z, model.dec_common.weight)
        + conv(v, model.dec_vis.weight)
    )
    assert torch.allclose(model(ir, vis), fused, atol=1e-12, rtol=0)


def test_argument_order_matters_ir_first() -> None:
    torch.manual_seed(2)
    model = FNet(SMALL)
    a, b = torch.rand(1, 1, 10, 10), torch.rand(1, 1, 10, 10)
    assert not torch.allclose(model(a, b), model(b, a))


def test_trace_reconstructions_sum_to_forward() -> None:
    torch.manual_seed(3)
    model = FNet(SMALL).double()
    ir, vis = (
        torch.rand(2, 1, 16, 16, dtype=torch.float64),
        torch.rand(2, 1, 16, 16, dtype=torch.float64),
    )
    trace = model.trace(ir, vis)
    assert torch.allclose(trace.fused, model(ir, vis), atol=1e-12)
    assert torch.allclose(trace.rec_ir + trace.rec_common + trace.rec_vis, trace.fused, atol=1e-12)
    assert set(trace.blocks) == {"unique_ir", "unique_vis", "common"}
    common = trace.blocks["common"]
    assert len(common.codes) == SMALL.iterations + 1
    assert torch.equal(common.codes[-1], trace.common)
    assert torch.allclose(common.codes[0], smooth_l0(common.pre[0], common.thetas[0]))


def test_receptive_radius_is_exact() -> None:
    torch.manual_seed(4)
    model = FNet(SMALL).double()
    radius = model.receptive_radius
    assert radius == (4 * SMALL.iterations + 4) * (SMALL.kernel_size // 2)
    size = 2 * radius + 9
    c = size // 2
    ir, vis = (
        torch.rand(1, 1, size, size, dtype=torch.float64),
        torch.rand(1, 1, size, size, dtype=torch.float64),
    )
    base = model(ir, vis)[0, 0, c, c]
    inside, outside = ir.clone(), ir.clone()
    inside[..., c, c + radius] += 1.0
    outside[..., c, c + radius + 1] += 1.0
    assert model(inside, vis)[0, 0, c, c] != base
    assert model(outside, vis)[0, 0, c, c] == base


def test_ifnet_has_two_distinct_output_convolutions() -> None:
    torch.manual_seed(5)
    net = IFNet(SMALL)
    fused = torch.rand(1, 1, 12, 12)
    ir_hat, vis_hat = net(fused)
    assert ir_hat.shape == vis_hat.shape == fused.shape
    with torch.no_grad():
        net.out_vis.weight.zero_()
    ir_hat2, vis_hat2 = net(fused)
    assert torch.equal(ir_hat, ir_hat2)
    assert torch.count_nonzero(vis_hat2) == 0


def test_fully_convolutional_any_size_and_batch() -> None:
    model = FNet(SMALL)
    for shape in [(1, 1, 7, 31), (3, 1, 20, 13)]:
        assert model(torch.rand(shape), torch.rand(shape)).shape == shape


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError):
        ModelConfig(kernel_size=4)
    with pytest.raises(ValueError):
        ModelConfig(iterations=0)
    with pytest.raises(ValueError):
        ModelConfig.from_dict({"filters": 8, "bogus": 1})
    assert ModelConfig.from_dict(SMALL.to_dict()) == SMALL
