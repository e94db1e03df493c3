"""Correspondence analysis (§4.3, Fig. 8, Table 1): does masking the same part change features alike?

For each image i the same object part (say, every left eye) is masked, and at layer l the feature
difference is ε_i = x_i - x̃_i. If the network implicitly puts parts in correspondence, the *signs*
of ε_i agree across images. The paper scores this as Δ_l = Σ_{i≠j} H(sign ε_i, sign ε_j), H the
Hamming distance, compared with masking random parts of the object.

Scale. Table 1 reports 0.067 ± 0.007 (layer 5) and ~0.07 (layer 7); the arXiv version heads its
columns "Mean Feature Sign Change". Raw Hamming counts summed over 20 ordered pairs would be in the
thousands for 9216- or 4096-dimensional features, so the reported number is the Hamming distance
divided by the feature dimension, averaged over pairs: the mean fraction of features whose sign
differs between two images' ε. We report exactly that, with the sample standard deviation over
the pairs (i < j; ordered pairs give the same mean). Features rectified to zero with and without
the mask have sign 0 in both images and count as agreeing, which is why the fractions are small.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .invariance import capture
from .checks import check_images
from .graph import model_graph
from .verdicts import bootstrap_noise, share_noise, standard_error

__all__ = ["Delta", "CorrespondenceResult", "correspondence", "sign_disagreement", "random_masks", "PARTS",
           "silhouettes", "part_masks", "PartTable", "part_table", "PAPER_TABLE1", "PartSummary", "part_summary",
           "relative_gaps", "below_share", "gap_difference"]


@dataclass
class Delta:
    """Δ_l on Table 1's scale: per image pair the fraction of feature signs that differ."""

    pairs: torch.Tensor  # (P,) one value per pair i < j (pooled over draws for the baseline)
    mean: float
    std: float  # sample standard deviation over pairs

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.std:.3f}"


@dataclass
class CorrespondenceResult:
    """Δ per layer for the given part masks and, when baseline masks were given, for those."""

    layers: list[str]
    delta: dict[str, Delta]
    baseline: dict[str, Delta] | None


def sign_disagreement(eps: torch.Tensor) -> torch.Tensor:
    """For difference vectors ``eps`` (N, D): Hamming distance between sign vectors / D, per pair i < j."""
    signs = eps.sign()
    i, j = torch.triu_indices(len(signs), len(signs), offset=1)
    return (signs[i] != signs[j]).double().mean(1)


def correspondence(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, layers: Sequence[str | nn.Module] = ("conv5", "fc7"),
                   fill: float = 0.0, baseline_masks: torch.Tensor | None = None) -> CorrespondenceResult:
    """Δ_l for ``images`` (N, C, H, W) with part ``masks`` (N, H, W; True = masked, set to ``fill``).

    ``fill`` is in model-input space (0.0 = the dataset mean). ``baseline_masks`` (N, H, W) or
    (R, N, H, W) — e.g. from :func:`random_masks` — gives the random-part row of Table 1,
    pooling the pairs of all R draws.
    """
    check_images(images, model)
    if len(images) < 2:
        raise ValueError(f"correspondence compares images in pairs: give at least 2 images, got {len(images)}")
    layers = [layers] if isinstance(layers, (str, nn.Module)) else list(layers)
    names = [model_graph(model).layer(layer).name for layer in layers]
    masks = _check_masks(masks, images, "masks")
    delta = _delta(model, images, masks[None], layers, fill)
    baseline = None
    if baseline_masks is not None:
        draws = baseline_masks if isinstance(baseline_masks, torch.Tensor) and baseline_masks.dim() == 4 else [baseline_masks]
        baseline = _delta(model, images, torch.stack([_check_masks(m, images, "baseline_masks") for m in draws]), layers, fill)
    return CorrespondenceResult(names, delta, baseline)


#: Relative size below which a feature difference is rounding, not a change (float32 eps is 1.2e-7).
ROUNDING = 1e-6


def _delta(model, images, draws: torch.Tensor, layers, fill: float) -> dict[str, Delta]:
    """Δ per layer for masks ``draws`` (R, N, H, W), pairs pooled over the R draws.

    One forward pass holds the originals and every masked copy, in fewer, larger batches. The
    features a mask cannot reach come out equal on both sides only up to rounding (rows of one
    batch may meet different kernels), so an ε within ``ROUNDING`` of the layer's largest feature
    counts as 0: its sign would be the kernel's, not the image's, and could flip on another CPU.
    """
    n = len(images)
    masked = torch.where(draws[:, :, None], torch.as_tensor(fill, dtype=images.dtype), images)  # (R, N, C, H, W)
    feats, _ = capture(model, torch.cat([images, masked.flatten(0, 1)]), layers)
    out = {}
    for name, f in feats.items():
        floor = ROUNDING * float(f.abs().max())
        eps = [f[:n] - f[n * (r + 1):n * (r + 2)] for r in range(len(draws))]
        p = torch.cat([sign_disagreement(torch.where(e.abs() <= floor, 0.0, e)) for e in eps])
        out[name] = Delta(p, float(p.mean()), float(p.std()) if len(p) > 1 else 0.0)
    return out


def _check_masks(masks, images: torch.Tensor, what: str) -> torch.Tensor:
    n, _, h, w = images.shape
    if not isinstance(masks, torch.Tensor) or tuple(masks.shape) != (n, h, w):
        shape = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise ValueError(f"{what} must be a tensor of shape (N, H, W) = {(n, h, w)} matching the images, got {shape}")
    masks = masks != 0
    empty = [i for i in range(n) if not masks[i].any()]
    if empty:
        raise ValueError(f"{what} of image(s) {empty} are empty: each image needs a masked part")
    return masks


def random_masks(masks: torch.Tensor, object_masks: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The paper's random-part baseline: each mask moved to a random place on its object.

    Rule: the mask keeps its shape; the centre of its bounding box lands on an object pixel
    drawn uniformly among those where the moved mask still lies wholly inside the image.
    ``masks`` and ``object_masks`` are (N, H, W); returns (N, H, W) bool, reproducible by ``seed``.
    """
    if not isinstance(masks, torch.Tensor) or masks.dim() != 3:
        raise ValueError("masks must be a tensor (N, H, W)")
    if not isinstance(object_masks, torch.Tensor) or object_masks.shape != masks.shape:
        shape = tuple(object_masks.shape) if isinstance(object_masks, torch.Tensor) else type(object_masks).__name__
        raise ValueError(f"object_masks must have the masks' shape {tuple(masks.shape)}, got {shape}")
    masks, object_masks = masks != 0, object_masks != 0
    generator = torch.Generator().manual_seed(seed)
    out = torch.zeros_like(masks)
    h, w = masks.shape[-2:]
    for i, (mask, obj) in enumerate(zip(masks, object_masks)):
        rows, cols = mask.nonzero(as_tuple=True)
        if len(rows) == 0:
            raise ValueError(f"masks[{i}] is empty: each image needs a masked part")
        top, bottom, left, right = int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())
        cy, cx = (top + bottom) // 2, (left + right) // 2
        allowed = torch.zeros_like(obj)  # centres that keep the whole mask inside the image
        allowed[cy - top:h - (bottom - cy), cx - left:w - (right - cx)] = True
        centres = (obj & allowed).nonzero()
        if len(centres) == 0:
            raise ValueError(f"no place on object {i} fits its mask: object_masks[{i}] is empty or lies where the "
                             f"{bottom - top + 1}x{right - left + 1} mask would leave the image")
        y, x = centres[torch.randint(len(centres), (1,), generator=generator)][0].tolist()
        out[i] = mask.roll((y - cy, x - cx), dims=(0, 1))
    return out


# ---------------------------------------------------------------- parts located automatically (Fig. 8)

#: Display-pixel level above which a pixel belongs to the object (Fashion-MNIST's background is exactly 0).
SILHOUETTE_THRESHOLD = 0.05

#: Where each class's parts lie in the object's bounding box, as (row, column) fractions where 0 is
#: the top or left edge and 1 the bottom or right edge. Left and right are the image's. Shoes are
#: written with the heel on the left and mirrored when an image's shaft or ankle opening is on the right.
PARTS: dict[str, dict[str, tuple[float, float]]] = {
    "Ankle boot": {"heel": (0.9, 0.05), "toe": (0.9, 0.95), "top of shaft": (0.05, 0.2)},
    "Sneaker": {"heel": (0.75, 0.02), "toe": (0.85, 0.98), "ankle opening": (0.05, 0.25)},
    "T-shirt/top": {"left sleeve": (0.2, 0.03), "right sleeve": (0.2, 0.97), "collar": (0.0, 0.5)},
    "Pullover": {"left cuff": (0.95, 0.03), "right cuff": (0.95, 0.97), "collar": (0.0, 0.5)},
    "Shirt": {"left cuff": (0.95, 0.03), "right cuff": (0.95, 0.97), "collar": (0.0, 0.5)},
    "Coat": {"left cuff": (0.95, 0.03), "right cuff": (0.95, 0.97), "collar": (0.0, 0.5)},
    "Trouser": {"waistband": (0.0, 0.5), "left hem": (1.0, 0.1), "right hem": (1.0, 0.9)},
}
_SHOES = ("Ankle boot", "Sneaker")


def silhouettes(images: torch.Tensor, threshold: float = SILHOUETTE_THRESHOLD) -> torch.Tensor:
    """Object pixels (N, H, W) of display images (N, C, H, W) in [0, 1] (``dataset.display(x)``)."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError("images must be display images (N, C, H, W) in [0, 1]; use dataset.display(x)")
    return images.mean(1) > threshold


def part_masks(images: torch.Tensor, class_name: str, size: int = 6,
               threshold: float = SILHOUETTE_THRESHOLD) -> dict[str, torch.Tensor]:
    """Square masks (N, H, W) of side ``size`` over each part of :data:`PARTS` [class_name].

    The rule, per display image (N, C, H, W) in [0, 1]: threshold it into a silhouette, take the
    silhouette's bounding box, put each part at its fixed fraction of the box (mirrored for shoes
    whose top third leans right: the shaft marks the heel's side), move it to the nearest object
    pixel (a collar notch or a gap between trouser legs is background), and centre the square
    there, shifted inside the image if it would cross the border.
    """
    if class_name not in PARTS:
        raise ValueError(f"no part layout for class {class_name!r}; known classes: {', '.join(PARTS)}")
    objects = silhouettes(images, threshold)
    h, w = objects.shape[-2:]
    if not isinstance(size, int) or not 1 <= size <= min(h, w):
        raise ValueError(f"size must be an int in 1 … {min(h, w)} (the mask's side in pixels), got {size!r}")
    masks = {part: torch.zeros_like(objects) for part in PARTS[class_name]}
    for i, obj in enumerate(objects):
        rows, cols = obj.nonzero(as_tuple=True)
        if len(rows) == 0:
            raise ValueError(f"image {i} has no pixel above {threshold}: no object to find parts on")
        top, bottom, left, right = int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())
        upper = cols[rows <= top + (bottom - top) / 3].float()
        mirrored = class_name in _SHOES and float(upper.mean()) > (left + right) / 2
        for part, (fy, fx) in PARTS[class_name].items():
            y, x = top + fy * (bottom - top), left + (1 - fx if mirrored else fx) * (right - left)
            nearest = int(((rows - y) ** 2 + (cols - x) ** 2).argmin())
            y0 = min(max(int(rows[nearest]) - size // 2, 0), h - size)
            x0 = min(max(int(cols[nearest]) - size // 2, 0), w - size)
            masks[part][i, y0:y0 + size, x0:x0 + size] = True
    return masks


# ---------------------------------------------------------------- Table 1 for one class

#: Table 1 of the ECCV paper (5 dog images), the mean and std of Δ at layers 5 and 7.
PAPER_TABLE1 = {
    "Right Eye": ((0.067, 0.007), (0.069, 0.015)),
    "Left Eye": ((0.069, 0.007), (0.068, 0.013)),
    "Nose": ((0.079, 0.017), (0.069, 0.011)),
    "Random": ((0.107, 0.017), (0.073, 0.014)),
}


@dataclass
class PartTable:
    """Table 1 for one class: Δ per part and for random parts of the object, per layer.

    Shows as Markdown with the paper's rows alongside (its three face parts beside our three
    parts in order, random beside random; its layers 5 and 7 beside our first two layers).
    """

    class_name: str
    layers: list[str]
    parts: dict[str, dict[str, Delta]]  # part -> layer -> Δ
    random: dict[str, Delta]  # layer -> Δ over all random draws

    def gap(self, layer: str) -> float:
        """Random Δ minus the parts' mean Δ at ``layer``: positive when parts correspond more tightly."""
        return self.random[layer].mean - sum(d[layer].mean for d in self.parts.values()) / len(self.parts)

    def _repr_markdown_(self) -> str:
        faces = list(PAPER_TABLE1.items())[:-1]
        beside = [faces[i] if i < len(faces) else ("", None) for i in range(len(self.parts))]
        beside.append(("Random", PAPER_TABLE1["Random"]))
        lines = [f"| {self.class_name}: masked part | " + " | ".join(self.layers) + " | paper: location | layer 5 | layer 7 |",
                 "|" + "---|" * (len(self.layers) + 4)]
        for (part, deltas), (location, numbers) in zip([*self.parts.items(), ("random", self.random)], beside):
            cited = " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in numbers) if numbers else " | "
            lines.append(f"| {part} | " + " | ".join(str(deltas[layer]) for layer in self.layers) + f" | {location} | {cited} |")
        return "\n".join(lines)


def part_table(model: nn.Module, images: torch.Tensor, display: torch.Tensor, class_name: str,
               layers: Sequence[str | nn.Module] = ("conv5", "fc7"), size: int = 6, draws: int = 10,
               seed: int = 0, fill: float = 0.0) -> PartTable:
    """Table 1 for ``images`` (N, C, H, W, model input) of one class, ``display`` their [0, 1] pixels.

    Parts come from :func:`part_masks`; the random row pools ``draws`` placements of the first
    part's masks by :func:`random_masks` (seeds ``seed`` … ``seed + draws - 1``).
    """
    if not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be a positive int (random placements per image), got {draws!r}")
    masks = part_masks(display, class_name, size)
    results = {part: correspondence(model, images, m, layers, fill) for part, m in masks.items()}
    first, objects = next(iter(masks.values())), silhouettes(display)
    baseline = torch.stack([random_masks(first, objects, seed + r) for r in range(draws)])
    return PartTable(class_name, next(iter(results.values())).layers, {part: r.delta for part, r in results.items()},
                     _delta(model, images, baseline, layers, fill))


@dataclass(frozen=True)
class PartSummary:
    """Table 1's comparison pooled over several tables (classes, image sets) at one layer."""

    below: int  # (table, part) cases whose Δ is below that table's random Δ
    cases: int
    relative_gap: float  # mean over tables of (random Δ - mean part Δ) / random Δ; the paper's is 0.33 (layer 5)

    @property
    def share(self) -> float:
        return self.below / self.cases


def part_summary(tables: Sequence[PartTable], layer: str) -> PartSummary:
    """How often parts beat random placements at ``layer``, and by how much relative to the random score
    (relative, so layers with different numbers and sparsity of features compare on one scale)."""
    if not tables:
        raise ValueError("part_summary needs at least one PartTable")
    if any(layer not in t.random for t in tables):
        raise ValueError(f"layer {layer!r} is not in every table; the tables have {', '.join(tables[0].layers)}")
    below = sum(d[layer].mean < t.random[layer].mean for t in tables for d in t.parts.values())
    cases = sum(len(t.parts) for t in tables)
    return PartSummary(below, cases, sum(t.gap(layer) / t.random[layer].mean for t in tables) / len(tables))


# ---------------------------------------------------------------- the verdicts' measurements and their noise

def relative_gaps(tables: Sequence[PartTable], layer: str) -> np.ndarray:
    """Per table (class, image set): (random Δ - mean part Δ) / random Δ at ``layer``.

    Positive when the named parts change the features more consistently than random placements;
    relative, so layers of different width and sparsity compare on one scale (Table 1: 0.33 at
    layer 5, 0.06 at layer 7).
    """
    if not tables:
        raise ValueError("relative_gaps needs at least one PartTable")
    if any(layer not in t.random for t in tables):
        raise ValueError(f"layer {layer!r} is not in every table; the tables have {', '.join(tables[0].layers)}")
    return np.array([t.gap(layer) / t.random[layer].mean for t in tables])


def below_share(tables: Sequence[PartTable], layer: str) -> tuple[float, float]:
    """The share of (table, part) cases whose Δ lies below the table's random Δ, and its noise.

    The noise is the larger of two: the binomial standard deviation of a share of that many cases
    at 0.5 (a coin: parts no better than random placements), and a bootstrap over the tables, which
    counts that the parts of one table share its images and its random row. Judge the share against
    0.5 with :func:`zfkit.verdicts.exceeds`.
    """
    relative_gaps(tables, layer)  # checks the tables and the layer
    below = np.array([[d[layer].mean < t.random[layer].mean for d in t.parts.values()] for t in tables], dtype=float)
    share = float(below.mean())
    noise = share_noise(below.size)
    if len(tables) >= 2:
        noise = max(noise, bootstrap_noise(below, lambda x: float(x.mean())))
    return share, noise


def gap_difference(tables: Sequence[PartTable], layer: str, others: Sequence[PartTable] | None = None,
                   other_layer: str | None = None) -> tuple[float, float]:
    """Mean over paired tables of relative gap minus relative gap, and its standard error.

    Compares ``tables`` at ``layer`` with ``others`` (default: the same tables) at ``other_layer``
    (default: the same layer): a trained network against an untrained one on the same images and
    masks, or layer 7 against layer 5 of one network. The pairs are the tables' order (class, set),
    so image-set noise common to both sides cancels; the standard error is over the pairs.
    """
    others = tables if others is None else others
    if len(others) != len(tables):
        raise ValueError(f"the two sides must pair table for table, got {len(tables)} and {len(others)} tables")
    if any(a.class_name != b.class_name for a, b in zip(tables, others)):
        raise ValueError("the tables do not pair up: their classes differ in order")
    diff = relative_gaps(tables, layer) - relative_gaps(others, other_layer or layer)
    if len(diff) < 2:
        raise ValueError("gap_difference needs at least 2 pairs of tables to measure noise; add classes or image sets")
    return float(diff.mean()), standard_error(diff)
