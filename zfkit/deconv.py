"""The deconvnet of §2.1, for any image CNN: project a layer's activations back to pixel space.

The model is traced once (:mod:`zfkit.graph`). A forward pass records each max-pool's switches and
each ReLU's input. To examine an activation, every other activation of its layer is zeroed and the
signal walks the graph down, node by node in reverse order:

- max-pool: *unpool* with the switches. ZFNet and AlexNet pool over overlapping 3x3/2 windows,
  so two pooled units can share a switch; their contributions are **added** (the adjoint of
  max-pooling; ``F.max_unpool2d`` writes instead and silently loses signal).
- ReLU and ReLU6: the backward rule. ``"deconvnet"`` rectifies the signal (``relu(g)``, the paper),
  ``"guided"`` also masks by the forward pass (``x > 0``; ``0 < x < 6`` for ReLU6; Springenberg et
  al. 2014), ``"gradient"`` only masks (the plain gradient, Simonyan et al. 2013).
- Other elementwise activations (SiLU, GELU, Hardswish, sigmoid, ...), gates (squeeze-excitation's
  ``scale * x``) and LayerNorm/GroupNorm: the named policies of :mod:`zfkit.policies` (by default
  ``relu(g)`` at every activation, gates and σ frozen at their forward values; ``rule="gradient"``
  is the true gradient). A projection's ``policy`` attribute says which acted (empty: the paper's).
- convolution: the transposed convolution with the same weights, no bias, sized to the layer
  input exactly. Eval-mode batch norm: its per-channel scale.
- residual addition sends the signal to both summands; concatenation gives each input its slice;
  other linear steps (flatten, average pooling, padding, ``Linear``) take autograd's backward.
- LRN and dropout are the identity on the way down (the paper's choice for LRN; dropout is off at
  test time). The model runs in eval mode while projecting.
- Anything else (an op with no transpose zfkit knows, or one a policy set to ``"refuse"``, as
  ``strict=True`` does for all three) raises ``ValueError`` naming the op and its module, rather
  than drawing a silently wrong picture. :data:`zfkit.graph.KINDS` lists what each kind does.

In mode ``"max"`` each selection starts from one unit, whose influence on any lower node is
confined to its receptive-field *cone*; the walk runs on those windows only (batched over
selections) until a window covers its whole map, which gives exactly the uncropped result at a
fraction of the cost.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from .checks import check_images
from .graph import Op, divides, eval_mode, maxpool_module, model_graph
from .policies import ACTIVATION_RULES, RULES, Policy, frozen_gate, frozen_norm_backward, norm_spec, slope_factor

__all__ = ["Deconvnet", "RULES"]

# A transposed convolution down to this many channels (the image: grey or RGB) runs as a sub-pixel
# convolution; see _subpixel_conv_t.
_FEW_CHANNELS = 4


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


@dataclass
class _Signal:
    """The signal at one node for n selections: a window of each selection's map (n, C, h, w)
    starting at rows ``top`` and columns ``left`` (n,), or, with ``top is None``, whole maps.

    Every selection's window has the same size (only its position differs), so the walk stays
    batched. A window may hang over its map's border; the signal there is always zero.
    """

    g: torch.Tensor
    top: torch.Tensor | None = None
    left: torch.Tensor | None = None

    @property
    def full(self) -> bool:
        return self.top is None


@dataclass
class _Forward:
    """What the forward pass keeps: every node's value, max-pool switches, what the rule keeps of each activation."""

    values: dict
    switches: dict
    masks: dict


class Deconvnet:
    """Project activations of any layer of an image CNN back to the input.

    ``rule`` picks how ReLUs are reversed: ``"deconvnet"`` (the paper), ``"guided"`` or ``"gradient"``.
    ``activations``, ``gates`` and ``norms`` name the policy at ops the paper has no rule for
    (:mod:`zfkit.policies`; None: the rule's default); ``strict=True`` refuses them all.
    Layers are named as in :func:`zfkit.graph.layer_names`: the paper's names for zfkit nets
    (``"conv5"``), qualified module names otherwise (``"layer3"``, ``"features.10"``), or the module.
    """

    def __init__(self, model: nn.Module, rule: str = "deconvnet", *, activations: str | None = None,
                 gates: str | None = None, norms: str | None = None, strict: bool = False):
        self.policy = Policy.of(rule, activations, gates, norms, strict)
        self.model = model
        self.rule = rule
        self.graph = model_graph(model)

    def refusal(self, layer: str | nn.Module) -> str | None:
        """Why projecting ``layer`` would be refused (an op with no rule or a refusing policy), or None."""
        return self.policy.refusal(self.graph, self.graph.layer(layer).op)

    def caption(self, layer: str | nn.Module) -> str:
        """How a projection of ``layer`` is made, for a figure: empty for the paper's deconvnet,
        else the rule and each policy that acts (``"deconvnet; SiLU: relu(g); 16 gates frozen"``)."""
        return self.policy.caption(self.graph, self.graph.layer(layer).op)

    # ---------------------------------------------------------------- public

    @torch.no_grad()
    def project(self, images: torch.Tensor, layer: str | nn.Module, channels=None, mode: str = "max",
                chunk: int = 64) -> torch.Tensor:
        """Projections of ``channels`` of ``layer`` for each image: a tensor (B, K, C_in, H, W).

        ``mode="max"`` keeps, per image and channel, only the strongest unit (ties go to the first
        in row-major order); ``mode="map"`` keeps the channel's whole map. The walk starts from the
        actual activation values. ``channels`` defaults to all; ``chunk`` bounds how many
        selections go down together (memory). The result's ``policy`` attribute is :meth:`caption`'s text.
        """
        target = self.graph.layer(layer)
        check_images(images, self.model)
        if mode not in ("max", "map"):
            raise ValueError(f"mode must be 'max' or 'map', got {mode!r}")
        if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
            raise ValueError(f"chunk must be a positive int (selections projected together), got {chunk!r}")
        path = self.graph.ancestors(target.op)
        refusal = self.policy.refusal(self.graph, target.op)
        if refusal:
            raise ValueError(refusal)
        with eval_mode(self.model):
            forward = self._forward(images, target.op)
        acts = forward.values[target.op.node]
        if not isinstance(acts, torch.Tensor) or acts.dim() != 4:
            shape = tuple(acts.shape) if isinstance(acts, torch.Tensor) else type(acts).__name__
            raise ValueError(f"layer {target.name!r} has no spatial output (shape {shape}); Deconvnet projects "
                             "feature maps (B, C, H, W): pick a convolutional layer or block")
        channels = self._channels(channels, acts.shape[1])
        b, k = images.shape[0], len(channels)
        out = images.new_zeros(b, k, *images.shape[1:])
        sel = acts[:, channels]  # (B, K, h, w)
        flat = sel.flatten(2)
        for start in range(0, b * k, chunk):
            idx = torch.arange(start, min(start + chunk, b * k))
            img, kk = idx // k, idx % k
            dest = out.view(b * k, *images.shape[1:])[start:start + len(idx)]  # a view: results land in place
            if mode == "map":
                seed = images.new_zeros(len(idx), *acts.shape[1:])
                seed[torch.arange(len(idx)), channels[kk]] = sel[img, kk]
                signal = _Signal(seed)
            else:
                pos = flat[img, kk].argmax(1)
                seed = images.new_zeros(len(idx), acts.shape[1], 1, 1)
                seed[torch.arange(len(idx)), channels[kk], 0, 0] = flat[img, kk].gather(1, pos[:, None]).squeeze(1)
                signal = _Signal(seed, pos // acts.shape[-1], pos % acts.shape[-1])
            _paste(self._walk(path, target.op, signal, forward, img), dest)
        out.policy = self.policy.caption(self.graph, target.op)
        return out

    # ---------------------------------------------------------------- validation

    @staticmethod
    def _channels(channels, n: int) -> torch.Tensor:
        if channels is None:
            return torch.arange(n)
        try:
            listed = [operator.index(channels)]
        except TypeError:
            try:
                listed = [operator.index(c) for c in channels]
            except TypeError:
                raise ValueError(f"channels must be an int, a list of ints or None (all), got {channels!r}") from None
        ch = torch.as_tensor(listed, dtype=torch.long)
        if ch.numel() == 0:
            raise ValueError("channels is empty; pass None for all channels")
        if ch.min() < 0 or ch.max() >= n:
            raise ValueError(f"channel index out of range: the layer has {n} channels (0 … {n - 1}), got {ch.tolist()}")
        return ch

    # ---------------------------------------------------------------- forward with records

    def _forward(self, images: torch.Tensor, target: Op) -> _Forward:
        switches, masks = {}, {}
        keep_masks = self.rule != "deconvnet"

        def step(op: Op, args, kwargs):
            x = args[0] if args else None
            if op.kind == "maxpool":
                m = maxpool_module(op)
                k, s, p = _pair(m.kernel_size), _pair(m.stride or m.kernel_size), _pair(m.padding)
                out, switches[op.node] = F.max_pool2d(x, k, s, p, ceil_mode=m.ceil_mode, return_indices=True)
                return out
            if op.kind in ("relu", "relu6") and keep_masks:
                masks[op.node] = slope_factor(self.rule, x, (x > 0) & (x < 6) if op.kind == "relu6" else x > 0)
            if op.kind == "activation" and keep_masks:
                out, slope = self._slope(op, args, kwargs)
                masks[op.node] = slope_factor(self.rule, x, slope)
                return out
            return None

        values = self.graph.run(images, [target], step)
        return _Forward(values, switches, masks)

    def _slope(self, op: Op, args, kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        """An elementwise activation's output and its slope φ'(x) at every input (autograd's)."""
        with torch.enable_grad():
            x = args[0].detach().requires_grad_(True)
            y = self.graph.call(op, (x, *args[1:]), kwargs)
            (slope,) = torch.autograd.grad(y, x, torch.ones_like(y))
        return y.detach(), slope

    # ---------------------------------------------------------------- the walk down

    def _walk(self, path: list[Op], target: Op, start: _Signal, forward: _Forward, img: torch.Tensor) -> _Signal:
        """Carry ``start`` (at ``target``'s output) down ``path`` to the input; the input's signal."""
        signals = {target.node: start}
        for op in reversed(path):
            signal = signals.pop(op.node, None)
            if signal is None:
                continue
            if op.kind == "input":
                return signal
            for node, part in self._down(op, signal, forward, img):
                size = forward.values[node].shape[-2:]
                part = _widen(part, size)
                signals[node] = part if node not in signals else _add(signals[node], part, size)
        return _Signal(start.g.new_zeros(start.g.shape[0], *self._input_shape(forward)))

    def _input_shape(self, forward: _Forward) -> tuple[int, ...]:
        return tuple(forward.values[self.graph.ops[0].node].shape[1:])

    def _down(self, op: Op, s: _Signal, forward: _Forward, img: torch.Tensor) -> list[tuple[fx.Node, _Signal]]:
        """The signal ``op`` passes to each of its tensor inputs."""
        node, kind, m = op.node, op.kind, op.module
        inputs = self.graph.signal_inputs(op)
        first = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
        if kind in ("lrn", "identity"):
            return [(first, s)]
        if kind in ("relu", "relu6", "activation"):
            return [(first, _Signal(self._rule(s, forward.masks.get(node), img), s.top, s.left))]
        if kind == "gate" and self.policy.gates == "freeze":
            return [self._gate_down(op, s, forward, img)]
        if kind == "norm" and self.policy.norms == "freeze":
            return [(first, self._norm_down(op, _to_full(s, forward.values[node].shape[-2:]), forward, img))]
        if kind in ("gate", "norm"):
            return self._exact_down(op, _to_full(s, forward.values[node].shape[-2:]), forward, img)
        if kind == "bn":
            scale = m.weight / torch.sqrt(m.running_var + m.eps) if m.weight is not None else \
                torch.rsqrt(m.running_var + m.eps)
            return [(first, _Signal(s.g * scale[:, None, None], s.top, s.left))]
        if kind == "add" and not node.kwargs:
            return [(a, s) for a in inputs]
        if kind == "cat" and _cat_dim(node) in (1, -3):
            sizes = [forward.values[a].shape[1] for a in node.args[0]]
            return [(a, _Signal(g, s.top, s.left)) for a, g in zip(node.args[0], s.g.split(sizes, 1))]
        if kind == "conv" and m.padding_mode == "zeros" and not isinstance(m.padding, str):
            return [(first, _conv_down(s, m, forward.values[first].shape[-2:]))]
        if kind == "maxpool":
            return [(first, _unpool(s, maxpool_module(op), forward.switches[node], forward.values[first].shape[-2:],
                                    img))]
        if kind == "avgpool" and s.full is False and _uniform(m):
            return [(first, _avgpool_down(s, m, forward.values[first].shape[-2:]))]
        return self._linear_down(self._chain(op), _to_full(s, forward.values[node].shape[-2:]) if s.g.dim() == 4 else s,
                                 forward)

    def _chain(self, op: Op) -> list[Op]:
        """The ops a linear step replays: a piece of a chunk/split is replayed with the split itself,
        so its signal goes straight to the split tensor's slice (the split's output is a tuple)."""
        source = op.node.args[0] if op.node.target is operator.getitem else None
        if isinstance(source, fx.Node) and self.graph.ops[self.graph.position[source]].kind == "split":
            return [self.graph.ops[self.graph.position[source]], op]
        return [op]

    def _replay(self, chain: list[Op], inputs: list[fx.Node], forward: _Forward):
        """``chain`` as a function of ``inputs``' values, every other argument taken from the forward pass."""
        def replay(*tensors):
            env = {**forward.values, **dict(zip(inputs, tensors))}
            for o in chain:
                args = fx.node.map_arg(o.node.args, env.__getitem__)
                kwargs = fx.node.map_arg(o.node.kwargs, env.__getitem__)
                env[o.node] = self.graph.call(o, args, kwargs)
            return env[chain[-1].node]

        return replay

    def _linear_down(self, chain: list[Op], s: _Signal, forward: _Forward) -> list[tuple[fx.Node, _Signal]]:
        """Autograd's backward of a linear op (flatten, view, slicing, pooling, ``Linear``): its adjoint.

        The op is replayed on the image batch's shapes, because its other arguments (a
        ``view(x.size(0), -1)``'s sizes) were computed for that batch; the n selections' signals
        go through its backward in groups of the batch size (``vmap``).
        """
        inputs = self.graph.signal_inputs(chain[0])
        primals = [torch.zeros_like(forward.values[a]) for a in inputs]
        replay = self._replay(chain, inputs, forward)

        n, batch = s.g.shape[0], primals[0].shape[0]
        groups = -(-n // batch)
        # Zero padding only where n is not a multiple of the batch: concatenating copied every signal
        # (ConvNeXt features.3: 37 -> 34 s). Contiguous, as that copy made it: a permute's adjoint is a view.
        g = s.g.contiguous()
        if groups * batch != n:
            g = torch.cat([g, g.new_zeros(groups * batch - n, *g.shape[1:])])
        g = g.unflatten(0, (groups, batch))
        with torch.enable_grad():
            _, vjp = torch.func.vjp(replay, *primals)
            grads = torch.func.vmap(vjp)(g)
        return [(a, _Signal(grad.flatten(0, 1)[:n])) for a, grad in zip(inputs, grads)]

    def _exact_down(self, op: Op, s: _Signal, forward: _Forward, img: torch.Tensor) -> list[tuple[fx.Node, _Signal]]:
        """The true backward of a nonlinear op (a gate, a norm) at each selection's own image: whole maps."""
        inputs = self.graph.signal_inputs(op)
        primals = [forward.values[a][img] for a in inputs]
        with torch.enable_grad():
            _, vjp = torch.func.vjp(self._replay([op], inputs, forward), *primals)
            grads = vjp(s.g)
        return [(a, _Signal(grad)) for a, grad in zip(inputs, grads)]

    def _gate_down(self, op: Op, s: _Signal, forward: _Forward, img: torch.Tensor) -> tuple[fx.Node, _Signal]:
        """The gated signal scaled by the gate's forward value; nothing goes into the gate's branch."""
        gate = self.graph.gate(op)
        x = next(a for a in op.node.args[:2] if a is not gate)
        value, shape = forward.values[gate], forward.values[x].shape
        if shape == forward.values[op.node].shape:
            return x, _Signal(frozen_gate(s.g, _aligned(value, s, img), divides(op)), s.top, s.left)
        s = _to_full(s, forward.values[op.node].shape[-2:])  # x was broadcast: its signal sums over the copies
        return x, _Signal(frozen_gate(s.g, value[img], divides(op)).sum_to_size(len(img), *shape[1:]))

    def _norm_down(self, op: Op, s: _Signal, forward: _Forward, img: torch.Tensor) -> _Signal:
        """LayerNorm/GroupNorm with σ frozen at each selection's image: the mean subtraction transposed."""
        args = fx.node.map_arg(op.node.args, forward.values.__getitem__)
        kwargs = fx.node.map_arg(op.node.kwargs, forward.values.__getitem__)
        spec = norm_spec(op, args, kwargs)
        return _Signal(frozen_norm_backward(s.g, spec, spec.sigma(args[0])[img]))

    def _rule(self, s: _Signal, mask: torch.Tensor | None, img: torch.Tensor) -> torch.Tensor:
        if mask is not None:
            mask = mask[img] if s.full else _window(mask, img, s.top, s.left, *s.g.shape[-2:])
        return ACTIVATION_RULES[self.rule](s.g, mask)


# ---------------------------------------------------------------- helpers


def _aligned(t: torch.Tensor, s: _Signal, img: torch.Tensor) -> torch.Tensor:
    """A forward value (B, C, H, W), or broadcast (B, C, 1, 1), as each selection's signal sees it."""
    if s.full or t.shape[-2:] == (1, 1):
        return t[img]
    return _window(t, img, s.top, s.left, *s.g.shape[-2:])


def _cat_dim(node: fx.Node) -> int:
    return node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)


def _uniform(m: nn.AvgPool2d) -> bool:
    return m.count_include_pad and m.divisor_override is None


# ---------------------------------------------------------------- windows


def _widen(s: _Signal, size) -> _Signal:
    """Whole maps once a window covers its map: no cropping left to gain."""
    if s.full or s.g.dim() != 4 or s.g.shape[-2] < size[0] or s.g.shape[-1] < size[1]:
        return s
    return _to_full(s, size)


def _to_full(s: _Signal, size) -> _Signal:
    if s.full:
        return s
    out = s.g.new_zeros(*s.g.shape[:2], *size)
    _paste(s, out)
    return _Signal(out)


def _add(a: _Signal, b: _Signal, size) -> _Signal:
    """Two contributions to one node: windows merge into their union where it is the same box shape
    for every selection (branches of one block), else both become whole maps."""
    if not a.full and not b.full:
        dt, dl = a.top - b.top, a.left - b.left
        if bool((dt == dt[0]).all() and (dl == dl[0]).all()):
            top, left = torch.minimum(a.top, b.top), torch.minimum(a.left, b.left)
            h = max(int(a.top[0] - top[0]) + a.g.shape[-2], int(b.top[0] - top[0]) + b.g.shape[-2])
            w = max(int(a.left[0] - left[0]) + a.g.shape[-1], int(b.left[0] - left[0]) + b.g.shape[-1])
            out = a.g.new_zeros(*a.g.shape[:2], h, w)
            for part in (a, b):
                y, x = int(part.top[0] - top[0]), int(part.left[0] - left[0])
                out[..., y:y + part.g.shape[-2], x:x + part.g.shape[-1]] += part.g
            return _widen(_Signal(out, top, left), size)
    a, b = _to_full(a, size), _to_full(b, size)
    return _Signal(a.g + b.g)


def _conv_down(s: _Signal, conv: nn.Conv2d, in_size) -> _Signal:
    """Transposed convolution, no bias: over whole maps sized to the input, or over the full window."""
    st, p, d, k = _pair(conv.stride), _pair(conv.padding), _pair(conv.dilation), _pair(conv.kernel_size)
    subpixel = conv.weight.shape[1] <= _FEW_CHANNELS and st[0] == st[1] > 1 and d == (1, 1) and conv.groups == 1
    if s.full and subpixel:  # as a window at the origin: the sub-pixel form, then cropped (7x7/2 conv1 on whole
        # maps, e.g. ZFNet "map" mode or resnet18 layer4: 0.57 s instead of 1.03 s for 64 maps of 96x110x110)
        origin = torch.zeros(s.g.shape[0], dtype=torch.long)
        return _to_full(_conv_down(_Signal(s.g, origin, origin), conv, in_size), in_size)
    if s.full:
        op = tuple(in_size[i] - ((s.g.shape[-2 + i] - 1) * st[i] - 2 * p[i] + d[i] * (k[i] - 1) + 1) for i in range(2))
        return _Signal(F.conv_transpose2d(s.g, conv.weight, None, st, p, op, conv.groups, d))
    if subpixel:
        g = _subpixel_conv_t(s.g, conv.weight, st[0])
    else:
        g = F.conv_transpose2d(s.g, conv.weight, None, st, 0, 0, conv.groups, d)
    return _crop_to_map(g, s.top * st[0] - p[0], s.left * st[1] - p[1], in_size)


def _avgpool_down(s: _Signal, pool: nn.AvgPool2d, in_size) -> _Signal:
    """The adjoint of a uniform average pool on a window: a depthwise transposed convolution by 1/k²."""
    k, st, p = _pair(pool.kernel_size), _pair(pool.stride or pool.kernel_size), _pair(pool.padding)
    c = s.g.shape[1]
    weight = s.g.new_full((c, 1, *k), 1.0 / (k[0] * k[1]))
    g = F.conv_transpose2d(s.g, weight, None, st, 0, 0, c)
    return _crop_to_map(g, s.top * st[0] - p[0], s.left * st[1] - p[1], in_size)


def _crop_to_map(g: torch.Tensor, top, left, size) -> _Signal:
    """Zero a window's positions outside its map (padding, not input): the only step that can put signal there."""
    h, w = g.shape[-2:]
    if bool((top >= 0).all() and (left >= 0).all() and (top + h <= size[0]).all() and (left + w <= size[1]).all()):
        return _Signal(g, top, left)
    return _Signal(g * _inside(top, left, h, w, size).unsqueeze(1), top, left)


def _unpool(s: _Signal, pool: nn.MaxPool2d, switches: torch.Tensor, in_size, img) -> _Signal:
    """Max-unpooling with the switches; two pooled units that share a switch add their signals."""
    n, c = s.g.shape[:2]
    if s.full:
        sw = switches[img]
        h, w = in_size
        g = s.g.new_zeros(n, c, h * w).scatter_add_(2, sw.flatten(2), s.g.flatten(2))
        return _Signal(g.view(n, c, h, w))
    k, st, p = _pair(pool.kernel_size), _pair(pool.stride or pool.kernel_size), _pair(pool.padding)
    h, w = s.g.shape[-2:]
    nh, nw = (h - 1) * st[0] + k[0], (w - 1) * st[1] + k[1]
    local = _unpool_targets(switches, in_size[1], st, p, nw, img, s.top, s.left, h, w)
    g = s.g.new_zeros(n, c, nh * nw).scatter_add_(2, local.flatten(2), s.g.flatten(2)).view(n, c, nh, nw)
    return _Signal(g, s.top * st[0] - p[0], s.left * st[1] - p[1])


def _subpixel_conv_t(g: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    """``conv_transpose2d(g, weight, stride=stride)`` (no padding) as a stride-1 convolution + pixel shuffle.

    Output pixel ``stride * q + r`` only sees kernel taps ``stride * j + r``, so each of the
    ``stride²`` output phases is an ordinary convolution with a ``ceil(k / stride)`` kernel. Why:
    oneDNN's transposed convolution down to 3 channels (conv1 of ZFNet, into pixel space) runs at a
    fraction of its forward convolution's speed; this form is 1.3x faster there despite 1.3x the MACs.
    """
    c_in, c_out, kh, kw = weight.shape
    jh, jw = -(-kh // stride), -(-kw // stride)
    padded = F.pad(weight, (0, jw * stride - kw, 0, jh * stride - kh))
    phases = padded.view(c_in, c_out, jh, stride, jw, stride).permute(1, 3, 5, 0, 2, 4)  # (c_out, ry, rx, c_in, jy, jx)
    kernel = phases.flip(-1, -2).reshape(c_out * stride * stride, c_in, jh, jw)
    out = F.pixel_shuffle(F.conv2d(g, kernel, padding=(jh - 1, jw - 1)), stride)
    h, w = g.shape[-2:]
    return out[..., : (h - 1) * stride + kh, : (w - 1) * stride + kw]


def _inside(top, left, h, w, size) -> torch.Tensor:
    """(n, h, w) mask of window positions that lie inside a map of ``size``."""
    rows = top[:, None] + torch.arange(h)
    cols = left[:, None] + torch.arange(w)
    return ((rows >= 0) & (rows < size[0]))[:, :, None] & ((cols >= 0) & (cols < size[1]))[:, None, :]


def _window(t: torch.Tensor, img, top, left, h, w) -> torch.Tensor:
    """Windows t[img_i, :, top_i:top_i+h, left_i:left_i+w] for each selection, clamped at the border.

    Positions outside the map repeat the border; callers only use them where the signal is zero.
    """
    rows = (top[:, None] + torch.arange(h)).clamp(0, t.shape[-2] - 1)
    cols = (left[:, None] + torch.arange(w)).clamp(0, t.shape[-1] - 1)
    return t[img[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # (n, C, h, w)


def _unpool_targets(switches, in_width, s, p, nw, img, top, left, h, w) -> torch.Tensor:
    """For each pooled unit of each window, the flat index its switch points to in the unpooled window.

    The switch's offset inside its own window is computed once on the full (small) map, so the
    per-selection work is one gather and one add.
    """
    ho, wo = switches.shape[-2:]
    dy = switches // in_width - (torch.arange(ho) * s[0] - p[0])[:, None]
    dx = switches % in_width - (torch.arange(wo) * s[1] - p[1])[None, :]
    offset = _window(dy * nw + dx, img, top, left, h, w)
    base = (torch.arange(h) * s[0])[:, None] * nw + torch.arange(w) * s[1]
    return offset + base


def _paste(s: _Signal, dest: torch.Tensor) -> None:
    """Add each selection's signal into its image ``dest[i]`` (n, C, H, W), in place.

    Window positions outside the image carry no signal (zeroed after each padded step), so they
    are clamped onto the border and added there as zeros; no padded canvas is needed.
    """
    if s.full:
        dest += s.g
        return
    n, c, h, w = s.g.shape
    size = dest.shape[-2:]
    rows = (s.top[:, None] + torch.arange(h)).clamp(0, size[0] - 1)
    cols = (s.left[:, None] + torch.arange(w)).clamp(0, size[1] - 1)
    dest.permute(0, 2, 3, 1).index_put_((torch.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]),
                                        s.g.permute(0, 2, 3, 1), accumulate=True)
