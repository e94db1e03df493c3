"""Fig. 2's panels: for a feature map, its top-k projections next to the image patches behind them.

The top-k scan (:func:`zfkit.topk.topk`) finds, over a dataset, the images that excite a map most;
the deconvnet projects each image's strongest unit of that map to pixels; both the projection
and the image are cut to the unit's receptive field, as in the paper's figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from .deconv import Deconvnet
from .rf import receptive_field
from .topk import TopK, topk

__all__ = ["Panel", "top_projections"]


@dataclass
class Panel:
    """One feature map's top-k: values, image indices, and (k, C, s, s) projections and patches."""

    layer: str
    channel: int
    values: torch.Tensor
    indices: torch.Tensor
    projections: torch.Tensor
    patches: torch.Tensor
    labels: torch.Tensor


def top_projections(model: nn.Module, dataset: Dataset, layer: str, channels, k: int = 9,
                    scan: TopK | None = None, rule: str = "deconvnet", progress: bool = True) -> list[Panel]:
    """A :class:`Panel` per channel of ``layer``; pass ``scan`` to reuse an earlier top-k pass."""
    channels = [channels] if isinstance(channels, int) else list(channels)
    scan = scan if scan is not None else topk(model, dataset, layer, k=k, progress=progress)
    images = getattr(dataset, "images", None)
    labels = getattr(dataset, "targets", None)
    size = (images.shape[1], images.shape[-2], images.shape[-1])
    field = receptive_field(model, layer, size)
    deconv = Deconvnet(model, rule=rule)
    was_training = model.training
    model.eval()
    panels = []
    try:
        for c in channels:
            idx = scan.indices[c, :k]
            proj = deconv.project(images[idx], layer, channels=[c], mode="max")[:, 0]  # (k, C, H, W)
            cut = lambda batch: torch.stack([field.patch(im, int(y), int(x)) for im, y, x in  # noqa: E731
                                             zip(batch, scan.ys[c, :k], scan.xs[c, :k])])
            panels.append(Panel(layer, c, scan.values[c, :k], idx, cut(proj), cut(images[idx]), labels[idx]))
    finally:
        model.train(was_training)
    return panels
