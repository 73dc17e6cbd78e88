"""Exponential moving average of the weights."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fnet_deploy.model import FNet, ModelConfig
from fnet_deploy.training.ema import ModelEMA


def test_average_follows_the_closed_form() -> None:
    model = nn.Linear(3, 2)
    nn.init.constant_(model.weight, 1.0)
    nn.init.constant_(model.bias, -1.0)
    ema = ModelEMA(model, decay=0.9)
    values = [2.0, 4.0, -1.0]
    for step, value in enumerate(values, start=1):
        with torch.no_grad():
            model.weight.fill_(value)
        ema.update(model, step)
    expected = 1.0
    for value in values:
        expected = 0.9 * expected + 0.1 * value
    torch.testing.assert_close(ema.state_dict()["weight"], torch.full((2, 3), expected))
    torch.testing.assert_close(ema.state_dict()["bias"], torch.full((2,), -1.0))


def test_warm_up_forgets_the_start_and_reaches_the_set_decay() -> None:
    model = nn.Linear(1, 1, bias=False)
    nn.init.constant_(model.weight, 100.0)
    ema = ModelEMA(model, decay=0.999, warmup=True)
    assert ema.decay_at(1) == pytest.approx(2 / 11)
    assert ema.decay_at(9000) == 0.999
    with torch.no_grad():
        model.weight.fill_(0.0)
    expected = 100.0
    for step in range(1, 301):
        ema.update(model, step)
        expected *= min(0.999, (1 + step) / (10 + step))
    # the product of (1 + n) / (10 + n) telescopes to 10! / (302 * ... * 310), about 1.5e-16
    assert expected == pytest.approx(100.0 * math.factorial(10) / math.prod(range(302, 311)))
    assert expected < 1e-13
    torch.testing.assert_close(ema.state_dict()["weight"], torch.tensor([[expected]]))
    plain = ModelEMA(nn.Linear(1, 1, bias=False), decay=0.999)
    assert plain.decay_at(1) == 0.999


def test_zero_decay_copies_and_the_average_is_a_separate_frozen_copy() -> None:
    model = FNet(ModelConfig(filters=4, kernel_size=3, iterations=2))
    ema = ModelEMA(model, decay=0.0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    ema.update(model, 1)
    for (name, value), average in zip(
        model.state_dict().items(), ema.state_dict().values(), strict=True
    ):
        assert torch.equal(value, average), name
        assert average.data_ptr() != value.data_ptr()
    assert not any(p.requires_grad for p in ema.module.parameters())
    assert isinstance(ema.averaged(FNet), FNet)


def test_state_round_trip_and_bad_decay() -> None:
    model = nn.Linear(2, 2)
    ema = ModelEMA(model, decay=0.5)
    state = {k: v + 1 for k, v in ema.state_dict().items()}
    ema.load_state_dict(state)
    torch.testing.assert_close(ema.state_dict()["weight"], state["weight"])
    with pytest.raises(ValueError, match="decay"):
        ModelEMA(model, decay=1.0)
