"""Receptive fields: which input pixels a unit of a layer can depend on, on any traced CNN.

A unit's receptive field is the box around its *input support*, the pixels where its projection
(or its gradient) can be non-zero. It is computed from the model's traced graph
(:mod:`zfkit.graph`), not read off a list of layers: every node gets, per axis, the input rows
that its unit ``i`` reads, ``[jump * i + lo, jump * i + hi]``, propagated forward from the image
(unit i reads pixel i):

- a convolution or pooling with kernel k, stride s, padding p, dilation d reads the units
  ``[s*i - p, s*i - p + d*(k - 1)]`` of its input, so ``jump`` multiplies by s and the field
  grows by ``d*(k - 1) * jump`` (Araujo et al., Distill 2019); this is the window arithmetic the
  deconvnet's cone cropping uses on the way down;
- pointwise ops (ReLU, batch norm, LRN, dropout, SiLU and the like) keep the field, zero
  padding shifts it;
- residual addition, concatenation of channels and products take the union of their inputs'
  fields (the box around both branches);
- an op that mixes every position (flatten, ``Linear``, global or non-uniform adaptive pooling, a
  mean, a reshape) gives each output unit the *whole* span of its input map, reported with
  ``jump = size``. A squeeze-excitation gate multiplies by such a unit, so after the first gate
  every unit depends on every pixel, and its field says so.

The box includes zero padding (it may extend past the image), as the paper's figures draw it.
Inside the image it is the exact hull of the support for a unit that padding does not reach;
at the border it may also hold a few rows that a strided layer's floor division leaves unread.
An op whose geometry zfkit does not know raises ``ValueError`` rather than guessing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import fx, nn

from .graph import ModelGraph, Op, eval_mode, model_graph

__all__ = ["ReceptiveField", "receptive_field", "receptive_fields", "window_geometry"]


@dataclass(frozen=True)
class ReceptiveField:
    """Size, jump and start of a layer's receptive field on the input, along the rows; ``cols`` holds
    the columns' where they differ (a factorised 1x7 convolution, a non-square input), else None.
    ``whole``: every unit reads the same span (below a global pooling, e.g. a squeeze-excitation
    gate), reported with ``jump = size``; the box is then the same for every unit."""

    size: int
    jump: int
    start: float
    cols: ReceptiveField | None = None
    whole: bool = False

    @property
    def columns(self) -> ReceptiveField:
        """The field along the columns (this one for a square field)."""
        return self if self.cols is None else self.cols

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the field in pixels."""
        return self.size, self.columns.size

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right), bottom/right exclusive, of unit (y, x); may extend past the image."""
        top, left = self._first(y), self.columns._first(x)
        return top, left, top + self.size, left + self.columns.size

    def _first(self, i: int) -> int:
        """The first pixel of unit ``i``'s field along this axis."""
        return int(round(self.start + (0 if self.whole else i * self.jump) - (self.size - 1) / 2))

    def patch(self, image: torch.Tensor, y: int, x: int, fill: float = 0.0) -> torch.Tensor:
        """The (C, height, width) input patch unit (y, x) sees; parts outside the image are ``fill``."""
        if image.dim() != 3:
            raise ValueError(f"patch() takes one image (C, H, W), got shape {tuple(image.shape)}")
        top, left, bottom, right = self.box(y, x)
        out = image.new_full((image.shape[0], *self.shape), fill)
        h, w = image.shape[-2:]
        t, l, b, r = max(top, 0), max(left, 0), min(bottom, h), min(right, w)
        if t < b and l < r:
            out[:, t - top:b - top, l - left:r - left] = image[:, t:b, l:r]
        return out


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def window_geometry(m: nn.Module) -> tuple[tuple[int, int, int, int], ...] | None:
    """Per axis (rows, columns), ``(kernel, stride, padding before, dilation)`` of a sliding-window
    module (``Conv2d``, ``MaxPool2d``, ``AvgPool2d``); None for any other module."""
    if isinstance(m, nn.Conv2d):
        k, d = _pair(m.kernel_size), _pair(m.dilation)
        if m.padding == "same":
            p = tuple(d[i] * (k[i] - 1) // 2 for i in range(2))  # PyTorch puts the odd pixel after
        else:
            p = (0, 0) if m.padding == "valid" else _pair(m.padding)
        return tuple((k[i], _pair(m.stride)[i], p[i], d[i]) for i in range(2))
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        k, p = _pair(m.kernel_size), _pair(m.padding)
        s, d = _pair(m.stride or m.kernel_size), _pair(getattr(m, "dilation", 1))
        return tuple((k[i], s[i], p[i], d[i]) for i in range(2))
    return None


# ---------------------------------------------------------------- the field of one axis

@dataclass(frozen=True)
class _Axis:
    """Input rows (or columns) unit i of a node reads: ``[jump*i + lo, jump*i + hi]``, or, when
    ``whole``, ``[lo, hi]`` for every unit."""

    jump: int
    lo: int
    hi: int
    whole: bool = False

    def window(self, k: int, s: int, p: int, d: int) -> "_Axis":
        return _Axis(self.jump * s, self.lo - p * self.jump, self.hi + (d * (k - 1) - p) * self.jump)

    def shift(self, before: int) -> "_Axis":
        return _Axis(self.jump, self.lo - before * self.jump, self.hi - before * self.jump)

    def spread(self, length: int) -> "_Axis":
        """Every unit of a map of ``length`` units together: what an op mixing them all reads."""
        return self if self.whole else _Axis(0, self.lo, self.hi + (length - 1) * self.jump, True)

    def field(self) -> ReceptiveField:
        size = self.hi - self.lo + 1
        return ReceptiveField(size, size if self.whole else self.jump, (self.lo + self.hi) / 2, whole=self.whole)


_Field = tuple[_Axis, _Axis]  # rows, columns


@dataclass(frozen=True)
class _Unknown:
    """A node below which positions cannot be followed: ``op`` has no known geometry."""

    op: Op


_POINTWISE_KINDS = {"bn", "relu", "relu6", "lrn", "identity"}
_POINTWISE_MODULES = (nn.SiLU, nn.Sigmoid, nn.Hardswish, nn.Hardsigmoid, nn.GELU, nn.Tanh, nn.LeakyReLU, nn.ELU,
                      nn.Mish, nn.Softplus, nn.PReLU, nn.Hardtanh, nn.ReLU6, nn.BatchNorm2d)
_POINTWISE_FUNCTIONS = {F.silu, torch.sigmoid, F.sigmoid, F.hardswish, F.hardsigmoid, F.gelu, torch.tanh, F.tanh,
                        F.leaky_relu, F.elu, F.mish, F.softplus, F.hardtanh, torch.clamp, F.batch_norm}
_POINTWISE_METHODS = {"sigmoid", "tanh", "clamp", "silu"}
_ADAPTIVE = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def _sizes(graph: ModelGraph, target: Op, input_size: tuple[int, int, int]) -> Callable[[fx.Node], tuple[int, ...]]:
    """Shapes of the nodes below ``target`` for one image of ``input_size``; the forward pass
    (batch 1, the weights' dtype and device) runs only if some op's geometry needs a size."""
    values: dict = {}

    def size(node: fx.Node) -> tuple[int, ...]:
        if not values:
            weight = next(graph.model.parameters(), None)
            image = torch.zeros(1, *input_size, dtype=weight.dtype if weight is not None else torch.float32,
                                device=weight.device if weight is not None else "cpu")
            with torch.no_grad(), eval_mode(graph.model):
                values.update(graph.run(image, [target]))
        value = values[node]
        return tuple(value.shape) if isinstance(value, torch.Tensor) else ()

    return size


def _fields(graph: ModelGraph, target: Op, input_size: tuple[int, int, int]) -> dict[fx.Node, _Field | _Unknown | None]:
    """The field of every node ``target`` depends on (None: carries no image positions)."""
    size = _sizes(graph, target, input_size)
    fields: dict[fx.Node, _Field | _Unknown | None] = {}
    for op in graph.ancestors(target):
        fields[op.node] = _step(op, fields, size)
    return fields


def _step(op: Op, fields: dict, size) -> _Field | _Unknown | None:
    node = op.node
    if op.kind == "input":
        return _Axis(1, 0, 0), _Axis(1, 0, 0)
    inputs = [a for a in node.all_input_nodes if fields.get(a) is not None]
    if not inputs or op.kind in ("check", "shape"):
        return None
    unknown = next((fields[a] for a in inputs if isinstance(fields[a], _Unknown)), None)
    if unknown is not None:
        return unknown
    if any(ax.whole for a in inputs for ax in fields[a]):
        return _mix(inputs, fields, size)
    first = fields[inputs[0]]
    geometry = _geometry(op, size)
    if geometry is not None:
        return tuple(ax.window(*g) for ax, g in zip(first, geometry))
    if _pointwise(op):
        return first
    padding = _padding(op)
    if padding is not None:
        return first[0].shift(padding[2]), first[1].shift(padding[0])
    if op.kind in ("add", "cat", "scale", "gate") and not (op.kind == "cat" and _cat_dim(node) not in (1, -3)):
        return _union(inputs, fields, size)
    if op.kind == "linear" or isinstance(op.module, _ADAPTIVE):
        return _mix(inputs, fields, size)
    return _Unknown(op)


def _geometry(op: Op, size) -> tuple[tuple[int, int, int, int], ...] | None:
    """Per-axis window of a convolution or pooling, module or function; adaptive pooling by a divisor
    (to 1x1 it mixes every position: None)."""
    if op.module is not None:
        if isinstance(op.module, _ADAPTIVE):
            (_, _, *inside), (_, _, *outside) = size(op.node.args[0]), size(op.node)
            if outside != [1, 1] and all(i % o == 0 for i, o in zip(inside, outside)):
                return tuple((i // o, i // o, 0, 1) for i, o in zip(inside, outside))
            return None
        if isinstance(op.module, nn.Conv2d) and op.module.padding_mode == "circular":
            return None
        return window_geometry(op.module)
    if op.node.op != "call_function":
        return None
    if op.node.target is F.conv2d:
        call = _bind(op.node, ("input", "weight", "bias", "stride", "padding", "dilation"))
        k, p = size(call["weight"])[2:], call.get("padding", 0)
        if isinstance(p, str):
            return None
        s, p, d = _pair(call.get("stride", 1)), _pair(p), _pair(call.get("dilation", 1))
        return tuple((k[i], s[i], p[i], d[i]) for i in range(2))
    if op.node.target in (F.max_pool2d, F.avg_pool2d):
        call = _bind(op.node, ("input", "kernel_size", "stride", "padding", "dilation"))
        k, p = _pair(call["kernel_size"]), _pair(call.get("padding", 0))
        s = _pair(call.get("stride") or call["kernel_size"])
        d = _pair(call.get("dilation", 1)) if op.node.target is F.max_pool2d else (1, 1)
        return tuple((k[i], s[i], p[i], d[i]) for i in range(2))
    return None


def _bind(node: fx.Node, names: tuple[str, ...]) -> dict:
    return {**dict(zip(names, node.args)), **node.kwargs}


def _pointwise(op: Op) -> bool:
    node = op.node
    if op.kind in _POINTWISE_KINDS or isinstance(op.module, _POINTWISE_MODULES):
        return True
    if node.op == "call_function" and node.target in _POINTWISE_FUNCTIONS:
        return True
    if node.op == "call_method" and node.target.rstrip("_") in _POINTWISE_METHODS:
        return True
    # a scale by a constant (x * 0.5, x / 6): one signal, no positions moved
    return op.kind == "scale" and sum(isinstance(a, fx.Node) for a in node.args) == 1


def _padding(op: Op) -> tuple[int, int, int, int] | None:
    """(left, right, top, bottom) of zero (constant) padding, module or ``F.pad``; None otherwise."""
    if isinstance(op.module, (nn.ZeroPad2d, nn.ConstantPad2d)):
        return tuple(op.module.padding)
    if op.node.op == "call_function" and op.node.target is F.pad:
        call = _bind(op.node, ("input", "pad", "mode", "value"))
        pad = tuple(call["pad"])
        if call.get("mode", "constant") == "constant" and len(pad) == 4:
            return pad
    return None


def _cat_dim(node: fx.Node) -> int:
    return node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)


def _union(inputs: list[fx.Node], fields: dict, size) -> _Field:
    """Several signals combined position by position: the box around every input's field."""
    axes = []
    for axis in range(2):
        parts = [fields[a][axis] for a in inputs]
        if len({p.jump for p in parts}) == 1:
            axes.append(_Axis(parts[0].jump, min(p.lo for p in parts), max(p.hi for p in parts)))
        else:  # a map broadcast over another (a 1x1 gate): its unit meets every position
            axes.append(_whole(inputs, fields, size, axis))
    return tuple(axes)


def _mix(inputs: list[fx.Node], fields: dict, size) -> _Field:
    """An op mixing every position of its inputs: each output unit reads all of their fields."""
    return tuple(_whole(inputs, fields, size, axis) for axis in range(2))


def _whole(inputs: list[fx.Node], fields: dict, size, axis: int) -> _Axis:
    spans = [fields[a][axis].spread(_length(size(a), axis)) for a in inputs]
    return _Axis(0, min(s.lo for s in spans), max(s.hi for s in spans), True)


def _length(shape: tuple[int, ...], axis: int) -> int:
    """Units along rows (axis 0) or columns (axis 1) of a (B, C, H, W) map; 1 for other shapes."""
    return shape[2 + axis] if len(shape) == 4 else 1


# ---------------------------------------------------------------- public

def _input_size(model: nn.Module, input_size) -> tuple[int, int, int]:
    if input_size is None:
        side = getattr(model, "input_size", 224)
        return getattr(model, "in_channels", 3), side, side
    if len(input_size) != 3:
        raise ValueError(f"input_size must be (C, H, W), got {input_size!r}")
    return tuple(input_size)


def _checked(name: str, field: _Field | _Unknown | None) -> ReceptiveField:
    """Layer ``name``'s field, or ValueError saying why it has none."""
    if isinstance(field, _Unknown):
        raise ValueError(f"receptive_field cannot tell which input positions {field.op.describe()} in "
                         f"{field.op.where!r} reads, so it cannot follow {name!r} back to the image; the known ops are "
                         "convolutions, poolings, padding, pointwise ops, addition, concatenation, products and ops "
                         "that mix every position (flatten, Linear, global pooling)")
    if field is None:
        raise ValueError(f"layer {name!r} does not depend on the image's pixels (it returns a size or a constant), "
                         "so it has no receptive field")
    return _two_axes(field)


def _two_axes(field: _Field) -> ReceptiveField:
    """The rows' field, carrying the columns' where they differ."""
    rows, cols = (ax.field() for ax in field)
    return rows if rows == cols else replace(rows, cols=cols)


def receptive_field(model: nn.Module, layer: str | nn.Module,
                    input_size: tuple[int, int, int] | None = None) -> ReceptiveField:
    """Receptive field of ``layer`` (a name such as ``"conv5"`` or ``"layer2"``, or a module).

    ``input_size`` (C, H, W) defaults to the model's ``in_channels`` and ``input_size``
    attributes, else 3x224x224; it matters only below ops that mix every position. A field that
    differs between rows and columns (Inception's 1x7 convolutions) carries the columns' in ``cols``.
    """
    graph = model_graph(model)
    target = graph.layer(layer)
    return _checked(target.name, _fields(graph, target.op, _input_size(model, input_size))[target.op.node])


def receptive_fields(model: nn.Module, input_size: tuple[int, int, int] | None = None) -> dict[nn.Module, ReceptiveField]:
    """The receptive field of the output of every module that the forward pass calls once, by module
    (modules called several times, such as a reused ReLU, have no single output and are left out,
    as are those below an op of unknown geometry)."""
    graph = model_graph(model)
    size = _input_size(model, input_size)
    last = max((o for o in graph.ops if o.kind != "shape"), key=lambda o: o.index)
    fields = _fields(graph, last, size)
    found = {}
    for name, calls in graph.outputs.items():
        field = fields.get(graph.ops[calls[0]].node) if len(calls) == 1 else None
        if isinstance(field, tuple):
            found[graph.model.get_submodule(name)] = _two_axes(field)
    return found

