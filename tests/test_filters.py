"""Fig. 6 measurements on filters with known answers."""

import math

import pytest
import torch
from torch import nn

from zfkit import filters


def test_rms_and_dominance_closed_form():
    w = torch.zeros(4, 1, 2, 2)
    w[0] = 2.0  # rms 2
    w[1:] = 1.0  # rms 1
    # exact on any kernel: squares, sums and square roots of these whole numbers round nothing
    assert filters.filter_rms(w).tolist() == [2.0, 1.0, 1.0, 1.0]
    assert filters.top_energy_share(w) == pytest.approx(4 / 7)
    assert filters.top_energy_share(torch.ones(5, 3, 3, 3)) == pytest.approx(1 / 5)


def test_dead_filters_counts_maps_that_never_fire():
    model = nn.Sequential()
    model.features = nn.Sequential(nn.Conv2d(1, 3, 1), nn.ReLU())
    with torch.no_grad():
        model.features[0].weight[:, 0, 0, 0] = torch.tensor([1.0, -1.0, 0.0])
        model.features[0].bias.zero_()
    images = torch.rand(5, 1, 4, 4) + 0.1  # positive pixels: filter 0 fires, 1 and 2 never do
    assert filters.dead_filters(model, images, model.features[0]) == 2


def test_aliased_energy_of_pure_gratings():
    x = torch.arange(64, dtype=torch.float64)
    slow = torch.cos(2 * math.pi * x / 16)[None, :].repeat(64, 1)  # 1/16 cycles/px
    fast = torch.cos(2 * math.pi * 3 * x / 16)[None, :].repeat(64, 1)  # 3/16 cycles/px
    as_filters = lambda g: g.view(1, 1, 64, 64)  # noqa: E731
    assert filters.aliased_energy(as_filters(slow), stride=4) == pytest.approx(0.0, abs=1e-9)  # 1/16 < 1/8
    assert filters.aliased_energy(as_filters(fast), stride=4) == pytest.approx(1.0, abs=1e-9)  # 3/16 > 1/8
    assert filters.aliased_energy(as_filters(fast), stride=2) == pytest.approx(0.0, abs=1e-9)  # 3/16 < 1/4
    with pytest.raises(ValueError, match="stride"):
        filters.aliased_energy(as_filters(fast), stride=0)


def test_clipping_acted_only_where_the_twins_differ():
    w = torch.randn(4, 1, 3, 3)
    assert filters.clipping_acted(w, w.clone()) is False
    clipped = w.clone()
    clipped[2] *= 0.5
    assert filters.clipping_acted(w, clipped) is True
    with pytest.raises(ValueError, match="same shape"):
        filters.clipping_acted(w, w[:3])
