"""The banded-GEMM LRN against PyTorch's avg_pool3d implementation and a closed form."""

import pytest
import torch
from torch import nn

from zfkit import models
from zfkit.lrn import LocalResponseNorm, channel_band


def _pair(size, alpha=1e-4, beta=0.75, k=2.0):
    return LocalResponseNorm(size, alpha, beta, k), nn.LocalResponseNorm(size, alpha, beta, k)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 9])
@pytest.mark.parametrize("channels_last", [False, True])
def test_matches_pytorch_forward_and_backward(size, channels_last):
    torch.manual_seed(size)
    # Large activations (as after an unnormalised ReLU) so that the denominator is far from k.
    x = torch.randn(3, 7, 5, 6, dtype=torch.float64) * 40
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    ours, reference = _pair(size, alpha=1e-3)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = ours(x1), reference(x2)
    torch.testing.assert_close(y1, y2, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(y1)
    y1.backward(g)
    y2.backward(g)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-12, atol=1e-12)


def test_closed_form_for_one_unit():
    """Channel 2 of 4 with size 3 sums channels 1..3: b = a / (k + alpha/3 * (a1² + a2² + a3²))^beta."""
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64).view(1, 4, 1, 1)
    y = LocalResponseNorm(3, alpha=0.3, beta=0.5, k=1.0)(x)
    assert y[0, 2, 0, 0].item() == pytest.approx(3.0 / (1.0 + 0.1 * (4 + 9 + 16)) ** 0.5, rel=1e-12)
    # The last channel's window runs off the end: only channels 2 and 3 contribute.
    assert y[0, 3, 0, 0].item() == pytest.approx(4.0 / (1.0 + 0.1 * (9 + 16)) ** 0.5, rel=1e-12)


def test_even_window_reaches_further_back_as_pytorch_pads():
    band = channel_band(5, 4)
    # Channel 2's window is channels 0..3: two before, one after.
    assert band[:, 2].tolist() == [1, 1, 1, 1, 0]


def test_keeps_the_memory_format_and_other_ranks_fall_back():
    x = torch.rand(2, 6, 4, 4).to(memory_format=torch.channels_last)
    assert LocalResponseNorm(5)(x).is_contiguous(memory_format=torch.channels_last)
    x3 = torch.rand(2, 6, 10)
    torch.testing.assert_close(LocalResponseNorm(5)(x3), nn.LocalResponseNorm(5)(x3))


def test_models_use_it_and_stay_a_torch_lrn():
    norms = [m for m in models.zfnet_mini().modules() if isinstance(m, nn.LocalResponseNorm)]
    assert len(norms) == 2 and all(type(m) is LocalResponseNorm for m in norms)
    assert repr(norms[0]).startswith("LocalResponseNorm(5, alpha=0.0001, beta=0.75, k=2.0")
