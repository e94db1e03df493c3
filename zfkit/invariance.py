"""Feature invariance (§4.4, Fig. 5): how far features and output move as an image is transformed.

Each image is translated vertically, scaled or rotated by a range of amounts; per chosen layer we
record the Euclidean distance between the transformed and the untransformed feature vector (raw
and relative to the untransformed vector's norm), and the probability of the true label. The
transforms are torchvision's (``transforms.v2.functional``) on tensors in model-input space,
where the uncovered border is filled with 0.0 — the dataset mean after mean subtraction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from .checks import check_images
from .graph import eval_mode, model_graph
from .layers import output_op
from .verdicts import bootstrap_noise, standard_error

__all__ = ["KINDS", "InvarianceResult", "invariance", "transform", "capture", "magnitude", "Growth", "growth",
           "rotational_symmetry", "symmetric_reference", "ClassSymmetry", "most_symmetric_class", "select",
           "first_step_ratio", "retained", "image_bootstrap", "claim_measurements"]

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
    # imported here: torchvision's transforms pull in torchvision.models and torch._dynamo, which
    # would double `import zfkit`'s time (zfkit re-exports invariance)
    import torchvision.transforms.v2.functional as TF
    from torchvision.transforms import InterpolationMode

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
    graph = model_graph(model)
    chosen = [graph.layer(layer) for layer in layers]
    returned = output_op(graph)
    with eval_mode(model):
        with torch.no_grad():
            values = graph.run(images, [c.op for c in chosen] + [returned], keep=False)
    return {c.name: values[c.op.node].flatten(1) for c in chosen}, values[returned.node]


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
    names = [model_graph(model).layer(layer).name for layer in layers]

    n, k = len(images), len(amounts)
    per_chunk = max(1, batch_size // (k + 1))
    dist: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    norm: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    prob = []
    for start in range(0, n, per_chunk):
        x, y = images[start:start + per_chunk], labels[start:start + per_chunk]
        # originals first, then each amount, in one forward pass; amount 0 reproduces them up to rounding
        # (rows of one batch may meet different kernels), never a result to compare with ==
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


def symmetric_reference(size: int) -> float:
    """The :func:`rotational_symmetry` score of a centred square of half the image's ``size``: the
    least a shape that a quarter turn leaves unchanged (4-fold symmetric, a box seen from the front)
    scores on this grid, bilinear blur included.

    A score to call an object "rotationally symmetric" by: a disc scores about 0.99, this square
    about 0.87 on 32 pixels, while a shape symmetric only under a half turn (a 2:1 box, about 0.6)
    scores like any large centred blob, so half-turn symmetry cannot be told apart by the score.
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 4:
        raise ValueError(f"size must be the image side in pixels, an int >= 4, got {size!r}")
    inside = (torch.arange(size) - (size - 1) / 2).abs() <= size / 4
    square = (inside[:, None] & inside[None, :]).float()
    return float(rotational_symmetry(square[None, None])[0])


@dataclass(frozen=True)
class ClassSymmetry:
    """The class whose images score highest on :func:`rotational_symmetry`, on average."""

    name: str
    score: float  # mean symmetry of its images
    noise: float  # standard error of that mean over its images
    images: int


def most_symmetric_class(scores: torch.Tensor, labels: torch.Tensor, classes: Sequence[str]) -> ClassSymmetry:
    """The class with the highest mean symmetry ``scores`` (one per image, with its ``labels``), and
    the standard error of that mean: whether the data holds the symmetric objects §4.4 exempts."""
    scores, labels = torch.as_tensor(scores, dtype=torch.float64).reshape(-1), torch.as_tensor(labels).reshape(-1)
    if len(scores) != len(labels):
        raise ValueError(f"need one symmetry score per label, got {len(scores)} scores and {len(labels)} labels")
    present = [int(c) for c in labels.unique() if int((labels == c).sum()) >= 2]
    if not present or max(present) >= len(classes):
        raise ValueError(f"need a class with at least 2 images and a name for every label ({len(classes)} classes "
                         f"given); sample more images per class")
    means = {c: float(scores[labels == c].mean()) for c in present}
    best = max(present, key=means.get)
    rows = scores[labels == best]
    return ClassSymmetry(classes[best], means[best], standard_error(rows.tolist()), len(rows))


# ---------------------------------------------------------------- the verdicts' measurements and their noise

def select(result: InvarianceResult, rows) -> InvarianceResult:
    """The sweep restricted to the images ``rows`` (indices; repeats allowed, as in a bootstrap resample)."""
    rows = torch.as_tensor(rows, dtype=torch.long).reshape(-1)
    if len(rows) == 0 or int(rows.min()) < 0 or int(rows.max()) >= len(result.labels):
        raise ValueError(f"rows must be indices of the sweep's {len(result.labels)} images, got {rows.tolist()}")
    return replace(result, distance={k: v[rows] for k, v in result.distance.items()},
                   normalized={k: v[rows] for k, v in result.normalized.items()}, prob=result.prob[rows],
                   labels=result.labels[rows])


def first_step_ratio(result: InvarianceResult, low: str = "conv1", high: str = "fc7") -> float:
    """How far ``high`` moves after the smallest transformation, as a fraction of how far ``low`` moves.

    Both are :func:`growth`'s first step (mean relative distance at the smallest non-zero
    magnitude), so the ratio is below 1 when the higher layer is the less affected one: §4.4's
    "dramatic effect in the first layer, a lesser impact at the top feature layer".
    """
    return float(growth(result, high).distance[0] / growth(result, low).distance[0])


def retained(result: InvarianceResult, reference: InvarianceResult | None = None) -> float:
    """Mean p(true label) over the transformed images (every amount away from the identity), as a
    fraction of the mean over the untransformed images.

    The untransformed probabilities are the sweep's own identity column, or ``reference``'s (a
    sweep of the same images that has one, e.g. rotation by 0 degrees) when the sweep has none.
    1 means the output does not notice the transformation ("stable"), 0 that it loses the class.
    """
    m = magnitude(result.kind, result.amounts)
    moved, identity = m > 1e-6, m <= 1e-6  # a tolerance, not an exact zero: amounts are floats
    if not bool(moved.any()):
        raise ValueError("the sweep has no amount away from the identity; add transformed amounts")
    if bool(identity.any()):
        upright = result.prob[:, identity].double().mean()
    elif reference is not None:
        upright = reference.prob[:, magnitude(reference.kind, reference.amounts) <= 1e-6].double().mean()
    else:
        raise ValueError("the sweep has no identity amount (translate 0, scale 1, rotate 0); include it or pass reference=")
    if not float(upright) > 0:
        raise ValueError("p(true label) of the untransformed images is 0; the share it keeps is undefined")
    return float(result.prob[:, moved].double().mean() / upright)


def image_bootstrap(statistic: Callable[..., float], *sweeps: InvarianceResult, draws: int = 500, seed: int = 0) -> float:
    """The noise of ``statistic(*sweeps)`` over the images: its standard deviation when the images
    are resampled with replacement (the same resample in every sweep, so sweeps of the same images,
    e.g. a trained and an untrained network, stay paired).

    The sweeps measure a sample of test images; another sample would give other curves. This is the
    noise a verdict on a sweep must clear (see :mod:`zfkit.verdicts`).
    """
    if not sweeps:
        raise ValueError("image_bootstrap needs at least one sweep")
    n = len(sweeps[0].labels)
    if any(len(s.labels) != n or not torch.equal(s.labels, sweeps[0].labels) for s in sweeps):
        raise ValueError("the sweeps must cover the same images (same labels in the same order) to be resampled together")
    return bootstrap_noise(range(n), lambda rows: statistic(*(select(s, rows.astype(int)) for s in sweeps)),
                           draws=draws, seed=seed)


def claim_measurements(sweeps: Mapping[str, InvarianceResult], control: Mapping[str, InvarianceResult],
                       draws: int = 500, seed: int = 0) -> dict[str, tuple[float, float]]:
    """§4.4's reading as numbers, each with its noise: ``name -> (value, noise)``.

    ``sweeps`` holds a trained network's "translate", "scale" and "rotate" sweeps, ``control`` an
    untrained network's "translate" and "scale" sweeps of the same images, both at conv1 and fc7.
    The noise is :func:`image_bootstrap`'s (``draws`` resamples of the images, the same ones for
    every sweep and both networks). For each kind k of translate and scale:

    - ``ratio/k``: :func:`first_step_ratio` (layer 7's first step over layer 1's; below 1: less affected);
    - ``learned/k``: the trained ratio minus the untrained one (below 0: learning made layer 7 less affected);
    - ``linearity/k``: R² of fc7's curve (:func:`growth`), the paper's "quasi-linear";
    - ``steeper/k``: fc7's steepness minus conv1's (below 0: a gentler start at layer 7);
    - ``kept/k``: :func:`retained`, the share of p(true label) kept under the transformation;

    and ``kept/rotate`` with ``rotate_vs_others``: rotation's share minus the smaller of the other two.
    """
    missing = [k for k in ("translate", "scale", "rotate") if k not in sweeps] + \
              [f"control {k}" for k in ("translate", "scale") if k not in control]
    if missing:
        raise ValueError(f"claim_measurements needs the sweeps {', '.join(missing)}")
    boot = lambda statistic, *s: image_bootstrap(statistic, *s, draws=draws, seed=seed)  # noqa: E731
    learned = lambda t, u: first_step_ratio(t) - first_step_ratio(u)  # noqa: E731
    steeper = lambda r: growth(r, "fc7").steepness - growth(r, "conv1").steepness  # noqa: E731
    linearity = lambda r: growth(r, "fc7").linearity  # noqa: E731
    out = {}
    for kind in ("translate", "scale"):
        t, u = sweeps[kind], control[kind]
        out[f"ratio/{kind}"] = (first_step_ratio(t), boot(first_step_ratio, t))
        out[f"learned/{kind}"] = (learned(t, u), boot(learned, t, u))
        out[f"linearity/{kind}"] = (linearity(t), boot(linearity, t))
        out[f"steeper/{kind}"] = (steeper(t), boot(steeper, t))
        out[f"kept/{kind}"] = (retained(t), boot(retained, t))
    out["kept/rotate"] = (retained(sweeps["rotate"]), boot(retained, sweeps["rotate"]))
    versus = lambda r, t, s: retained(r) - min(retained(t), retained(s))  # noqa: E731
    trio = sweeps["rotate"], sweeps["translate"], sweeps["scale"]
    out["rotate_vs_others"] = (versus(*trio), boot(versus, *trio))
    return out
