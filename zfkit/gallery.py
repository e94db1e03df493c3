"""Fig. 2's panels: for a feature map, its top-k projections next to the image patches behind them.

The top-k scan (:func:`zfkit.topk.topk`) finds, over a dataset, the images that excite a map most;
the deconvnet projects each image's strongest unit of that map to pixels; both the projection
and the image are cut to the unit's receptive field, as in the paper's figure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from .deconv import Deconvnet
from .graph import eval_mode
from .rf import receptive_field
from .topk import TopK, topk, topk_layers

__all__ = ["Panel", "top_projections", "active_maps", "coherence", "grouping", "label_diversity", "classes_per_map",
           "map_measures", "control_contrast", "Evolution", "evolution", "evolutions"]


@dataclass
class Panel:
    """One feature map's top-k: values, image indices, and (k, C, s, s) projections and patches.

    ``projections`` is None for panels made with ``top_projections(..., project=False)`` (patches
    and labels only, e.g. for measurements over every map of a layer). ``policy`` says how the
    projections were made where that is not the paper's deconvnet (:meth:`zfkit.deconv.Deconvnet.caption`),
    so a figure can say it.
    """

    layer: str
    channel: int
    values: torch.Tensor
    indices: torch.Tensor
    projections: torch.Tensor | None
    patches: torch.Tensor
    labels: torch.Tensor
    policy: str = ""


def top_projections(model: nn.Module, dataset: Dataset, layer: str, channels, k: int = 9,
                    scan: TopK | None = None, rule: str = "deconvnet", progress: bool = True,
                    project: bool = True, patch: Callable | None = None) -> list[Panel]:
    """A :class:`Panel` per channel of ``layer``; pass ``scan`` to reuse an earlier top-k pass.

    ``project=False`` skips the deconvnet (the slow part): the panels then hold the image patches
    and labels only, with ``projections`` None. ``patch(image, field, y, x)`` cuts what unit (y, x)
    sees (default: the receptive field, as in Fig. 2); a model whose fields outgrow the image can
    shrink them instead (e.g. :func:`zfkit.imagenet.unit_patch`).
    """
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
    patch = patch if patch is not None else (lambda image, f, y, x: f.patch(image, y, x))
    deconv = Deconvnet(model, rule=rule)
    policy = deconv.caption(layer) if project else ""
    panels = []
    with eval_mode(model):
        for c in channels:
            idx = scan.indices[c, :k]
            cut = lambda batch: torch.stack([patch(im, field, int(y), int(x)) for im, y, x in  # noqa: E731
                                             zip(batch, scan.ys[c, :k], scan.xs[c, :k])])
            proj = cut(deconv.project(images[idx], layer, channels=[c], mode="max")[:, 0]) if project else None
            panels.append(Panel(layer, c, scan.values[c, :k], idx, proj, cut(images[idx]), labels[idx], policy))
    return panels


def active_maps(scan: TopK, k: int = 9) -> list[int]:
    """The channels whose ``k``-th strongest activation in ``scan`` is positive.

    A map that no image excites (a dead unit, common in untrained networks) has no top-k: its
    "strongest" images are ties at zero, broken by image index, and measuring them would measure
    nothing but the tie-break.
    """
    if not 1 <= k <= scan.values.shape[1]:
        raise ValueError(f"k must be between 1 and the scan's {scan.values.shape[1]}, got {k}")
    return (scan.values[:, k - 1] > 0).nonzero().flatten().tolist()


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


def grouping(panels: list[Panel], of: str = "patches") -> np.ndarray:
    """Fig. 2's "grouping", one number per map: how much more alike its top-k are than they are to
    the other maps' top-k.

    For map m, the mean cosine similarity over pairs within its top-k, minus the mean cosine between
    its top-k and those of every other map in ``panels`` (of ``patches`` or ``projections``). The
    mean over maps equals ``within - across`` of :func:`coherence`; one value per map gives the
    measurement its noise (the spread over maps). Computed from per-map sums of unit vectors, so
    memory stays O(maps x pixels) for hundreds of maps.
    """
    if len(panels) < 2:
        raise ValueError("grouping needs panels of at least two maps (to compare across maps)")
    shapes = {tuple(getattr(p, of).shape) for p in panels}
    if len(shapes) != 1 or next(iter(shapes))[0] < 2:
        raise ValueError(f"grouping needs the same k >= 2 and patch size in every panel, got shapes {sorted(shapes)}")
    k = next(iter(shapes))[0]
    sums, squares = [], []
    for p in panels:  # one map at a time: only the per-map sums are kept
        units = torch.nn.functional.normalize(getattr(p, of).flatten(1).double(), dim=1)
        sums.append(units.sum(0))
        squares.append(units.pow(2).sum())  # 1 per non-zero patch: the diagonal of the Gram matrix
    sums, squares = torch.stack(sums), torch.stack(squares)  # (M, D), (M,)
    within = (sums.pow(2).sum(1) - squares) / (k * (k - 1))
    across = (sums @ sums.sum(0) - sums.pow(2).sum(1)) / (k * k * (len(panels) - 1))
    return (within - across).numpy()


def classes_per_map(panels: list[Panel]) -> np.ndarray:
    """The number of distinct class labels among each map's top-k images (one value per map)."""
    if not panels:
        raise ValueError("classes_per_map needs at least one panel")
    return np.array([len(set(p.labels.tolist())) for p in panels], dtype=float)


def map_measures(model: nn.Module, dataset: Dataset, scans: dict[str, TopK], k: int = 9,
                 patch: Callable | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Fig. 2's two numbers for every active map of each scanned layer: layer -> {"grouping", "classes"}.

    ``scans`` maps layer names to their top-k scans (e.g. from :func:`zfkit.topk.topk_layers`);
    maps without ``k`` positive activations are left out (:func:`active_maps`). Each array holds one
    value per map (:func:`grouping` of the patches, :func:`classes_per_map`), so the spread over
    maps gives each mean its noise. Uses the image patches only (``patch`` as in
    :func:`top_projections`): no projections are computed.
    """
    measured = {}
    for layer, scan in scans.items():
        maps = top_projections(model, dataset, layer, active_maps(scan, k), k=k, scan=scan, progress=False,
                               project=False, patch=patch)
        measured[layer] = {"grouping": grouping(maps), "classes": classes_per_map(maps)}
    return measured


def control_contrast(low, high, low_control, high_control) -> tuple[float, float]:
    """How much more ``low`` exceeds ``high`` in a trained network than in its untrained control.

    Each argument holds one value per map (e.g. :func:`classes_per_map` of conv2 and conv5, trained
    and untrained). Returns the difference in differences of the means,
    ``(mean(low) - mean(high)) - (mean(low_control) - mean(high_control))``, and its noise: the four
    standard errors over maps, added in quadrature (the four sets of maps are independent).
    """
    groups = [np.asarray(g, dtype=float) for g in (low, high, low_control, high_control)]
    if any(g.ndim != 1 or len(g) < 2 for g in groups):
        raise ValueError("control_contrast needs at least two values (maps) in each of its four groups")
    means = [g.mean() for g in groups]
    effect = (means[0] - means[1]) - (means[2] - means[3])
    noise = float(np.sqrt(sum(g.var(ddof=1) / len(g) for g in groups)))
    return float(effect), noise


def label_diversity(panels: list[Panel]) -> float:
    """Mean number of distinct class labels among each map's top-k images.

    Upper layers should respond to class-specific content (fewer labels per map), lower layers to
    edges and textures shared by many classes: the paper's "greater invariance" with depth.
    """
    if not panels:
        raise ValueError("label_diversity needs at least one panel")
    return float(classes_per_map(panels).mean())


@dataclass
class Evolution:
    """Fig. 4: for each training snapshot and map, the strongest activation over a dataset, projected.

    ``indices`` (E, M) is the winning image per epoch and map; ``projections`` (E, M, C, s, s);
    ``policy`` as a :class:`Panel`'s.
    """

    layer: str
    epochs: list[int]
    channels: list[int]
    values: torch.Tensor
    indices: torch.Tensor
    projections: torch.Tensor
    policy: str = ""

    def head(self, n: int) -> "Evolution":
        """The same evolution restricted to its first ``n`` maps (e.g. the few a figure shows)."""
        return self._select(list(range(min(n, len(self.channels)))))

    def active(self) -> "Evolution":
        """The maps whose strongest activation in the final snapshot is positive.

        A map that is dead at the end of training has no winning image (ties at zero, broken by
        image index) and an all-zero projection, whose similarity to itself is undefined.
        """
        return self._select((self.values[-1] > 0).nonzero().flatten().tolist())

    def _select(self, maps: list[int]) -> "Evolution":
        return replace(self, channels=[self.channels[m] for m in maps], values=self.values[:, maps],
                       indices=self.indices[:, maps], projections=self.projections[:, maps])

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

    def summary(self) -> dict:
        """The JSON-able numbers a chapter reports: snapshot ``epochs``, ``maps``, each map's ``settled``
        epoch and the ``similarity_to_final`` per snapshot, averaged over the maps."""
        return {"epochs": list(self.epochs), "maps": list(self.channels), "settled": self.settled_epoch(),
                "similarity_to_final": self.similarity_to_final().mean(1).tolist()}


def evolution(snapshots: dict[int, nn.Module], dataset: Dataset, layer: str, channels) -> Evolution:
    """Track maps of ``layer`` across training ``snapshots`` (epoch -> model), as in Fig. 4."""
    return evolutions(snapshots, dataset, {layer: channels})[0]


def evolutions(snapshots: dict[int, nn.Module], dataset: Dataset, channels: dict) -> list[Evolution]:
    """:func:`evolution` of several layers (``channels``: layer name -> its maps), in that order.

    Each snapshot scans the dataset once for all the layers (:func:`zfkit.topk.topk_layers`),
    instead of once per layer.
    """
    if not snapshots:
        raise ValueError("evolution needs at least one snapshot (epoch -> model)")
    if not channels:
        raise ValueError("evolutions needs at least one layer and its maps")
    chosen = {layer: [c] if isinstance(c, int) else list(c) for layer, c in channels.items()}
    epochs = sorted(snapshots)
    found = {layer: ([], [], []) for layer in chosen}
    policies = {}
    for epoch in epochs:
        model = snapshots[epoch]
        scans = topk_layers(model, dataset, list(chosen), k=1, progress=False)
        for layer, maps in chosen.items():
            panels = top_projections(model, dataset, layer, maps, k=1, scan=scans[layer], progress=False)
            values, indices, projections = found[layer]
            values.append(torch.stack([p.values[0] for p in panels]))
            indices.append(torch.stack([p.indices[0] for p in panels]))
            projections.append(torch.stack([p.projections[0] for p in panels]))
            policies[layer] = panels[0].policy  # one architecture: every snapshot's is the same
    return [Evolution(layer, epochs, chosen[layer], *(torch.stack(x) for x in found[layer]), policies[layer])
            for layer in chosen]
