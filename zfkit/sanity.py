"""Sanity checks for projections: does the picture change when the network does?

A projection is meant to show what a unit has *learned*. Later work tested that directly
(Adebayo et al. 2018): re-initialise the trained weights, layer by layer from the top, or train
the same architecture on shuffled labels, and compare the projections before and after. A method
whose pictures barely change is showing the image (its edges, its switches) rather than the
model. This module provides the pieces, for any of the three backward rules of
:class:`zfkit.deconv.Deconvnet` (deconvnet, guided backpropagation, gradient):

- :func:`randomize`, :func:`cascade`, :func:`independent`: copies of a model with chosen weight
  layers re-drawn from the initialisation the book trains from (He et al.'s N(0, 2/fan_in),
  biases 0; :func:`zfkit.models.init_he`), the original left untouched. Each layer's new weights
  depend only on ``seed`` and its name, so the cascade's step k really contains step k-1.
  :func:`relative_change` says how far training moved a model from its initialisation.
- :func:`project`: one projection per (image, unit) pair, for conv layers (the deconvnet, mode
  ``"max"``: Fig. 2's pictures) and for fully connected ones such as ``fc8``'s class logits
  (autograd with each ReLU's backward swapped for the rule: the explanations Adebayo et al. test).
- :func:`similarity`, :func:`compare`: SSIM and Spearman rank correlation, with and without
  absolute values, the metrics of Adebayo et al.
- :func:`sweep`: the whole randomisation test (projections of each randomised copy against the
  trained model's), and :func:`draw_sweep`, :func:`draw_examples`, :func:`draw_comparison`,
  :func:`draw_rules` to show it; :func:`edges`, :func:`recovery` and :func:`mass_inside` for
  model-free references.
- :func:`mean_with_noise`, :func:`paired_difference`, :meth:`Sweep.noise`: a measurement's mean and
  its noise (the standard error over images, or over feature maps), for the verdicts of
  :mod:`zfkit.verdicts`.
"""

from __future__ import annotations

import copy
import warnings
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from .checks import check_images
from .deconv import RULES, Deconvnet
from .graph import eval_mode, model_graph
from .models import init_he
from .oracle import rule_forward
from .topk import layer_activations
from .viz import new_figure, show_image, to_display

__all__ = ["METRICS", "RULE_COLOURS", "weight_layers", "randomize", "cascade", "independent", "project",
           "relative_change", "to_map", "similarity", "compare", "edges", "recovery", "mass_inside", "Sweep", "sweep",
           "draw_sweep", "draw_examples", "draw_comparison", "draw_rules", "mean_with_noise", "paired_difference"]

METRICS = ("ssim", "spearman_abs", "spearman")
METRIC_LABELS = {"ssim": "SSIM (|map|)", "spearman_abs": "Spearman (|map|)", "spearman": "Spearman (signed)"}
RULE_COLOURS = {"deconvnet": "#e6194b", "guided": "#4363d8", "gradient": "#3cb44b"}


# ---------------------------------------------------------------- randomised copies

def weight_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every convolution and fully connected layer the forward pass calls, by name, in forward order:
    the paper's names for zfkit models (``conv1`` … ``fc8``), qualified module names for any other
    (``features.0``, ``layer3.1.conv2``, ``fc``). These are the layers a randomisation test can
    re-initialise."""
    graph = model_graph(model)
    paper = {path: name for name, path in graph.aliases.items()}
    found: dict[str, nn.Module] = {}
    for op in graph.ops:
        if isinstance(op.module, (nn.Conv2d, nn.Linear)) and op.module not in found.values():
            found[paper.get(op.node.target, op.node.target)] = op.module
    if not found:
        raise ValueError(f"{type(model).__name__} calls no Conv2d or Linear layer: nothing to randomise")
    return found


def _check_names(model: nn.Module, names: Iterable[str]) -> list[str]:
    """``names`` as a list, each a weight layer of ``model`` (ValueError naming the valid ones otherwise)."""
    names = [names] if isinstance(names, str) else list(names)
    valid = weight_layers(model)
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(f"unknown weight layer(s) {', '.join(map(repr, unknown))}; this model's weight layers are: "
                         f"{', '.join(valid)}")
    if len(set(names)) != len(names):
        raise ValueError(f"layer names repeat: {names}")
    return names


def _layer_generator(seed: int, name: str) -> torch.Generator:
    """A generator that depends on ``seed`` and the layer's name only, so a layer gets the same
    random weights whichever other layers are randomised with it (the cascade is cumulative)."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + zlib.crc32(name.encode())) % 2**63)


def randomize(model: nn.Module, layers: str | Iterable[str], seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` whose named weight ``layers`` are re-initialised; ``model`` is untouched.

    Weights are drawn from He et al.'s N(0, 2/fan_in) and biases set to 0, the initialisation the
    book's models start training from (:func:`zfkit.models.init_he`): a randomised layer is the layer
    as it was before it learned anything. The copy is in eval mode.
    """
    names = _check_names(model, layers)
    clone = copy.deepcopy(model)
    modules = weight_layers(clone)
    for name in names:
        init_he(modules[name], _layer_generator(seed, name))
    return clone.eval()


def cascade(model: nn.Module, order: Sequence[str] | None = None, seed: int = 0) -> Iterator[tuple[str, nn.Module]]:
    """Adebayo et al.'s cascading randomisation: ``(name, copy)`` with ``order[:k+1]`` re-initialised.

    ``order`` defaults to every weight layer from the top down (``fc8, fc7, …, conv1``), so the
    last copy is entirely random. Copies are made one at a time (a generator).
    """
    order = _check_names(model, list(reversed(weight_layers(model))) if order is None else order)
    for k, name in enumerate(order):
        yield name, randomize(model, order[: k + 1], seed)


def independent(model: nn.Module, layers: Sequence[str] | None = None, seed: int = 0) -> Iterator[tuple[str, nn.Module]]:
    """Independent (one layer at a time) randomisation: ``(name, copy with only that layer re-initialised)``.

    Isolates each layer's contribution, which the cascade confounds with the layers above it.
    ``layers`` defaults to every weight layer from the top down.
    """
    layers = _check_names(model, list(reversed(weight_layers(model))) if layers is None else layers)
    for name in layers:
        yield name, randomize(model, [name], seed)


def relative_change(before: nn.Module, after: nn.Module) -> dict[str, float]:
    """Per weight layer, ||W_after - W_before|| / ||W_before||: how far training (or randomisation)
    moved each layer. A model "trained" on shuffled labels that stays near 0 learned nothing, not
    even to memorise, and is then a weak control for the label-randomisation test."""
    a, b = weight_layers(before), weight_layers(after)
    if list(a) != list(b) or any(a[n].weight.shape != b[n].weight.shape for n in a):
        raise ValueError("relative_change needs two models of the same architecture")
    with torch.no_grad():
        return {n: float((b[n].weight - a[n].weight).norm() / a[n].weight.norm().clamp_min(1e-30)) for n in a}


# ---------------------------------------------------------------- projections of (image, unit) pairs

def _classifier_projection(model: nn.Module, images: torch.Tensor, layer: str | nn.Module, units: torch.Tensor,
                           rule: str) -> torch.Tensor:
    """d unit / d input through the whole network with every ReLU's backward replaced by ``rule``."""
    x, h = rule_forward(model, images, layer, rule)
    (grad,) = torch.autograd.grad(h[torch.arange(len(units)), units].sum(), x)
    return grad


def project(model: nn.Module, images: torch.Tensor, layer: str | nn.Module, units, rule: str = "deconvnet") -> torch.Tensor:
    """One projection per pair: ``images[i]`` projected from channel ``units[i]`` of ``layer`` (N, C, H, W).

    A layer with feature maps goes through :class:`zfkit.deconv.Deconvnet` in mode ``"max"``:
    the map's strongest unit in that image, seeded with its activation (Fig. 2's pictures). A
    fully connected layer (``fc6``, ``fc8``, a ResNet's ``fc``) is projected from the unit with a
    seed of 1 (the logit's explanation, as Adebayo et al. define it), by autograd with each
    ReLU's backward replaced by ``rule`` and LRN's and dropout's by the identity, the same
    backward path the deconvnet engine takes below (checked in the tests). ``units`` is one int
    for all images or a sequence of ``len(images)``.
    """
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    name = model_graph(model).layer(layer).name
    check_images(images, model)
    n = len(images)
    units = torch.as_tensor(units.tolist() if isinstance(units, (torch.Tensor, np.ndarray)) else units, dtype=torch.long)
    if units.ndim == 0:
        units = units.expand(n).clone()
    if units.shape != (n,):
        raise ValueError(f"units must be one int or one per image ({n}), got {units.numel()}")
    with eval_mode(model):
        shape = layer_activations(model, images[:1], layer).shape
        if len(shape) == 2:
            if units.min() < 0 or units.max() >= shape[1]:
                raise ValueError(f"unit index out of range: {name} has {shape[1]} units (0 … {shape[1] - 1}), "
                                 f"got {sorted(set(units.tolist()))}")
            return _classifier_projection(model, images, layer, units, rule)
        deconv = Deconvnet(model, rule=rule)
        out = images.new_zeros(images.shape)
        for c in units.unique():
            idx = (units == c).nonzero().flatten()
            out[idx] = deconv.project(images[idx], layer, channels=[int(c)], mode="max")[:, 0]
        return out


# ---------------------------------------------------------------- similarity

def to_map(projection: torch.Tensor | np.ndarray, absolute: bool = True) -> np.ndarray:
    """A (C, H, W) projection (or an (H, W) map) as one (H, W) float64 map: channels summed,
    after taking absolute values when ``absolute`` (a saliency's sign is often read as irrelevant)."""
    x = projection.detach().cpu().double().numpy() if isinstance(projection, torch.Tensor) else np.asarray(projection, np.float64)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"expected a (C, H, W) projection or an (H, W) map, got shape {x.shape}")
    return (np.abs(x) if absolute else x).sum(0)


def _unit_scale(m: np.ndarray) -> np.ndarray:
    """A non-negative map divided by its maximum: [0, 1], so SSIM compares structure, not scale."""
    top = m.max()
    return m / top if top > 0 else np.zeros_like(m)


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    side = min(a.shape)
    if side < 3:
        raise ValueError(f"SSIM needs maps of at least 3x3 pixels, got {a.shape}")
    win = min(7, side if side % 2 else side - 1)  # skimage's default window, shrunk for small patches
    return float(structural_similarity(a, b, data_range=1.0, win_size=win))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation; NaN when either map is constant (the correlation is undefined)."""
    from scipy.stats import spearmanr

    a, b = a.ravel(), b.ravel()
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def similarity(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> dict[str, float]:
    """How alike two projections are, by Adebayo et al.'s metrics (1 = identical up to scale).

    - ``ssim``: structural similarity of the absolute maps, each scaled to [0, 1] by its maximum
      (a projection's overall scale is arbitrary);
    - ``spearman_abs``: Spearman rank correlation of the absolute maps (sign ignored);
    - ``spearman``: Spearman rank correlation of the signed maps (a sign flip gives -1).

    Spearman is NaN where a map is constant (e.g. a dead unit's all-zero projection).
    """
    if tuple(np.shape(a)) != tuple(np.shape(b)):
        raise ValueError(f"projections differ in shape: {tuple(np.shape(a))} vs {tuple(np.shape(b))}")
    abs_a, abs_b = to_map(a), to_map(b)
    return {"ssim": _ssim(_unit_scale(abs_a), _unit_scale(abs_b)), "spearman_abs": _spearman(abs_a, abs_b),
            "spearman": _spearman(to_map(a, absolute=False), to_map(b, absolute=False))}


def compare(a: torch.Tensor, b: torch.Tensor) -> dict[str, np.ndarray]:
    """:func:`similarity` of each pair ``a[i]``, ``b[i]`` of two (N, C, H, W) batches: metric -> (N,)."""
    if len(a) != len(b):
        raise ValueError(f"compare needs batches of equal length, got {len(a)} and {len(b)}")
    rows = [similarity(x, y) for x, y in zip(a, b)]
    return {m: np.array([r[m] for r in rows]) for m in METRICS}


def edges(images: torch.Tensor) -> torch.Tensor:
    """Sobel edge magnitude of each (C, H, W) image, channels summed (N, 1, H, W): the model-free
    "explanation" Adebayo et al. hold saliency maps against (an edge detector knows no classes)."""
    from skimage.filters import sobel

    x = images.detach().cpu().double().numpy()
    return torch.from_numpy(np.stack([sum(sobel(channel) for channel in image)[None] for image in x])).to(images.dtype)


def recovery(projections: dict[str, torch.Tensor], shown: torch.Tensor) -> dict[str, dict[str, np.ndarray]]:
    """How much of each explanation is the image itself (Nie et al.'s "image recovery"): per image,
    absolute Spearman of each set of ``projections`` (name -> (N, C, H, W)) with its own displayed image
    ``shown``, with that image's Sobel edges, and, as controls, with the next image's (garments share a
    centred layout, so only the margin over another image counts). name -> reference -> (N,)."""
    references = {"image": shown, "other image": shown.roll(1, 0), "edges": edges(shown)}
    references["other edges"] = references["edges"].roll(1, 0)
    return {name: {ref: compare(p, r)["spearman_abs"] for ref, r in references.items()} for name, p in projections.items()}


def mass_inside(projections: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of each projection's absolute value (summed over channels) that falls inside its
    (H, W) boolean mask, e.g. the garment's pixels: 1 = all of the picture on the object."""
    total = projections.abs().sum(1)
    inside = (total * masks).flatten(1).sum(1)
    return inside / total.flatten(1).sum(1).clamp_min(torch.finfo(total.dtype).tiny)


# ---------------------------------------------------------------- the randomisation test

def _nanmean(values: np.ndarray, axis: int | None = None):
    """Mean over the defined values (NaN where there are none, without numpy's warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


@dataclass
class Sweep:
    """A randomisation test: how alike each randomised model's projections are to the trained model's.

    ``scores[rule][metric]`` is (S, N): per step (a randomised copy, named in ``steps``) and per
    (image, unit) pair. ``floor[rule][metric]`` is the mean similarity between the trained model's
    projections of *different* pairs: the level a method reaches by chance on this data (projections
    of garments on a blank background share a lot). ``examples[rule]`` is (S + 1, E, C, H, W): the
    trained model's projections of the first E pairs, then each step's.
    """

    layer: str
    steps: list[str]
    rules: tuple[str, ...]
    scores: dict[str, dict[str, np.ndarray]]
    floor: dict[str, dict[str, float]]
    examples: dict[str, torch.Tensor]

    def mean(self, rule: str, metric: str) -> list[float]:
        """Per step, the mean over pairs (pairs with an undefined Spearman are left out)."""
        return [float(v) for v in _nanmean(self.scores[rule][metric], axis=1)]

    def at(self, step: str, rule: str, metric: str) -> float:
        """The mean similarity after ``step``."""
        if step not in self.steps:
            raise ValueError(f"unknown step {step!r}; this sweep's steps are {', '.join(self.steps)}")
        return self.mean(rule, metric)[self.steps.index(step)]

    def noise(self, step: str, rule: str, metric: str) -> float:
        """The standard error of :meth:`at` over the (image, unit) pairs (undefined Spearmans left out)."""
        if step not in self.steps:
            raise ValueError(f"unknown step {step!r}; this sweep's steps are {', '.join(self.steps)}")
        return mean_with_noise(self.scores[rule][metric][self.steps.index(step)])[1]

    def records(self) -> dict:
        """Means per rule, metric and step, and the floors, for a results JSON."""
        return {"layer": self.layer, "steps": self.steps, "pairs": int(self.scores[self.rules[0]]["ssim"].shape[1]),
                "mean": {r: {m: dict(zip(self.steps, self.mean(r, m))) for m in METRICS} for r in self.rules},
                "floor": self.floor}


def sweep(model: nn.Module, variants: Iterable[tuple[str, nn.Module]], images: torch.Tensor, layer: str,
          units, rules: Sequence[str] = RULES, examples: int = 4) -> Sweep:
    """Project the pairs (``images[i]``, ``units[i]`` of ``layer``) with ``model`` and with each of the
    ``variants`` (``(name, model)``, e.g. from :func:`cascade`), under each rule, and compare."""
    rules = tuple(rules)
    for rule in rules:
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}; choose from {', '.join(RULES)}")
    if len(images) < 2:
        raise ValueError("sweep needs at least two (image, unit) pairs (the floor compares different pairs)")
    original = {rule: project(model, images, layer, units, rule) for rule in rules}
    scores = {rule: {m: [] for m in METRICS} for rule in rules}
    shown = {rule: [original[rule][:examples]] for rule in rules}
    steps = []
    for name, variant in variants:
        steps.append(name)
        for rule in rules:
            projected = project(variant, images, layer, units, rule)
            for m, values in compare(original[rule], projected).items():
                scores[rule][m].append(values)
            shown[rule].append(projected[:examples])
    if not steps:
        raise ValueError("sweep needs at least one randomised variant")
    floor = {rule: {m: float(_nanmean(v)) for m, v in compare(original[rule], original[rule].roll(1, 0)).items()}
             for rule in rules}
    return Sweep(model_graph(model).layer(layer).name, steps, rules, {r: {m: np.stack(v) for m, v in s.items()} for r, s in scores.items()},
                 floor, {rule: torch.stack(v) for rule, v in shown.items()})


# ---------------------------------------------------------------- noise of a measurement

def mean_with_noise(values, group: int = 1) -> tuple[float, float]:
    """The mean of per-pair ``values`` and its noise: the standard error of that mean.

    With ``group`` > 1, every ``group`` consecutive values (e.g. the top-9 images of one feature map)
    are averaged first and the noise is measured over those groups: values within a group are not
    independent, so their spread would understate the noise. NaN values (an undefined Spearman)
    are left out, and a group with none defined is dropped.
    """
    x = np.asarray(values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values, dtype=float)
    if x.ndim != 1 or group < 1 or len(x) % group:
        raise ValueError(f"mean_with_noise needs a 1-d array whose length ({x.size}) is a multiple of group ({group})")
    means = _nanmean(x.reshape(-1, group), axis=1)
    means = means[~np.isnan(means)]
    if len(means) < 2:
        raise ValueError(f"need at least 2 defined groups to measure noise, got {len(means)}; measure more images or maps")
    return float(means.mean()), float(means.std(ddof=1) / np.sqrt(len(means)))


def paired_difference(a, b, group: int = 1) -> tuple[float, float]:
    """Mean of ``a - b`` over paired measurements (same images, same units) and its standard error;
    ``group`` as in :func:`mean_with_noise`. Pairing removes what the two share (the image, the
    unit), so the noise is that of the difference itself."""
    a = np.asarray(a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a, dtype=float)
    b = np.asarray(b.detach().cpu().numpy() if isinstance(b, torch.Tensor) else b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired_difference needs measurements of the same pairs, got shapes {a.shape} and {b.shape}")
    return mean_with_noise(a - b, group)


# ---------------------------------------------------------------- figures

def _shown(projection: torch.Tensor) -> np.ndarray:
    """An absolute map for display: scaled so its 99th percentile is white (clipped above), the
    usual way saliency maps are shown, so that a few extreme pixels do not leave the rest black."""
    m = to_map(projection)
    top = np.percentile(m, 99)
    return np.clip(m / top, 0, 1) if top > 0 else np.zeros_like(m)


def draw_sweep(sweep: Sweep, metrics: Sequence[str] = METRICS, title: str | None = None, size: float = 3.0) -> Figure:
    """Adebayo et al.'s plot: per metric, the mean similarity to the trained model's projections
    (band: ± one standard deviation over pairs) against the layers randomised, one line per rule;
    dotted: each rule's floor (different pairs of the trained model)."""
    fig, axes = new_figure(1, len(metrics), figsize=(size * len(metrics) + 1.2, size), squeeze=False)
    x = np.arange(len(sweep.steps))
    for ax, metric in zip(axes[0], metrics):
        for rule in sweep.rules:
            values = sweep.scores[rule][metric]
            mean = _nanmean(values, 1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                std = np.nanstd(values, 1)
            colour = RULE_COLOURS.get(rule)
            ax.plot(x, mean, "o-", color=colour, label=rule, markersize=4)
            ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.12, linewidth=0)
            ax.axhline(sweep.floor[rule][metric], color=colour, linestyle=":", linewidth=1)
        ax.set_xticks(x, sweep.steps, rotation=60, fontsize=7)
        ax.set_ylim(-0.45 if metric == "spearman" else -0.05, 1.05)
        ax.set_title(METRIC_LABELS[metric], fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0, 0].set_ylabel("similarity to trained", fontsize=8)
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False,
                       title="dotted: floor", title_fontsize=6)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def draw_examples(sweep: Sweep, pair: int = 0, image: torch.Tensor | None = None, size: float = 0.85) -> Figure:
    """Adebayo et al.'s Fig. 2 for one pair: a row per rule, the trained model's projection then each
    step's (absolute values, each scaled to its own 99th percentile); ``image`` (C, H, W, display
    pixels) first if given."""
    extra = image is not None
    cols = len(sweep.steps) + 1 + extra
    fig, axes = new_figure(len(sweep.rules), cols, figsize=(size * cols + 0.6, size * len(sweep.rules) + 0.4), squeeze=False)
    for r, rule in enumerate(sweep.rules):
        if extra:
            show_image(axes[r, 0], image, "input" if r == 0 else None)
        for s in range(len(sweep.steps) + 1):
            ax = axes[r, s + extra]
            show_image(ax, _shown(sweep.examples[rule][s, pair]), normalize=False)
            if r == 0:
                ax.set_title("trained" if s == 0 else f"→{sweep.steps[s - 1]}", fontsize=7)
        axes[r, 0].set_ylabel(rule, fontsize=8)
    return fig


def draw_comparison(sets: dict[str, dict[str, torch.Tensor]], images: torch.Tensor | None = None, count: int = 4,
                    titles: Sequence[str] | None = None, size: float = 0.85) -> Figure:
    """Projections of the same images under several conditions, side by side: a row per image
    (the first ``count``), then per rule a column per condition. ``sets`` maps a condition (e.g.
    "trained", "shuffled labels") to rule -> (N, C, H, W) projections; ``images`` (display pixels)
    come first when given, with ``titles`` (e.g. class names) above them. Absolute values, each
    scaled to its own 99th percentile."""
    conditions = list(sets)
    rules = list(next(iter(sets.values())))
    cols = len(rules) * len(conditions) + (images is not None)
    n = min(count, len(next(iter(sets[conditions[0]].values()))))
    fig, axes = new_figure(n, cols, figsize=(size * cols + 0.4, size * n + 0.6), squeeze=False)
    for i in range(n):
        c = 0
        if images is not None:
            show_image(axes[i, 0], images[i], titles[i] if titles is not None else None)
            c = 1
        for rule in rules:
            for condition in conditions:
                ax = axes[i, c]
                show_image(ax, _shown(sets[condition][rule][i]), normalize=False)
                if i == 0:
                    ax.set_title(f"{rule}\n{condition}", fontsize=6.5, color=RULE_COLOURS.get(rule, "k"))
                c += 1
    return fig


def _strip(tiles: Sequence[torch.Tensor], gutter: int = 1) -> np.ndarray:
    """Tiles (C, s, s) side by side in one image, each normalised to its own range, with white
    gutters: one axes per row draws much faster than one per tile."""
    shown = [to_display(t, normalize=True) for t in tiles]
    h, w = shown[0].shape[:2]
    out = np.ones((h, len(shown) * (w + gutter) - gutter) + shown[0].shape[2:])
    for i, tile in enumerate(shown):
        out[:, i * (w + gutter):i * (w + gutter) + w] = tile
    return out


def draw_rules(panels: dict[str, Sequence], labels: Sequence[str] | None = None, size: float = 0.62) -> Figure:
    """The rules side by side on the same units: per feature map, a row of its top-k image patches
    and one row of projections per rule (``panels``: rule -> :func:`zfkit.gallery.top_projections`
    of the same maps and scan). Projections are shown signed, each on its own scale, as in Fig. 2.
    Policies beyond the rule itself (SiLU, gates, LayerNorm: each :class:`zfkit.gallery.Panel`'s ``policy``)
    are listed in the title."""
    rules = list(panels)
    maps = list(zip(*panels.values()))
    if not maps:
        raise ValueError("draw_rules needs at least one panel per rule")
    k = len(maps[0][0].values)
    rows = len(maps) * (len(rules) + 1)
    fig, axes = new_figure(rows, 1, figsize=(size * k + 0.9, size * rows + 0.25 * len(maps)), squeeze=False)
    for m, group in enumerate(maps):
        top = m * (len(rules) + 1)
        first = group[0]
        strips = [(first.patches, f"{first.layer}\nmap {first.channel}", "k")]
        strips += [(panel.projections, rule, RULE_COLOURS.get(rule, "k")) for rule, panel in zip(rules, group)]
        for r, (tiles, name, colour) in enumerate(strips):
            ax = axes[top + r, 0]
            show_image(ax, _strip(tiles[:k]), normalize=False)
            ax.set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center", color=colour)
        if labels is not None:
            side = first.patches.shape[-1]
            for i in range(k):
                axes[top, 0].text(i * (side + 1) + (side - 1) / 2, -1, labels[int(first.labels[i])], fontsize=5,
                                  ha="center", va="bottom")
    policies = sorted({p.policy for rule, group in panels.items() for p in group if p.policy not in ("", rule)})
    if policies:
        fig.suptitle("\n".join(policies), fontsize=6)
    return fig
