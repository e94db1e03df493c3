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

__all__ = ["Panel", "top_projections", "coherence", "label_diversity", "Evolution", "evolution"]


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
    images = getattr(dataset, "images", None)
    labels = getattr(dataset, "targets", None)
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or labels is None:
        raise ValueError("top_projections needs a dataset holding its images as .images (N, C, H, W) and its labels "
                         "as .targets, like zfkit.data.TensorImages")
    channels = [channels] if isinstance(channels, int) else list(channels)
    scan = scan if scan is not None else topk(model, dataset, layer, k=k, progress=progress)
    n_channels, kept = scan.indices.shape
    if k > kept:
        raise ValueError(f"k={k} but the scan holds only the top {kept} per channel; pass k <= {kept} or rescan "
                         f"with topk(..., k={k})")
    wrong = [c for c in channels if not 0 <= c < n_channels]
    if wrong:
        raise ValueError(f"channel index out of range: {layer} has {n_channels} channels (0 … {n_channels - 1}), "
                         f"got {wrong}")
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


def _mean_pairwise_cosine(a: torch.Tensor, b: torch.Tensor | None = None) -> float:
    """Mean cosine similarity between rows of ``a`` and ``b`` (of ``a`` with itself, off-diagonal, if None)."""
    a = torch.nn.functional.normalize(a.flatten(1).double(), dim=1)
    if b is None:
        sims = a @ a.T
        n = len(a)
        return float((sims.sum() - sims.diagonal().sum()) / (n * (n - 1)))
    b = torch.nn.functional.normalize(b.flatten(1).double(), dim=1)
    return float((a @ b.T).mean())


def coherence(panels: list[Panel], of: str = "patches") -> dict[str, float]:
    """Fig. 2's "grouping": how alike a map's top-k are, within the map versus across maps.

    Mean cosine similarity of the input patches (or ``of="projections"``) over pairs from the same
    map, and over pairs from two different maps of the same layer. The paper's claim is that each
    map's top-k share a structure, so ``within`` should exceed ``across``.
    """
    if len(panels) < 2:
        raise ValueError("coherence needs panels of at least two maps (to compare across maps)")
    stacks = [getattr(p, of) for p in panels]
    within = sum(_mean_pairwise_cosine(s) for s in stacks) / len(stacks)
    pairs = [(i, j) for i in range(len(stacks)) for j in range(i + 1, len(stacks))]
    across = sum(_mean_pairwise_cosine(stacks[i], stacks[j]) for i, j in pairs) / len(pairs)
    return {"within": within, "across": across}


def label_diversity(panels: list[Panel]) -> float:
    """Mean number of distinct class labels among each map's top-k images.

    Upper layers should respond to class-specific content (fewer labels per map), lower layers to
    edges and textures shared by many classes: the paper's "greater invariance" with depth.
    """
    if not panels:
        raise ValueError("label_diversity needs at least one panel")
    return sum(len(set(p.labels.tolist())) for p in panels) / len(panels)


@dataclass
class Evolution:
    """Fig. 4: for each training snapshot and map, the strongest activation over a dataset, projected.

    ``indices`` (E, M) is the winning image per epoch and map; ``projections`` (E, M, C, s, s).
    """

    layer: str
    epochs: list[int]
    channels: list[int]
    values: torch.Tensor
    indices: torch.Tensor
    projections: torch.Tensor

    def settled_epoch(self) -> list[int]:
        """Per map, the first snapshot from which the winning image no longer changes."""
        settled = []
        for m in range(len(self.channels)):
            column = self.indices[:, m]
            e = len(self.epochs) - 1
            while e > 0 and column[e - 1] == column[-1]:
                e -= 1
            settled.append(self.epochs[e])
        return settled

    def similarity_to_final(self) -> torch.Tensor:
        """(E, M) cosine similarity of each snapshot's projection to the final snapshot's."""
        flat = self.projections.flatten(2).double()
        return torch.nn.functional.cosine_similarity(flat, flat[-1:].expand_as(flat), dim=2)


def evolution(snapshots: dict[int, nn.Module], dataset: Dataset, layer: str, channels) -> Evolution:
    """Track maps of ``layer`` across training ``snapshots`` (epoch -> model), as in Fig. 4."""
    if not snapshots:
        raise ValueError("evolution needs at least one snapshot (epoch -> model)")
    channels = [channels] if isinstance(channels, int) else list(channels)
    epochs = sorted(snapshots)
    values, indices, projections = [], [], []
    for epoch in epochs:
        panels = top_projections(snapshots[epoch], dataset, layer, channels, k=1, progress=False)
        values.append(torch.stack([p.values[0] for p in panels]))
        indices.append(torch.stack([p.indices[0] for p in panels]))
        projections.append(torch.stack([p.projections[0] for p in panels]))
    return Evolution(layer, epochs, channels, torch.stack(values), torch.stack(indices), torch.stack(projections))
