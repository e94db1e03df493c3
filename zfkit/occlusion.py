"""Occlusion sensitivity (§4.2, Fig. 7): slide a grey square over the image and watch the network.

One sweep gives the three maps of Fig. 7 — total activity of the strongest layer-5 feature map
(b), p(correct class) (d) and the most probable class (e) — plus that map's deconv projection (c)
when asked for or when the deconvnet can make it (the result's ``projection_note`` says which).

Any classifier zfkit can trace (:mod:`zfkit.graph`) is swept by whole forward passes, several
occluded images per pass, the layer's maps and the logits taken from the same pass. A model laid
out as the paper's nets are (``features`` of convolutions, max-pools and pointwise layers, then
``classifier``) gets an *incremental* sweep: an occluder changes only the units of each layer
whose input window touches what changed below (its projective field), so only those windows are
recomputed from the unoccluded image's cached activations, batched over occluder positions. Rows
and columns are planned separately (the field of a square is a rectangle), every position of one
sweep gets windows of the same size per layer, clamped inside the map, and windows are cut from
the cached input padded the way the layer pads (zeros for convolutions, -inf for max-pooling,
which also covers ``ceil_mode``). The classifier then runs on the full final feature maps. Both
engines equal full recomputation up to float rounding.

``approximate`` caps each convolution's window at a fraction of its map, keeping the centre of
the projective field, where most paths from the occluder arrive (Krypton, Nakandala et al., SIGMOD
2019): less work, a small error that the benchmark measures.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checks import check_images
from .deconv import Deconvnet
from .graph import ModelGraph, Op, eval_mode, model_graph
from .layers import output_op, resolve
from .rf import window_geometry
from .verdicts import standard_error

__all__ = ["OcclusionResult", "occlusion", "APPROXIMATE_RATIO", "BATCH_ELEMENTS", "FULL_BATCH", "covered", "DropOverlap",
           "drop_overlap", "ObjectSensitivity", "object_sensitivity", "localisation", "context_share", "movable_examples"]

#: Window cap used by ``approximate=True``, as a fraction of each map's side.
APPROXIMATE_RATIO = 0.4
#: The default batch holds as many positions as keep the largest window tensor near this many numbers.
BATCH_ELEMENTS = 2**23
_POINTWISE = (nn.ReLU, nn.LeakyReLU, nn.LocalResponseNorm, nn.Dropout, nn.Identity, nn.BatchNorm2d)


@dataclass
class OcclusionResult:
    """Maps over occluder positions, each (n_y, n_x): row i, column j has its top-left at (ys[i], xs[j])."""

    activity: torch.Tensor  # total activation of ``channel`` of ``layer``, summed over space
    prob: torch.Tensor  # softmax probability of ``target``
    top_class: torch.Tensor  # most probable class (long)
    channel: int  # the feature map of ``layer`` strongest in the unoccluded image
    projection: torch.Tensor | None  # (C, H, W) deconv projection of that map's strongest unit (mode "max")
    ys: torch.Tensor  # occluder top rows
    xs: torch.Tensor  # occluder left columns
    patch: int
    layer: str
    target: int
    base_activity: float  # the unoccluded image's values, for drops and colour scales
    base_prob: float
    macs: int  # multiply-accumulates per position: recomputed conv windows + the classifier
    full_macs: int  # the same for one full forward pass
    # how ``projection`` was made (Deconvnet.caption: empty for the paper's deconvnet), or why it is None
    projection_note: str = ""


@dataclass(frozen=True)
class _Window:
    """Where one layer's recomputed window lies along one axis: a start per position, one size."""

    start: torch.Tensor  # (n,) first row (or column) of the window in the layer's output
    size: int
    in_start: torch.Tensor  # (n,) first input row the window reads (may hang over the border)
    in_size: int


def occlusion(model: nn.Module, image: torch.Tensor, target: int, patch: int, stride: int,
              layer: str | nn.Module = "conv5", fill: float = 0.0, approximate: bool | float = False,
              channel: int | None = None, batch_size: int | None = None,
              projection: bool | None = None) -> OcclusionResult:
    """Occlude ``image`` (C, H, W) with a ``patch`` x ``patch`` square of value ``fill`` at every
    top-left position ``range(0, H - patch + 1, stride)`` (per axis) and record Fig. 7's maps.

    ``model`` is any image classifier zfkit can trace and ``layer`` any of its layers with feature
    maps (:func:`zfkit.graph.layer_names`). A model laid out as ``features`` (convolutions,
    max-pools, pointwise layers) then ``classifier`` gets the incremental engine; any other runs
    whole forward passes, ``batch_size`` occluded images at a time (default
    :data:`FULL_BATCH`). Both are exact.

    ``fill`` is in model-input space: 0.0 is the dataset mean after mean subtraction (the
    paper's grey). ``approximate`` (incremental engine only) is False (exact), True (convolution
    windows capped at :data:`APPROXIMATE_RATIO` of each map's side) or such a ratio in (0, 1].
    ``channel`` overrides the strongest map. The incremental engine recomputes ``batch_size``
    positions together (default: as many as keep the largest window tensor near
    :data:`BATCH_ELEMENTS` numbers). ``projection``: True computes panel (c)'s deconv projection
    (ValueError where the deconvnet refuses the layer), False skips it, None (default) computes it
    where the deconvnet can; ``projection_note`` on the result says which.
    """
    graph = model_graph(model)
    chosen = graph.layer(layer)
    check_images(image, model, batched=False)
    h, w = image.shape[-2:]
    patch, stride = _index(patch, "patch", 1), _index(stride, "stride", 1)
    if batch_size is not None:
        batch_size = _index(batch_size, "batch_size", 1)
    if patch > min(h, w):
        raise ValueError(f"patch={patch} is larger than the {h}x{w} image; use patch <= {min(h, w)}")
    if not isinstance(fill, (int, float)) or not math.isfinite(fill):
        raise ValueError(f"fill must be a finite number (0.0 is the dataset mean), got {fill!r}")
    ratio = _ratio(approximate)
    if projection is not None and not isinstance(projection, bool):
        raise ValueError(f"projection must be True (compute it), False (skip it) or None (when the deconvnet "
                         f"can), got {projection!r}")
    outputs = (chosen.op, output_op(graph))
    with eval_mode(model):
        with torch.inference_mode():
            values = graph.run(image[None], outputs)
            acts, logits = _checked(model, values, outputs, chosen.name)
            probs = logits.softmax(-1)[0]
            target = _index(target, "target", 0, len(probs) - 1)
            if channel is None:
                channel = int(acts[0].flatten(1).amax(1).argmax())
            channel = _index(channel, "channel", 0, acts.shape[1] - 1)
            ys = torch.arange(0, h - patch + 1, stride, device=image.device)
            xs = torch.arange(0, w - patch + 1, stride, device=image.device)
            full_macs = _graph_macs(graph, values)
            incremental = _incremental(model, layer, image, logits)
            if incremental is None:
                if ratio is not None:
                    raise ValueError(f"approximate= applies to the incremental engine, which needs model.features of "
                                     f"convolutions, max-pools and pointwise layers; {type(model).__name__} is swept by "
                                     "whole forward passes, which are exact: leave approximate=False")
                activity, occluded = _full_sweep(graph, image, outputs, ys, xs, patch, fill, channel,
                                                 batch_size or FULL_BATCH)
                macs = full_macs
            else:
                activity, occluded, macs = _incremental_sweep(model, *incremental, ys, xs, patch, fill, channel, ratio,
                                                              batch_size)
        projected, note = _projection(model, image, layer, channel, projection)
    shape = (len(ys), len(xs))
    occluded = occluded.softmax(-1)
    return OcclusionResult(
        activity=activity.view(shape), prob=occluded[:, target].view(shape), top_class=occluded.argmax(-1).view(shape),
        channel=channel, projection=projected, ys=ys, xs=xs, patch=patch, layer=chosen.name, target=target,
        base_activity=float(acts[0, channel].sum()), base_prob=float(probs[target]), macs=macs, full_macs=full_macs,
        projection_note=note)


def _projection(model: nn.Module, image: torch.Tensor, layer, channel: int,
                wanted: bool | None) -> tuple[torch.Tensor | None, str]:
    """Panel (c): the deconv projection of ``channel``'s strongest unit and how it was made, or None and why not."""
    if wanted is False:
        return None, "not computed (projection=False)"
    deconv = Deconvnet(model)
    refusal = deconv.refusal(layer)
    if refusal and wanted is None:
        return None, f"not computed: {refusal}"
    out = deconv.project(image[None], layer, channels=[channel], mode="max")
    return out[0, 0], out.policy


def _checked(model: nn.Module, values: dict, outputs: tuple[Op, Op], name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's maps (B, C, h, w) and the logits (B, classes) from a forward pass's values."""
    acts, logits = (values[op.node] for op in outputs)
    if not isinstance(acts, torch.Tensor) or acts.dim() != 4:
        shape = tuple(acts.shape) if isinstance(acts, torch.Tensor) else type(acts).__name__
        raise ValueError(f"layer {name!r} has no spatial output (shape {shape}); occlusion maps the activity of a "
                         "feature map (B, C, H, W): pick a convolutional layer or block")
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"{type(model).__name__} returns {shape}, not one tensor of logits (B, classes); "
                         "zfkit's analyses need a classifier")
    return acts, logits


def _graph_macs(graph: ModelGraph, values: dict) -> int:
    """Multiply-accumulates per image of the forward pass that gave ``values``: its convolutions
    and Linear layers."""
    total = 0
    for op in graph.ops:
        m, out = op.module, values.get(op.node)
        if isinstance(m, (nn.Conv2d, nn.Linear)) and isinstance(out, torch.Tensor):
            per_output = m.in_features if isinstance(m, nn.Linear) else m.weight[0].numel()
            total += per_output * out[0].numel()
    return total


# ---------------------------------------------------------------- validation

def _index(value, name: str, low: int, high: int | None = None) -> int:
    """``value`` as an int in [low, high], or a ValueError that names the range."""
    try:
        if isinstance(value, bool):
            raise TypeError
        value = operator.index(value)
    except TypeError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        allowed = f"an int in {low} … {high}" if high is not None else f"an int >= {low}"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return value


def _ratio(approximate) -> float | None:
    if approximate is False:
        return None
    if approximate is True:
        return APPROXIMATE_RATIO
    if isinstance(approximate, (int, float)) and 0 < approximate <= 1:
        return float(approximate)
    raise ValueError(f"approximate must be False, True or a ratio in (0, 1], got {approximate!r}")


# ---------------------------------------------------------------- whole forward passes (any model)

#: Occluded images per forward pass when the model is swept by whole forward passes.
FULL_BATCH = 16


def _full_sweep(graph: ModelGraph, image: torch.Tensor, outputs: tuple[Op, Op], ys, xs, patch: int, fill: float,
                channel: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Activity and logits of every (y, x) position in row-major order, ``batch_size`` occluded
    images per forward pass (channels-last: oneDNN's faster layout for CPU convolutions)."""
    top_all, left_all = ys.repeat_interleave(len(xs)), xs.repeat(len(ys))
    rows = torch.arange(image.shape[-2], device=image.device)
    cols = torch.arange(image.shape[-1], device=image.device)
    activity, logits = [], []
    for begin in range(0, len(top_all), batch_size):
        top, left = top_all[begin:begin + batch_size, None], left_all[begin:begin + batch_size, None]
        inside = ((rows >= top) & (rows < top + patch))[:, :, None] & ((cols >= left) & (cols < left + patch))[:, None, :]
        batch = image.expand(len(top), *image.shape).masked_fill(inside[:, None], fill)
        values = graph.run(batch.contiguous(memory_format=torch.channels_last), outputs, keep=False)
        activity.append(values[outputs[0].node][:, channel].sum((1, 2)))
        logits.append(values[outputs[1].node])
    return torch.cat(activity), torch.cat(logits)


# ---------------------------------------------------------------- the incremental engine (model.features)

def _incremental(model: nn.Module, layer, image: torch.Tensor,
                 logits: torch.Tensor) -> tuple[int, list[torch.Tensor]] | None:
    """``layer``'s index in ``model.features`` and the image's cached feature maps when the
    incremental engine applies, else None.

    It applies when ``model.features`` is a sequence of convolutions (numeric zero padding),
    max-pools and pointwise layers, ``layer`` is one of them, and ``features`` then the head
    (torchvision's ``avgpool`` if present, flatten, ``classifier``) reproduces the model's logits
    for this image: the forward pass is exactly that chain.
    """
    features, classifier = getattr(model, "features", None), getattr(model, "classifier", None)
    if not isinstance(features, nn.Sequential) or not isinstance(classifier, nn.Sequential):
        return None
    if not all(isinstance(m, _POINTWISE) or _recomputable(m) for m in features):
        return None
    try:
        place = resolve(model, layer)
    except ValueError:
        return None
    if place.part != "features":
        return None
    cache = _forward(list(features), image)
    return (place.index, cache) if torch.equal(_head(model, cache[-1][None]), logits) else None


def _recomputable(m: nn.Module) -> bool:
    """A window the incremental engine can recompute: a convolution with numeric zero padding, or a max-pool."""
    if isinstance(m, nn.Conv2d):
        return not isinstance(m.padding, str) and m.padding_mode == "zeros"
    return isinstance(m, nn.MaxPool2d)


def _incremental_sweep(model: nn.Module, index: int, cache: list[torch.Tensor], ys, xs, patch: int, fill: float,
                       channel: int, ratio: float | None, batch_size: int | None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Activity and logits of every position, recomputing only what each occluder changes, and
    the multiply-accumulates per position that took."""
    modules = list(model.features)
    rows, cols = _plan(modules, cache, ys, patch, 0, ratio), _plan(modules, cache, xs, patch, 1, ratio)
    if batch_size is None:
        largest = max(cache[i].shape[0] * r.in_size * c.in_size for i, (r, c) in enumerate(zip(rows, cols)))
        batch_size = max(1, BATCH_ELEMENTS // largest)
    activity, logits = _sweep(model, modules, cache, ys, xs, rows, cols, patch, fill, index, channel, batch_size)
    return activity, logits, _macs(model, modules, rows, cols)


def _plan(modules: list[nn.Module], cache: list[torch.Tensor], starts: torch.Tensor, patch: int, axis: int,
          ratio: float | None) -> list[_Window]:
    """The recomputed window of every layer's output along one axis, for every occluder start.

    A unit o of a layer with kernel k, stride s, padding p reads input rows [o*s - p, o*s - p + k);
    it must be recomputed when that range meets the rows recomputed below. All positions share one
    window size (the largest count), placed over the affected units and shifted inside the map.
    """
    plan = []
    top, size = starts, patch
    for i, m in enumerate(modules):
        geometry = window_geometry(m)
        if geometry is None:
            plan.append(_Window(top, size, top, size))
            continue
        k, s, p, d = geometry[axis]
        span = d * (k - 1) + 1
        length = cache[i + 1].shape[1 + axis]
        lo = (-(-(top + p - span + 1) // s)).clamp(min=0)  # ceil division
        hi = ((top + size - 1 + p) // s).clamp(max=length - 1)
        count = hi - lo + 1
        new_size = max(1, int(count.max()))
        if ratio is not None and isinstance(m, nn.Conv2d):  # pools cost nothing; capping them only adds error
            new_size = min(new_size, max(1, math.ceil(ratio * length)))
        start = (lo + (count - new_size).div(2, rounding_mode="floor")).clamp(0, length - new_size)
        plan.append(_Window(start, new_size, start * s - p, (new_size - 1) * s + span))
        top, size = start, new_size
    return plan


# ---------------------------------------------------------------- the sweep

def _forward(modules: list[nn.Module], image: torch.Tensor) -> list[torch.Tensor]:
    """The input and every layer's output for one image (C, H, W each); clones guard against in-place ReLUs."""
    cache = [image]
    for m in modules:
        cache.append(m(cache[-1][None].clone())[0])
    return cache


def _head(model: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """What follows model.features: torchvision's avgpool when present, flatten, classifier."""
    if isinstance(getattr(model, "avgpool", None), nn.Module):
        features = model.avgpool(features)
    return model.classifier(torch.flatten(features, 1))


def _sweep(model, modules, cache, ys, xs, rows, cols, patch, fill, layer_index, channel, batch_size):
    """Activity of ``channel`` at ``layer_index`` and the logits, for every (y, x) position in row-major order."""
    n_y, n_x = len(ys), len(xs)
    iy_all = torch.arange(n_y, device=ys.device).repeat_interleave(n_x)
    ix_all = torch.arange(n_x, device=ys.device).repeat(n_y)
    tables = [None if isinstance(m, _POINTWISE) else _table(cache[i], 0.0 if isinstance(m, nn.Conv2d) else -math.inf)
              for i, m in enumerate(modules)]
    activity, logits = [], []
    for begin in range(0, n_y * n_x, batch_size):
        iy, ix = iy_all[begin:begin + batch_size], ix_all[begin:begin + batch_size]
        prev = cache[0].new_full((len(iy), cache[0].shape[0], patch, patch), fill)
        top, left = ys[iy], xs[ix]
        for i, m in enumerate(modules):
            r, c = rows[i], cols[i]
            if tables[i] is None:
                prev = m(prev)
            else:
                x = _gather(tables[i], cache[i].shape[-2:], prev, top, left, r.in_start[iy], r.in_size, c.in_start[ix], c.in_size)
                if isinstance(m, nn.Conv2d):
                    prev = F.conv2d(x, m.weight, m.bias, m.stride, 0, m.dilation, m.groups)
                else:
                    prev = F.max_pool2d(x, m.kernel_size, m.stride, 0, m.dilation)
            top, left = r.start[iy], c.start[ix]
            if i == layer_index:
                activity.append(_paste(cache[i + 1][channel:channel + 1], prev[:, channel:channel + 1], top, left).sum((1, 2, 3)))
        logits.append(_head(model, _paste(cache[-1], prev, top, left)))
    return torch.cat(activity), torch.cat(logits)


def _table(cache: torch.Tensor, pad: float) -> torch.Tensor:
    """A cached map (C, H, W) as rows of channels (H*W + 1, C), the last row holding the padding value."""
    rows = cache.permute(1, 2, 0).reshape(-1, cache.shape[0])
    return torch.cat([rows, rows.new_full((1, cache.shape[0]), pad)])


def _gather(table, size, prev, top, left, row0, h, col0, w) -> torch.Tensor:
    """Input windows (n, C, h, w) starting at (row0, col0): ``prev`` where it was recomputed, the
    cached map elsewhere, the padding value outside the map.

    Works on channels-last rows (one memcpy-like row gather per source), which the convolution
    and pooling kernels then consume directly.
    """
    n, channels, ph, pw = prev.shape
    height, width = size
    r = row0[:, None] + torch.arange(h, device=row0.device)
    c = col0[:, None] + torch.arange(w, device=row0.device)
    inside = ((r >= 0) & (r < height))[:, :, None] & ((c >= 0) & (c < width))[:, None, :]
    index = torch.where(inside, r[:, :, None] * width + c[:, None, :], height * width).flatten()
    out = table.index_select(0, index)
    pr, pc = r - top[:, None], c - left[:, None]
    in_prev = (((pr >= 0) & (pr < ph))[:, :, None] & ((pc >= 0) & (pc < pw))[:, None, :]).flatten()
    src = ((torch.arange(n, device=row0.device)[:, None, None] * ph + pr[:, :, None]) * pw + pc[:, None, :]).flatten()[in_prev]
    out[in_prev] = prev.permute(0, 2, 3, 1).reshape(-1, channels).index_select(0, src)
    return out.view(n, h, w, channels).permute(0, 3, 1, 2)


def _paste(cache: torch.Tensor, window: torch.Tensor, top, left) -> torch.Tensor:
    """Copies of ``cache`` (C, H, W) with each position's window (inside the map) written in."""
    n, _, h, w = window.shape
    out = cache.expand(n, *cache.shape).clone()
    r = top[:, None] + torch.arange(h, device=top.device)
    c = left[:, None] + torch.arange(w, device=top.device)
    out[torch.arange(n, device=top.device)[:, None, None], :, r[:, :, None], c[:, None, :]] = window.permute(0, 2, 3, 1)
    return out


def _macs(model, modules, rows, cols) -> int:
    """Per-position multiply-accumulates of the incremental engine: convolutions over their
    recomputed windows + the classifier's Linear layers."""
    total = 0
    for i, m in enumerate(modules):
        if isinstance(m, nn.Conv2d):
            total += rows[i].size * cols[i].size * m.out_channels * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
    return total + sum(m.in_features * m.out_features for m in model.classifier.modules() if isinstance(m, nn.Linear))


# ---------------------------------------------------------------- reading a sweep (§4.2's two claims)

def covered(result: OcclusionResult, weights: torch.Tensor) -> torch.Tensor:
    """Sum of ``weights`` (H, W) under the occluder at each position of ``result``: (n_y, n_x).

    Puts pixel-space quantities (a projection's magnitude, an object mask) on the sweep's grid,
    so they can be compared position by position with the activity and probability maps.
    """
    if not isinstance(weights, torch.Tensor) or weights.dim() != 2:
        raise ValueError(f"weights must be one (H, W) map, got {getattr(weights, 'shape', type(weights).__name__)}")
    if weights.shape != result.projection.shape[-2:]:
        raise ValueError(f"weights are {tuple(weights.shape)} but the occluded image is {tuple(result.projection.shape[-2:])}")
    box = torch.ones(1, 1, result.patch, result.patch, dtype=torch.float64, device=weights.device)
    sums = F.conv2d(weights.double()[None, None], box)[0, 0]  # every top-left corner with the patch inside
    return sums[result.ys][:, result.xs].to(torch.float32)


@dataclass(frozen=True)
class DropOverlap:
    """Where activity drops against where the projection lies, on the sweep's grid.

    ``iou`` compares the ``top`` fraction of positions with the largest activity drop with the
    same number of positions whose occluder covers most of the projection's magnitude.
    ``chance`` is the IoU two such sets would have if placed independently at random; a control
    that keeps the spatial prior of centred objects is an other image's projection (``projection=``).
    """

    iou: float
    chance: float
    correlation: float  # Pearson, drop map against covered-projection map; NaN if either is constant


def drop_overlap(result: OcclusionResult, projection: torch.Tensor | None = None, top: float = 0.25) -> DropOverlap:
    """How well the positions where ``result.activity`` drops most match those covering the projection.

    ``projection`` (C, H, W) defaults to ``result.projection``, the strongest map's own projection.
    """
    projection = result.projection if projection is None else projection
    if not isinstance(projection, torch.Tensor) or projection.dim() != 3:
        raise ValueError(f"projection must be (C, H, W), got {getattr(projection, 'shape', type(projection).__name__)}")
    if not 0 < top <= 1:
        raise ValueError(f"top must be a fraction in (0, 1], got {top!r}")
    drop = (result.base_activity - result.activity).flatten()
    coverage = covered(result, projection.abs().sum(0)).flatten()
    n = len(drop)
    k = max(1, round(top * n))
    a, b = _largest(drop, k), _largest(coverage, k)
    inter = k * k / n  # expected intersection of two independent random k-subsets of n
    correlation = float(torch.corrcoef(torch.stack([drop, coverage]))[0, 1]) if n > 1 else math.nan
    return DropOverlap(float((a & b).sum() / (a | b).sum()), inter / (2 * k - inter), correlation)


def _largest(values: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the ``k`` largest values; ties broken by position, so results are deterministic."""
    mask = torch.zeros(len(values), dtype=torch.bool)
    mask[torch.argsort(values, descending=True, stable=True)[:k]] = True
    return mask


@dataclass(frozen=True)
class ObjectSensitivity:
    """Does hiding the object hurt the classifier? Read from one sweep and the object's mask."""

    largest_drop: float  # 1 - min p(target) / p(target) unoccluded: 1 = the worst occluder kills it
    worst_on_object: bool | None  # the most damaging occluder covers at least ``on`` of its area with object;
    # None when no position lowers p(target) at all (a saturated softmax), so there is no worst place
    on_object_share: float  # share of all positions that do: the chance level of ``worst_on_object``


def object_sensitivity(result: OcclusionResult, object_mask: torch.Tensor, on: float = 0.5,
                       min_drop: float = 0.0) -> ObjectSensitivity:
    """§4.2's localisation test for one image: ``object_mask`` (H, W) marks the object's pixels.

    An image whose largest drop of p(target) is not above ``min_drop`` (a share of the unoccluded
    p) has no worst place (``worst_on_object`` None): with a saturated softmax the "worst" square
    would be picked by float rounding, which differs between CPUs, so pass a tolerance such as 0.01.
    """
    if not 0 <= min_drop < 1:
        raise ValueError(f"min_drop must be a share in [0, 1), got {min_drop!r}")
    share = covered(result, object_mask.float()) / result.patch ** 2
    on_object = share >= on
    worst = int(result.prob.flatten().argmin())
    drop = 1 - float(result.prob.min()) / result.base_prob if result.base_prob > 0 else 0.0
    worst_on_object = bool(on_object.flatten()[worst]) if drop > min_drop else None
    return ObjectSensitivity(drop, worst_on_object, float(on_object.float().mean()))


def localisation(sensitivities: Sequence[ObjectSensitivity]) -> tuple[float, float, int]:
    """Over many images: how much more often the most damaging square lies on the object than a
    square placed at random, with the noise of that excess.

    Per image with a worst place, the excess is 1 - (share of positions on the object) when the worst
    square is on the object and -(that share) when it is not; the result is the mean excess, its
    standard error over the images, and their number. Above 0 the classifier depends on the object
    more than on the context (§4.2: "the model is localizing the objects").
    """
    excess = [float(s.worst_on_object) - s.on_object_share for s in sensitivities if s.worst_on_object is not None]
    if len(excess) < 2:
        raise ValueError(f"localisation needs at least 2 images whose p(correct) drops somewhere, got {len(excess)}; "
                         "survey more images")
    return float(np.mean(excess)), standard_error(excess), len(excess)


def context_share(images: torch.Tensor, objects: torch.Tensor) -> torch.Tensor:
    """Per display image (N, C, H, W), the share of its ink (summed intensity) that lies off the object.

    ``objects`` (N, H, W) are the object masks that split square positions into on and off the
    object (:func:`zfkit.correspondence.silhouettes`). Context is what lies off the object; near 0,
    a square off the object covers only empty background, and "object, not context" has nothing to
    set the object against.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or float(images.min()) < 0:
        raise ValueError("images must be display images (N, C, H, W) with intensities >= 0; use dataset.display(x)")
    if not isinstance(objects, torch.Tensor) or objects.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"objects must be one (H, W) mask per image, shape {(images.shape[0], *images.shape[2:])}, "
                         f"got {getattr(objects, 'shape', type(objects).__name__)}")
    ink = images.double().sum(1)
    total = ink.sum((1, 2))
    if not bool((total > 0).all()):
        raise ValueError("an image has no ink (all pixels 0): nothing is object or context; drop blank images")
    return (ink * ~objects.bool()).sum((1, 2)) / total


def movable_examples(p_true: torch.Tensor, correct: torch.Tensor, labels: torch.Tensor, classes: Sequence[int],
                     aim: float = 0.75) -> list[int]:
    """For each class in ``classes``, the correctly classified image whose p(true class) is nearest ``aim``.

    Fig. 7 is read off how p(correct) and the top class change as the square moves; an image the
    model is sure of (p = 0.9999) barely moves, and its "worst place" is picked by float rounding.
    Near ``aim`` (0.75: correct, with room to fall below 0.5 and to rise) the maps can move both ways.
    """
    p_true, correct, labels = (torch.as_tensor(t).reshape(-1) for t in (p_true, correct, labels))
    if not len(p_true) == len(correct) == len(labels):
        raise ValueError(f"p_true, correct and labels need one value per image, got {len(p_true)}, {len(correct)}, "
                         f"{len(labels)}")
    if not 0 < aim < 1:
        raise ValueError(f"aim must be a probability in (0, 1), got {aim!r}")
    chosen = []
    for c in classes:
        candidates = (correct.bool() & (labels == c)).nonzero().flatten()
        if len(candidates) == 0:
            raise ValueError(f"no correctly classified image of class {c}; pick another class or a larger pool")
        chosen.append(int(candidates[(p_true[candidates].double() - aim).abs().argmin()]))
    return chosen
