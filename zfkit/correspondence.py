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

import torch
from torch import nn

from .invariance import capture
from .layers import resolve

__all__ = ["Delta", "CorrespondenceResult", "correspondence", "sign_disagreement", "random_masks"]


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
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not torch.is_floating_point(images):
        raise ValueError("images must be a floating-point batch (N, C, H, W)")
    if len(images) < 2:
        raise ValueError(f"correspondence compares images in pairs: give at least 2 images, got {len(images)}")
    layers = [layers] if isinstance(layers, (str, nn.Module)) else list(layers)
    names = [resolve(model, layer).name for layer in layers]
    masks = _check_masks(masks, images, "masks")
    delta = _delta(model, images, masks[None], layers, fill)
    baseline = None
    if baseline_masks is not None:
        draws = baseline_masks if isinstance(baseline_masks, torch.Tensor) and baseline_masks.dim() == 4 else [baseline_masks]
        baseline = _delta(model, images, torch.stack([_check_masks(m, images, "baseline_masks") for m in draws]), layers, fill)
    return CorrespondenceResult(names, delta, baseline)


def _delta(model, images, draws: torch.Tensor, layers, fill: float) -> dict[str, Delta]:
    """Δ per layer for masks ``draws`` (R, N, H, W), pairs pooled over the R draws."""
    pairs: dict[str, list[torch.Tensor]] = {}
    for masks in draws:
        masked = torch.where(masks[:, None], torch.as_tensor(fill, dtype=images.dtype), images)
        feats, _ = capture(model, torch.cat([images, masked]), layers)
        for name, f in feats.items():
            pairs.setdefault(name, []).append(sign_disagreement(f[:len(images)] - f[len(images):]))
    out = {}
    for name, p in pairs.items():
        p = torch.cat(p)
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
