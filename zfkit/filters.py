"""Numbers for Fig. 6: how healthy a first layer's filters are.

The paper judges its filters by eye: without feature-scale clipping "one feature dominates" (a);
AlexNet's first layer has "extremely high and low frequency information, with little coverage of
the mid frequencies" and "dead" filters (b), and its stride-4 sampling aliases (d). These functions
turn each remark into a measurement.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .topk import layer_activations

__all__ = ["filter_rms", "top_energy_share", "dead_filters", "aliased_energy", "clipping_acted"]


def filter_rms(weight: torch.Tensor) -> torch.Tensor:
    """Root-mean-square of each filter (out_channels,): what feature-scale clipping bounds (§3)."""
    if weight.dim() != 4:
        raise ValueError(f"expected conv weights (out, in, kh, kw), got shape {tuple(weight.shape)}")
    return weight.detach().flatten(1).pow(2).mean(1).sqrt()


def top_energy_share(weight: torch.Tensor) -> float:
    """Share of the layer's total filter energy held by its single largest filter.

    1/out_channels when all filters are equally strong; near 1 when "one feature dominates".
    """
    energy = filter_rms(weight).pow(2)
    return float(energy.max() / energy.sum())


def dead_filters(model: nn.Module, images: torch.Tensor, layer: str = "conv1") -> int:
    """Maps of ``layer`` that never fire (rectified output zero everywhere) on ``images``."""
    acts = layer_activations(model, images, layer)
    return int((acts.flatten(2).amax(2).amax(0) <= 0).sum())


def aliased_energy(weight: torch.Tensor, stride: int, size: int = 64) -> float:
    """Fraction of the filters' spectral energy above the Nyquist limit of their stride.

    A convolution sampled every ``stride`` pixels represents frequencies up to 1/(2*stride)
    cycles/pixel; whatever the filters pass above that folds back (aliases) after subsampling.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    spectrum = torch.fft.fft2(weight.detach().double(), s=(size, size)).abs().pow(2).sum((0, 1))
    freq = torch.fft.fftfreq(size, d=1.0, dtype=torch.float64)
    beyond = (freq.abs()[:, None] > 1 / (2 * stride)) | (freq.abs()[None, :] > 1 / (2 * stride))
    return float(spectrum[beyond].sum() / spectrum.sum())


def clipping_acted(unclipped: torch.Tensor, clipped: torch.Tensor) -> bool:
    """Did feature-scale clipping ever rescale a filter in this pair of runs (Fig. 6a/c)?

    The two arms of a seed start from the same weights and see the same batches; clipping multiplies
    a filter by exactly 1 while its RMS stays within the radius, so the runs stay bit-identical
    until clipping first acts. Equal weights (any layer's, say the first) therefore mean it never
    did, and the pair says nothing about what clipping prevents.
    """
    if unclipped.shape != clipped.shape:
        raise ValueError(f"the two arms' weights must have the same shape, got {tuple(unclipped.shape)} and "
                         f"{tuple(clipped.shape)}; pass the same layer of the unclipped and the clipped run")
    return not torch.equal(unclipped.detach(), clipped.detach())
