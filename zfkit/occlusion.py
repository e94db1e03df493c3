"""Occlusion sensitivity (§4.2, Fig. 7): slide a grey square over the image and watch the network.

One sweep gives the three maps of Fig. 7 — total activity of the strongest layer-5 feature map
(b), p(correct class) (d) and the most probable class (e) — plus that map's deconv projection (c)
when asked for or when the deconvnet can make it (the result's ``projection_note`` says which).

Both engines are *incremental*: an occluder changes only the units of each layer whose input
window touches what changed below (its projective field), so only those windows are recomputed
from the unoccluded image's cached activations, batched over occluder positions (Krypton,
Nakandala et al., SIGMOD 2019). Rows and columns are planned separately (the field of a square is
a rectangle), every position of one batch gets windows of the same size per layer, clamped
inside the map, and windows are cut from the cached input padded the way the layer pads (zeros
for convolutions, -inf for max-pooling, which also covers ``ceil_mode``).

A model laid out as the paper's nets are (``features`` of convolutions, max-pools and pointwise
layers, then ``classifier``) gets the *features* engine, which walks that list; the classifier
runs on the full final maps. Any other classifier zfkit can trace (:mod:`zfkit.graph`: ResNet,
MobileNet, DenseNet, EfficientNet, ...) gets the *graph* engine, which carries each position's
window through the traced ops: convolutions and poolings grow and stride it, elementwise ops
(activations, batch norm) keep it, residual sums and channel concatenations take the box around
their inputs' windows, and global pooling, flatten, Linear and broadcast gates (squeeze-excitation)
change their whole output, from which point the sweep runs whole maps (``whole_from`` on the
result names that op). Starts near a border, whose field the map's edge cuts off, are planned in
groups of their own. Both engines equal full recomputation up to float rounding.

``approximate`` caps each convolution's window at a fraction of its map, keeping the centre of
the projective field, where most paths from the occluder arrive (Krypton, Nakandala et al., SIGMOD
2019): less work, a small error that the benchmark measures.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from .checks import check_images
from .deconv import Deconvnet
from .graph import ModelGraph, Op, eval_mode, maxpool_module, model_graph
from .layers import output_op, resolve
from .rf import window_geometry
from .verdicts import standard_error

__all__ = ["OcclusionResult", "occlusion", "APPROXIMATE_RATIO", "BATCH_ELEMENTS", "covered", "DropOverlap",
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
    # the op from which every position's maps were recomputed whole, its window (the occluder's projective
    # field) covering the map: a layer name (``layer3.1.conv2``, ``classifier``) or a traced node (``flatten``)
    whole_from: str = ""


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
    max-pools, pointwise layers) then ``classifier`` gets the features engine, any other the graph
    engine (see the module's docstring). Both are exact.

    ``fill`` is in model-input space: 0.0 is the dataset mean after mean subtraction (the
    paper's grey). ``approximate`` (features engine only) is False (exact), True (convolution
    windows capped at :data:`APPROXIMATE_RATIO` of each map's side) or such a ratio in (0, 1].
    ``channel`` overrides the strongest map. Both engines recompute ``batch_size`` positions together (default: as many as keep the largest window tensor near
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
                    raise ValueError(f"approximate= applies to the incremental engine of model.features (convolutions, "
                                     f"max-pools and pointwise layers); {type(model).__name__} is swept by the graph "
                                     "engine, which is exact only: leave approximate=False")
                activity, occluded, macs, whole_from = _graph_engine(graph, outputs, values, ys, xs, patch, fill,
                                                                     channel, batch_size)
            else:
                activity, occluded, macs, whole_from = _incremental_sweep(model, *incremental, ys, xs, patch, fill,
                                                                          channel, ratio, batch_size)
        projected, note = _projection(model, image, layer, channel, projection)
    shape = (len(ys), len(xs))
    occluded = occluded.softmax(-1)
    return OcclusionResult(
        activity=activity.view(shape), prob=occluded[:, target].view(shape), top_class=occluded.argmax(-1).view(shape),
        channel=channel, projection=projected, ys=ys, xs=xs, patch=patch, layer=chosen.name, target=target,
        base_activity=float(acts[0, channel].sum()), base_prob=float(probs[target]), macs=macs, full_macs=full_macs,
        projection_note=note, whole_from=whole_from)


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


# ---------------------------------------------------------------- the graph engine (any traced graph)

#: Ops that act position by position, so each output unit needs its inputs at that unit only.
_ELEMENTWISE = frozenset({"bn", "relu", "relu6", "activation", "identity", "lrn", "add", "scale", "gate", "cat"})
#: Most groups of occluder starts per axis planned apart (their windows sized apart): border positions have
#: smaller windows.
_GROUPS = 3
#: What planning and sweeping one more group costs, in multiply-accumulates per op of the graph (Python's
#: per-op overhead at a CPU's convolution throughput): small images are not split for nothing.
_GROUP_OVERHEAD = 2_000_000


@dataclass(frozen=True)
class _Span:
    """A node's recomputed window along one axis: its first unit per occluder start, one size for all."""

    start: torch.Tensor  # (n,) one per occluder start along this axis
    size: int | torch.Tensor  # a tensor (n,) only when sizing each start alone, to group starts
    length: int  # units of the node's map along this axis

    @property
    def whole(self) -> bool:
        return self.size == self.length


_Spans = tuple[_Span, _Span]  # rows, columns


@dataclass(frozen=True)
class _Step:
    """How the graph engine computes one op for a batch of occluder positions."""

    op: Op
    # "constant" (its clean value), "input", "window" (convolution, pooling), "elementwise", "whole", or
    # "folded" (a batch norm whose convolution took it into its weights)
    how: str
    inputs: tuple[fx.Node, ...]  # the inputs whose values differ between positions
    module: nn.Module | None = None  # a window step's sliding-window module
    folded: tuple[torch.Tensor, torch.Tensor] | None = None  # a convolution's weight and bias with its batch norm
    spans: _Spans | None = None  # its recomputed window in one group of positions; None: no map, computed whole


def _graph_engine(graph: ModelGraph, outputs: tuple[Op, Op], clean: dict, ys: torch.Tensor, xs: torch.Tensor,
                  patch: int, fill: float, channel: int,
                  batch_size: int | None) -> tuple[torch.Tensor, torch.Tensor, int, str]:
    """Activity and logits of every position (row-major), the multiply-accumulates per position
    and the op from which every position ran whole, sweeping each group of positions apart."""
    steps = _classify(graph, outputs, clean)
    rows, cols = _group(steps, clean, ys, xs, patch, 0), _group(steps, clean, xs, ys, patch, 1)
    layer, head = (clean[op.node] for op in outputs)
    activity = layer.new_zeros((len(ys), len(xs)))
    logits = head.new_zeros((len(ys), len(xs), head.shape[-1]))
    macs, whole, tables = 0, 0, {}
    for iy in rows:
        for ix in cols:
            planned = _planned(steps, clean, ys[iy], xs[ix], patch)
            sweep = _Sweep(graph, {s.op.node: s for s in planned}, clean, tables)
            a, z = _graph_sweep(sweep, planned, outputs, ys[iy], xs[ix], patch, fill, channel,
                                batch_size or _graph_batch(planned, clean))
            activity[iy[:, None], ix] = a.view(len(iy), len(ix))
            logits[iy[:, None], ix] = z.view(len(iy), len(ix), -1)
            macs += _graph_macs_recomputed(planned, clean) * len(iy) * len(ix)
            whole = max(whole, _whole_from(planned))
    return activity.flatten(), logits.flatten(0, 1), round(macs / (len(ys) * len(xs))), _op_name(steps[whole].op)


def _classify(graph: ModelGraph, outputs: tuple[Op, Op], clean: dict) -> list[_Step]:
    """Every op ``outputs`` need, in order, with how the sweep computes it: a convolution or pooling
    on windows cut from its input, an elementwise op (activation, batch norm, residual sum, channel
    concatenation) on its inputs' windows, any other op (global pooling, flatten, Linear, a
    broadcast gate) on whole maps, an op that no occluder changes by its clean value."""
    needed = {o.node for t in outputs for o in graph.ancestors(t)}
    steps: dict[fx.Node, _Step] = {}
    for op in graph.ops:
        if op.node in needed:
            steps[op.node] = _classify_op(op, steps, clean)
    return _fold_batch_norms(steps, outputs[0].node)


def _fold_batch_norms(steps: dict[fx.Node, _Step], layer: fx.Node) -> list[_Step]:
    """A convolution read only by an eval-mode batch norm takes the norm's per-channel affine map
    into its weight and bias, and the norm passes its output on ("folded"): one pass over the
    window instead of two (equal up to float rounding). ``layer`` keeps its own value."""
    readers: dict[fx.Node, list[fx.Node]] = {}
    for node, step in steps.items():
        for a in step.inputs:
            readers.setdefault(a, []).append(node)
    for node, step in list(steps.items()):
        after = readers.get(node, [])
        if step.how != "window" or not isinstance(step.module, nn.Conv2d) or len(after) != 1 or node is layer:
            continue
        norm = steps[after[0]]
        if norm.how == "elementwise" and norm.op.kind == "bn" and type(norm.op.module) is nn.BatchNorm2d:
            steps[node] = replace(step, folded=_fold(step.module, norm.op.module))
            steps[norm.op.node] = replace(norm, how="folded")
    return list(steps.values())


def _fold(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight and bias of ``norm(conv(x))`` as one convolution (eval mode: running statistics)."""
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    bias = -norm.running_mean * scale if conv.bias is None else (conv.bias - norm.running_mean) * scale
    if norm.bias is not None:
        bias = bias + norm.bias
    return conv.weight * scale[:, None, None, None], bias


def _classify_op(op: Op, steps: dict[fx.Node, _Step], clean: dict) -> _Step:
    node = op.node
    if op.kind == "input":
        return _Step(op, "input", ())
    inputs = tuple(a for a in node.all_input_nodes if a in steps and steps[a].how != "constant")
    if not inputs:
        return _Step(op, "constant", ())
    if _is_map(clean[node]) and all(_is_map(clean[a]) for a in inputs):
        module = _sliding(op)
        if module is not None and inputs == (node.args[0],):
            return _Step(op, "window", inputs, module)
        if _elementwise(op, clean, inputs):
            return _Step(op, "elementwise", inputs)
    return _Step(op, "whole", inputs)


def _is_map(value) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() == 4


def _sliding(op: Op) -> nn.Module | None:
    """The module of a convolution or pooling whose windows the engine can cut out, else None: zero
    padding for convolutions, padding counted and no rounding up for average pools, and the
    module's own ``forward`` (a subclass may change the weights first)."""
    m = maxpool_module(op) if op.kind == "maxpool" else op.module
    if op.kind == "conv" and type(m).forward is nn.Conv2d.forward:
        return m if m.padding_mode == "zeros" else None
    if op.kind == "avgpool" and type(m).forward is nn.AvgPool2d.forward:
        unpadded = all(g[2] == 0 for g in window_geometry(m))
        return m if not m.ceil_mode and (m.count_include_pad or unpadded) else None
    return m if op.kind == "maxpool" and type(m).forward is nn.MaxPool2d.forward else None


def _elementwise(op: Op, clean: dict, inputs: tuple[fx.Node, ...]) -> bool:
    """Whether ``op`` acts position by position on maps of its own size (channels concatenated, not
    positions), every other tensor it reads being the same at every position (a per-channel scale)."""
    node = op.node
    if op.kind not in _ELEMENTWISE or (op.kind == "cat" and node.kwargs.get("dim", (node.args + (0,))[1]) not in (1, -3)):
        return False
    if op.kind == "bn" and getattr(op.module, "running_mean", None) is None:  # batch statistics mix positions
        return False
    size = clean[node].shape[-2:]
    constants = [clean[a] for a in node.all_input_nodes if a not in inputs]
    return (all(clean[a].shape[-2:] == size for a in inputs)
            and all(not isinstance(c, torch.Tensor) or c.numel() == 1 or (c.dim() >= 2 and c.shape[-2:] == (1, 1))
                    for c in constants))


# ---------------------------------------------------------------- planning windows, per axis

def _planned(steps: list[_Step], clean: dict, ys: torch.Tensor, xs: torch.Tensor, patch: int) -> list[_Step]:
    """``steps`` with the windows that occluders at rows ``ys`` and columns ``xs`` change."""
    rows, cols = _place(steps, clean, ys, patch, 0), _place(steps, clean, xs, patch, 1)
    return [replace(s, spans=(rows[s.op.node], cols[s.op.node])) if s.op.node in rows else s for s in steps]


def _place(steps: list[_Step], clean: dict, starts: torch.Tensor, patch: int, axis: int,
           alone: bool = False) -> dict[fx.Node, _Span]:
    """Every map's window along ``axis`` for occluders starting at ``starts``: a convolution or
    pooling grows and strides its input's window, an elementwise op takes the box around its
    inputs' windows, any other op changes its whole map. ``alone`` sizes each start's window alone."""
    spans: dict[fx.Node, _Span] = {}
    for s in steps:
        out = clean[s.op.node]
        if s.how == "constant" or not _is_map(out):
            continue
        length = out.shape[2 + axis]
        if s.how == "input":
            spans[s.op.node] = _Span(starts, patch, length)
        elif s.how == "window":
            spans[s.op.node] = _grow(spans[s.inputs[0]], window_geometry(s.module)[axis], length, alone)
        elif s.how in ("elementwise", "folded"):
            spans[s.op.node] = _union([spans[a] for a in s.inputs], length, alone)
        else:
            spans[s.op.node] = _Span(starts.new_zeros(len(starts)), length, length)
    return spans


def _grow(span: _Span, geometry: tuple[int, int, int, int], length: int, alone: bool) -> _Span:
    """The outputs of a sliding window (kernel k, stride s, padding p, dilation d) that read ``span``:
    unit o reads inputs [o*s - p, o*s - p + d*(k - 1)]."""
    k, s, p, d = geometry
    reach = d * (k - 1) + 1
    lo = (-(-(span.start + p - reach + 1) // s)).clamp(min=0)  # ceil division
    hi = ((span.start + span.size - 1 + p) // s).clamp(max=length - 1)
    return _placed(lo, hi, length, alone)


def _union(spans: list[_Span], length: int, alone: bool) -> _Span:
    """The box around several windows of one map, per position."""
    lo = torch.stack([s.start for s in spans]).amin(0)
    hi = torch.stack([s.start + s.size - 1 for s in spans]).amax(0)
    return _placed(lo, hi, length, alone)


def _placed(lo: torch.Tensor, hi: torch.Tensor, length: int, alone: bool) -> _Span:
    """One size for every position (the largest count), each window centred on its units and kept in
    the map; or, ``alone``, each position's own count."""
    count = (hi - lo + 1).clamp(min=1)
    if alone:
        return _Span(lo.clamp(max=length - 1), count, length)
    size = int(count.max())
    return _Span((lo + (count - size).div(2, rounding_mode="floor")).clamp(0, length - size), size, length)


def _group(steps: list[_Step], clean: dict, starts: torch.Tensor, others: torch.Tensor, patch: int,
           axis: int) -> list[torch.Tensor]:
    """Indices of ``starts`` split into at most :data:`_GROUPS` runs whose windows are sized
    apart, chosen to recompute the fewest multiply-accumulates (:data:`_GROUP_OVERHEAD` for each
    run): near a border the occluder's field is cut off by the edge of the map, so one size for
    every start would waste work there."""
    alone = _place(steps, clean, starts, patch, axis, alone=True)
    across = _place(steps, clean, others, patch, 1 - axis)
    convs = [s for s in steps if s.how == "window" and isinstance(s.module, nn.Conv2d)]
    if not convs or len(starts) < 2:
        return [torch.arange(len(starts), device=starts.device)]
    sizes = torch.stack([alone[s.op.node].size for s in convs]).double()  # (convs, starts)
    weights = sizes.new_tensor([s.module.weight.numel() * across[s.op.node].size for s in convs])
    n = len(starts)
    cost = sizes.new_zeros(n + 1, n + 1)  # cost[i, j]: starts i .. j-1 sized together (0 when empty)
    for i in range(n):
        widest = sizes[:, i:].cummax(1).values  # (convs, n - i): the largest size of i .. j-1
        cost[i, i + 1:] = (weights @ widest) * torch.arange(1, n - i + 1, dtype=sizes.dtype)
    overhead = _GROUP_OVERHEAD * len(steps) * _GROUPS / len(others)  # per run, as the other axis's share
    cost = cost + torch.full_like(cost, overhead).triu(1) + torch.full_like(cost, math.inf).tril(-1)
    cuts = [0, *_best_cuts(cost, _GROUPS), n]
    return [torch.arange(a, b, device=starts.device) for a, b in zip(cuts, cuts[1:]) if b > a]


def _best_cuts(cost: torch.Tensor, runs: int) -> list[int]:
    """The ``runs - 1`` cuts splitting 0 .. n into (up to) ``runs`` runs of least total cost, where
    ``cost[i, j]`` is that of the run i .. j - 1 (0 when empty), by dynamic programming."""
    best, back = cost[0], []  # best[j]: the least cost of 0 .. j - 1 in the runs so far
    for _ in range(runs - 1):
        best, arg = (best[:, None] + cost).min(0)
        back.append(arg)
    cuts, end = [], cost.shape[0] - 1
    for arg in reversed(back):
        end = int(arg[end])
        cuts.append(end)
    return cuts[::-1]


def _whole_from(steps: list[_Step]) -> int:
    """Index of the first step from which every step recomputes its whole output."""
    partial = [i for i, s in enumerate(steps) if s.spans is not None and not all(x.whole for x in s.spans)]
    start = partial[-1] + 1 if partial else 0
    return next(i for i in range(start, len(steps)) if steps[i].how != "constant")


def _op_name(op: Op) -> str:
    """A module's qualified name, or the traced node's name for a function (``add_7``)."""
    return str(op.node.target) if op.module is not None else op.node.name


# ---------------------------------------------------------------- sweeping one group

def _graph_sweep(sweep: "_Sweep", steps: list[_Step], outputs: tuple[Op, Op], ys, xs, patch: int, fill: float,
                 channel: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Activity and logits of every (y, x) position of one group in row-major order, ``batch_size``
    positions at a time, each op recomputing only its planned window."""
    n_y, n_x = len(ys), len(xs)
    iy_all = torch.arange(n_y, device=ys.device).repeat_interleave(n_x)
    ix_all = torch.arange(n_x, device=ys.device).repeat(n_y)
    last_reader = {a: s.op.node for s in steps for a in s.op.node.all_input_nodes}
    clean = sweep.clean
    layer, head = (op.node for op in outputs)
    activity, logits = [], []
    for begin in range(0, n_y * n_x, batch_size):
        env = sweep.start(iy_all[begin:begin + batch_size], ix_all[begin:begin + batch_size])
        for step in steps:
            node = step.op.node
            env[node] = sweep.compute(step, patch, fill)
            if node is layer:
                top, left = sweep.origin(step.spans)
                activity.append(_paste(clean[node][0, channel:channel + 1], env[node][:, channel:channel + 1],
                                       top, left).sum((1, 2, 3)))
            for a in node.all_input_nodes:
                if last_reader.get(a) is node:
                    del env[a]
        logits.append(env[head])
    return torch.cat(activity), torch.cat(logits)


@dataclass
class _Sweep:
    """One batch of occluder positions on its way through the graph: each node's recomputed window."""

    graph: ModelGraph
    steps: dict[fx.Node, _Step]
    clean: dict  # the unoccluded image's values, by node
    tables: dict  # (node, padding value) -> its clean map as rows of channels, built once per sweep
    iy: torch.Tensor | None = None
    ix: torch.Tensor | None = None
    env: dict | None = None

    def start(self, iy: torch.Tensor, ix: torch.Tensor) -> dict:
        self.iy, self.ix, self.env = iy, ix, {}
        return self.env

    def origin(self, spans: _Spans) -> tuple[torch.Tensor, torch.Tensor]:
        """Top row and left column of each position's window."""
        return spans[0].start[self.iy], spans[1].start[self.ix]

    def compute(self, step: _Step, patch: int, fill: float):
        if step.how == "constant":
            return self.clean[step.op.node]
        if step.how == "input":
            image = self.clean[step.op.node]
            return image.new_full((len(self.iy), image.shape[1], patch, patch), fill)
        if step.how == "folded":
            return self.env[step.inputs[0]]
        if step.how == "window":
            return self._window(step)
        read = self._cut if step.how == "elementwise" else self._whole
        args = fx.node.map_arg(step.op.node.args, lambda a: read(a, step.spans))
        kwargs = fx.node.map_arg(step.op.node.kwargs, lambda a: read(a, step.spans))
        return self.graph.call(step.op, args, kwargs)

    def _window(self, step: _Step) -> torch.Tensor:
        """A convolution or pooling on each position's input window, cut with its halo and padding
        (on the whole map, padded as the layer pads, once the input's window covers it)."""
        m, x = step.module, step.inputs[0]
        weight, bias = step.folded or (getattr(m, "weight", None), getattr(m, "bias", None))
        if _whole_spans(self.steps[x].spans):
            if isinstance(m, nn.Conv2d):
                return F.conv2d(self.env[x], weight, bias, m.stride, m.padding, m.dilation, m.groups)
            return m(self.env[x])
        (kr, sr, pr, dr), (kc, sc, pc, dc) = window_geometry(m)
        rows, cols = step.spans
        top, left = self.origin(step.spans)
        crop = self._read(x, -math.inf if isinstance(m, nn.MaxPool2d) else 0.0, top * sr - pr,
                          (rows.size - 1) * sr + dr * (kr - 1) + 1, left * sc - pc, (cols.size - 1) * sc + dc * (kc - 1) + 1)
        if isinstance(m, nn.Conv2d):
            return F.conv2d(crop, weight, bias, m.stride, 0, m.dilation, m.groups)
        if isinstance(m, nn.MaxPool2d):
            return F.max_pool2d(crop, m.kernel_size, m.stride or m.kernel_size, 0, m.dilation)
        return F.avg_pool2d(crop, m.kernel_size, m.stride or m.kernel_size, 0, divisor_override=m.divisor_override)

    def _cut(self, node: fx.Node, spans: _Spans):
        """``node``'s values on the window ``spans``: its own window when they agree, else cut anew."""
        step = self.steps.get(node)
        if step is None or step.how == "constant":
            return self.clean[node]
        if all(a.size == b.size and torch.equal(a.start, b.start) for a, b in zip(step.spans, spans)):
            return self.env[node]
        (top, left), (rows, cols) = self.origin(spans), spans
        return self._read(node, 0.0, top, rows.size, left, cols.size)

    def _whole(self, node: fx.Node, spans: _Spans | None):
        """``node``'s whole value for every position: its window pasted into the clean map."""
        step = self.steps.get(node)
        if step is None or step.how == "constant":
            return self.clean[node]
        if _whole_spans(step.spans):
            return self.env[node]
        return _paste(self.clean[node][0], self.env[node], *self.origin(step.spans), torch.channels_last)

    def _read(self, node: fx.Node, pad: float, row0, h: int, col0, w: int) -> torch.Tensor:
        """Windows (n, C, h, w) of ``node`` from (row0, col0): recomputed values, clean ones, ``pad`` outside the map."""
        key = (node, pad)
        if key not in self.tables:
            self.tables[key] = _table(self.clean[node][0], pad)
        top, left = self.origin(self.steps[node].spans)
        return _gather(self.tables[key], self.clean[node].shape[-2:], self.env[node], top, left, row0, h, col0, w)


def _whole_spans(spans: _Spans | None) -> bool:
    return spans is None or all(s.whole for s in spans)


def _graph_batch(steps: list[_Step], clean: dict) -> int:
    """Positions per batch that keep the largest per-position tensor near :data:`BATCH_ELEMENTS` numbers."""
    largest = 1
    for step in steps:
        out = clean[step.op.node]
        if step.how == "constant" or not isinstance(out, torch.Tensor):
            continue
        if step.spans is None:
            largest = max(largest, out.numel())
            continue
        largest = max(largest, out.shape[1] * step.spans[0].size * step.spans[1].size)
        if step.how == "window":
            (kr, sr, _, dr), (kc, sc, _, dc) = window_geometry(step.module)
            rows, cols = step.spans
            largest = max(largest, clean[step.inputs[0]].shape[1] * ((rows.size - 1) * sr + dr * (kr - 1) + 1)
                          * ((cols.size - 1) * sc + dc * (kc - 1) + 1))
    return max(1, BATCH_ELEMENTS // largest)


def _graph_macs_recomputed(steps: list[_Step], clean: dict) -> int:
    """Per-position multiply-accumulates of the graph engine: Conv2d over recomputed windows, Linear layers."""
    total = 0
    for step in steps:
        m, out = step.op.module, clean[step.op.node]
        if step.how == "constant" or not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        units = out[0].numel() if step.spans is None else out.shape[1] * step.spans[0].size * step.spans[1].size
        total += (m.in_features if isinstance(m, nn.Linear) else m.weight[0].numel()) * units
    return total


# ---------------------------------------------------------------- the features engine (model.features)

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
                       channel: int, ratio: float | None,
                       batch_size: int | None) -> tuple[torch.Tensor, torch.Tensor, int, str]:
    """Activity and logits of every position, recomputing only what each occluder changes, the
    multiply-accumulates per position that took, and the layer from which it recomputed whole maps."""
    modules = list(model.features)
    rows, cols = _plan(modules, cache, ys, patch, 0, ratio), _plan(modules, cache, xs, patch, 1, ratio)
    if batch_size is None:
        largest = max(cache[i].shape[0] * r.in_size * c.in_size for i, (r, c) in enumerate(zip(rows, cols)))
        batch_size = max(1, BATCH_ELEMENTS // largest)
    activity, logits = _sweep(model, modules, cache, ys, xs, rows, cols, patch, fill, index, channel, batch_size)
    return activity, logits, _macs(model, modules, rows, cols), _features_whole_from(model, cache, rows, cols)


def _features_whole_from(model: nn.Module, cache: list[torch.Tensor], rows: list[_Window], cols: list[_Window]) -> str:
    """The first layer of ``features`` from which every window is the whole map, else the head."""
    names = [f"features.{name}" for name, _ in model.features.named_children()]
    whole = [r.size == out.shape[1] and c.size == out.shape[2] for r, c, out in zip(rows, cols, cache[1:])]
    partial = [i for i, w in enumerate(whole) if not w]
    first = partial[-1] + 1 if partial else 0
    if first < len(names):
        return names[first]
    return "avgpool" if isinstance(getattr(model, "avgpool", None), nn.Module) else "classifier"


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

    One row gather (channels last, memcpy-like) from the cached rows followed by ``prev``'s, which
    the convolution and pooling kernels then consume directly.
    """
    n, channels, ph, pw = prev.shape
    height, width = size
    r = row0[:, None] + torch.arange(h, device=row0.device)
    c = col0[:, None] + torch.arange(w, device=row0.device)
    inside = ((r >= 0) & (r < height))[:, :, None] & ((c >= 0) & (c < width))[:, None, :]
    index = torch.where(inside, r[:, :, None] * width + c[:, None, :], height * width)
    pr, pc = r - top[:, None], c - left[:, None]
    in_prev = ((pr >= 0) & (pr < ph))[:, :, None] & ((pc >= 0) & (pc < pw))[:, None, :]
    src = (torch.arange(n, device=row0.device)[:, None, None] * ph + pr[:, :, None]) * pw + pc[:, None, :]
    index = torch.where(in_prev, len(table) + src, index).flatten()
    rows = torch.cat([table, prev.permute(0, 2, 3, 1).reshape(-1, channels)])
    return rows.index_select(0, index).view(n, h, w, channels).permute(0, 3, 1, 2)


def _paste(cache: torch.Tensor, window: torch.Tensor, top, left,
           memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """Copies of ``cache`` (C, H, W) with each position's window (inside the map) written in."""
    n, _, h, w = window.shape
    out = torch.empty((n, *cache.shape), dtype=cache.dtype, device=cache.device, memory_format=memory_format)
    out.copy_(cache.expand(n, *cache.shape))
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
