"""Feature invariance (§4.4, Fig. 5): how far features and output move as an image is transformed.

Each image is translated vertically, scaled or rotated by a range of amounts; per chosen layer we
record the Euclidean distance between the transformed and the untransformed feature vector (raw
and relative to the untransformed vector's norm), and the probability of the true label. The
transforms are torchvision's (``transforms.v2.functional``) on tensors in model-input space,
where the uncovered border is filled with 0.0 — the dataset mean after mean subtraction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torchvision.transforms.v2.functional as TF
from torch import nn
from torchvision.transforms import InterpolationMode

from .checks import check_images
from .layers import resolve

__all__ = ["KINDS", "InvarianceResult", "invariance", "transform", "capture", "magnitude", "Growth", "growth",
           "rotational_symmetry"]

#: The transformations, with the meaning of their amounts.
KINDS = {"translate": "vertical shift in pixels (positive = down)", "scale": "zoom factor (1 = unchanged)",
         "rotate": "angle in degrees (positive = counter-clockwise)"}


@dataclass
class InvarianceResult:
    """One sweep: every (N, A) tensor has a row per image and a column per amount."""

    kind: str
    amounts: torch.Tensor  # (A,)
    distance: dict[str, torch.Tensor]  # layer -> ||f(T x) - f(x)||
    normalized: dict[str, torch.Tensor]  # layer -> ||f(T x) - f(x)|| / ||f(x)|| (NaN where f(x) = 0)
    prob: torch.Tensor  # p(true label | T x)
    labels: torch.Tensor  # (N,)


def transform(images: torch.Tensor, kind: str, amount: float, fill: float = 0.0) -> torch.Tensor:
    """``images`` (..., C, H, W) translated, scaled or rotated by ``amount`` (see :data:`KINDS`).

    Scaling resizes (antialiased) and centre-crops or pads back to the original size, so the
    object grows or shrinks about the image centre, as in Fig. 5.
    """
    _check_kind(kind)
    h, w = images.shape[-2:]
    _check_amount(kind, amount, h)
    bilinear = InterpolationMode.BILINEAR
    if kind == "translate":
        return TF.affine(images, angle=0.0, translate=[0.0, float(amount)], scale=1.0, shear=[0.0, 0.0],
                         interpolation=bilinear, fill=fill)
    if kind == "rotate":
        return TF.rotate(images, float(amount), interpolation=bilinear, fill=fill)
    size = [max(1, round(h * amount)), max(1, round(w * amount))]
    out = TF.resize(images, size, interpolation=bilinear, antialias=True)
    pad_h, pad_w = max(0, h - size[0]), max(0, w - size[1])
    if pad_h or pad_w:
        out = TF.pad(out, [pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2], fill=fill)
    return TF.center_crop(out, [h, w])


def capture(model: nn.Module, images: torch.Tensor, layers: Sequence[str | nn.Module]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Flattened activations (B, D) of each layer, keyed by layer name, and the logits: one forward pass."""
    resolved = [resolve(model, layer) for layer in layers]
    store: dict[str, torch.Tensor] = {}

    def keep(name):
        return lambda module, inputs, output: store.__setitem__(name, output.detach().flatten(1).clone())

    hooks = [r.module.register_forward_hook(keep(r.name)) for r in resolved]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(images)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return {r.name: store[r.name] for r in resolved}, logits


def invariance(model: nn.Module, images: torch.Tensor, labels, kind: str, amounts: Sequence[float],
               layers: Sequence[str | nn.Module] = ("conv1", "fc7"), fill: float = 0.0,
               batch_size: int = 64) -> InvarianceResult:
    """Sweep ``images`` (N, C, H, W) with true ``labels`` through ``kind`` (translate / scale / rotate)
    at each of ``amounts``; measure feature distances at ``layers`` and p(true label).

    Layers are names ("conv1" is the rectified first layer, "fc7") or modules. ``batch_size``
    bounds how many images go through the model together.
    """
    _check_kind(kind)
    check_images(images, model)
    labels = torch.as_tensor(labels).reshape(-1)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or len(labels) != len(images):
        raise ValueError(f"labels must be {len(images)} integer class indices (one per image), got {labels.tolist()}")
    amounts = torch.as_tensor(amounts, dtype=torch.float64).reshape(-1)
    if len(amounts) == 0:
        raise ValueError("amounts is empty; give at least one transformation amount")
    for a in amounts.tolist():
        _check_amount(kind, a, images.shape[-2])
    if not isinstance(fill, (int, float)) or not math.isfinite(fill):
        raise ValueError(f"fill must be a finite number (0.0 is the dataset mean), got {fill!r}")
    layers = [layers] if isinstance(layers, (str, nn.Module)) else list(layers)
    if not layers:
        raise ValueError("layers is empty; name at least one layer, e.g. ('conv1', 'fc7')")
    names = [resolve(model, layer).name for layer in layers]

    n, k = len(images), len(amounts)
    per_chunk = max(1, batch_size // (k + 1))
    dist: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    norm: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    prob = []
    for start in range(0, n, per_chunk):
        x, y = images[start:start + per_chunk], labels[start:start + per_chunk]
        # originals first, then each amount, in one forward pass: amount 0 reproduces them exactly
        batch = torch.cat([x] + [transform(x, kind, a, fill) for a in amounts.tolist()])
        feats, logits = capture(model, batch, layers)
        if not 0 <= int(labels.min()) <= int(labels.max()) < logits.shape[1]:
            raise ValueError(f"labels must lie in 0 … {logits.shape[1] - 1} (the model's classes), "
                             f"got values from {int(labels.min())} to {int(labels.max())}")
        for name in names:
            f = feats[name].view(k + 1, len(x), -1)
            dist[name].append((f[1:] - f[:1]).norm(dim=-1).T)  # (images, amounts)
            norm[name].append(f[0].norm(dim=-1)[:, None])
        p = logits.softmax(-1).view(k + 1, len(x), -1)[1:]  # (amounts, images, classes)
        prob.append(p.gather(2, y[None, :, None].expand(k, -1, 1))[..., 0].T)
    distance = {name: torch.cat(dist[name]) for name in names}
    normalized = {name: distance[name] / torch.cat(norm[name]) for name in names}
    return InvarianceResult(kind, amounts.float(), distance, normalized, torch.cat(prob), labels)


def _check_kind(kind) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of: " + "; ".join(f"{k} ({v})" for k, v in KINDS.items()))


def _check_amount(kind: str, amount, height: int) -> None:
    if not isinstance(amount, (int, float)) or isinstance(amount, bool) or not math.isfinite(amount):
        raise ValueError(f"{kind} amounts must be finite numbers, got {amount!r}")
    if kind == "translate" and abs(amount) >= height:
        raise ValueError(f"a vertical shift of {amount} pixels moves a {height}-pixel-high image out of view; "
                         f"use |amount| < {height}")
    if kind == "scale" and amount <= 0:
        raise ValueError(f"scale factor must be > 0 (1 leaves the image unchanged), got {amount}")
    if kind == "scale" and round(height * amount) < 1:
        raise ValueError(f"scale factor {amount} shrinks a {height}-pixel image to nothing; use a factor >= {0.5 / height:.3g}")
    if kind == "rotate" and abs(amount) > 360:
        raise ValueError(f"rotation {amount} degrees is out of range; use angles in [-360, 360]")


# ---------------------------------------------------------------- reading a sweep (§4.4's claims)

def magnitude(kind: str, amounts) -> torch.Tensor:
    """How far each amount is from the identity: the absolute shift in pixels (translate), the
    absolute log of the factor (scale), or the angle to the nearest full turn in degrees (rotate:
    350 degrees is 10 away)."""
    _check_kind(kind)
    a = torch.as_tensor(amounts, dtype=torch.float64).reshape(-1)
    if kind == "translate":
        return a.abs()
    if kind == "scale":
        return a.log().abs()
    turn = a.remainder(360)
    return torch.minimum(turn, 360 - turn)


@dataclass(frozen=True)
class Growth:
    """How one layer's normalised distance grows with the transformation, averaged over the images."""

    magnitudes: torch.Tensor  # the distinct non-zero magnitudes, ascending
    distance: torch.Tensor  # mean normalised distance at each (amounts of equal magnitude averaged)
    steepness: float  # (d_first / d_last) / (m_first / m_last): 1 on a line through 0, > 1 if it rises early and flattens
    linearity: float  # R² of the least-squares line through the origin (1 = quasi-linear)


def growth(result: InvarianceResult, layer: str) -> Growth:
    """The shape of ``layer``'s distance curve: the paper's "dramatic effect" of small
    transformations on layer 1 against the quasi-linear growth it reports for layer 7."""
    if layer not in result.normalized:
        raise ValueError(f"layer {layer!r} was not measured; the sweep has {', '.join(result.normalized)}")
    m = magnitude(result.kind, result.amounts).round(decimals=4)  # factors 1.1 and 1 / 1.1 share a magnitude
    d = result.normalized[layer].double().nanmean(0)
    sizes = m[m > 0].unique()
    if len(sizes) < 2:
        raise ValueError("growth needs at least two non-zero transformation magnitudes in the sweep")
    mean = torch.stack([d[m == s].mean() for s in sizes])
    slope = (sizes * mean).sum() / (sizes * sizes).sum()
    r2 = 1 - ((mean - slope * sizes) ** 2).sum() / ((mean - mean.mean()) ** 2).sum()
    steepness = (mean[0] / mean[-1]) / (sizes[0] / sizes[-1])
    return Growth(sizes.float(), mean.float(), float(steepness), float(r2))


def rotational_symmetry(images: torch.Tensor, angles: Sequence[float] = tuple(range(30, 360, 30))) -> torch.Tensor:
    """Per image (N, C, H, W), the mean correlation between its pixels and their rotations by ``angles``.

    Use display pixels (background 0, which rotation also fills in): 1 for a disc, low for a bar.
    This is the "rotational symmetry" the paper credits for an output that survives rotation.
    Correlation, not plain cosine similarity: with all pixels non-negative, any large centred
    blob would overlap its rotations and look symmetric.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError("images must be a batch (N, C, H, W) of display pixels")
    centred = lambda x: x.flatten(1) - x.flatten(1).mean(1, keepdim=True)  # noqa: E731
    sims = [torch.cosine_similarity(centred(transform(images, "rotate", float(a))), centred(images), dim=1) for a in angles]
    return torch.stack(sims).mean(0)
