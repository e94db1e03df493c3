"""One traced view of any image CNN, shared by every engine (deconvnet, top-k, occlusion, invariance).

zfkit's engines used to walk ``model.features``, which only torchvision's AlexNet/VGG and zfkit's
own nets have. A ResNet adds its skip connection inside ``forward``, and MobileNet calls
``adaptive_avg_pool2d`` and ``flatten`` as functions, so no module list describes them.
``torch.fx.symbolic_trace`` turns ``forward`` into a list of operations (nodes) whatever the
model's Python structure; it is the tracer torchvision's own ``models.feature_extraction`` is
built on. We use fx directly rather than ``feature_extraction`` because the deconvnet needs every
node, not just a chosen output, and because a tracer of our own records which node each module
call returned, so a *non-leaf* block (``"layer3"``, a residual block, a block that concatenates
branches) can be selected by name, exactly where its ``forward`` returned.

The view knows each node's **kind** (:data:`KINDS`): what the deconvnet does with it on the way
down. In-place operations (``nn.ReLU(inplace=True)``, ``x.relu_()``, ``out += identity``) run
out of place here, so a recorded activation is never overwritten by a later node.
"""

from __future__ import annotations

import difflib
import operator
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from . import lrn
from .inputs import check_input

__all__ = ["Op", "GraphLayer", "ModelGraph", "KINDS", "model_graph", "layer_names", "eval_mode"]

#: Kinds of operation and what the deconvnet does with each on the way down (zfkit.policies names
#: the policies for activations, gates and norms).
KINDS = {
    "input": "the image",
    "conv": "transposed convolution with the same weights, no bias (stride, padding, dilation, groups)",
    "bn": "eval-mode batch norm: its per-channel scale (the affine map, transposed)",
    "relu": "the rule: deconvnet relu(g), guided relu(g)*[x>0], gradient g*[x>0]",
    "relu6": "the rule: deconvnet relu(g), guided relu(g)*[0<x<6], gradient g*[0<x<6]",
    "activation": "another elementwise activation phi (SiLU, GELU, Hardswish, sigmoid, ...): deconvnet relu(g), "
                  "guided relu(g)*phi'(x)*[x>0], gradient g*phi'(x); refused with activations='refuse'",
    "maxpool": "unpool with the forward pass's switches, contributions added (module or F.max_pool2d)",
    "avgpool": "the average pool's adjoint",
    "lrn": "identity (the paper's choice for local response normalisation)",
    "identity": "identity (dropout and stochastic depth are off at test time)",
    "add": "the signal goes to every summand",
    "cat": "each input gets its slice of the signal",
    "split": "chunk/split/unbind: each piece's signal goes back to its slice",
    "scale": "multiplication or division by a constant (layer scale), subtraction: linear",
    "gate": "a product of two signals, one computed from the other (squeeze-excitation's scale * x): the gate "
            "frozen at its forward value (gates='freeze'), the product rule ('gradient') or refused",
    "norm": "LayerNorm / GroupNorm: sigma frozen at its forward value and the mean subtraction transposed "
            "(norms='freeze'), the true gradient ('gradient') or refused",
    "linear": "autograd's backward of the linear map (flatten, view, transpose, slicing, mean, adaptive pooling, "
              "Linear, padding)",
    "check": "an input check; carries no signal",
    "shape": "carries no signal: shape arithmetic (size(), .shape, floordiv), parameters, constants",
    "unsupported": "no agreed deconvnet rule: projecting through it raises ValueError",
}

_IDENTITY_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity)
_IDENTITY_FUNCTIONS = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout}
_LINEAR_MODULES = (nn.Linear, nn.Flatten, nn.AdaptiveAvgPool2d, nn.ZeroPad2d, nn.ConstantPad2d, nn.Unflatten)
_LINEAR_FUNCTIONS = {torch.flatten, torch.reshape, F.adaptive_avg_pool2d, F.pad, F.linear, torch.squeeze,
                     torch.unsqueeze, torch.permute, torch.transpose, F.conv2d, torch.mean, torch.sum,
                     torch.swapaxes, torch.movedim}
_LINEAR_METHODS = {"view", "reshape", "flatten", "mean", "sum", "squeeze", "unsqueeze", "permute", "transpose",
                   "expand", "expand_as", "swapaxes", "movedim"}
_IDENTITY_METHODS = {"contiguous", "clone", "detach", "float", "to"}
_SHAPE_METHODS = {"size", "dim", "numel"}
_SPLIT_FUNCTIONS = {torch.chunk, torch.split, torch.tensor_split, torch.unbind}
_SPLIT_METHODS = {"chunk", "split", "tensor_split", "unbind"}
_ACTIVATION_MODULES = (nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.Mish, nn.ELU, nn.CELU,
                       nn.SELU, nn.LeakyReLU, nn.PReLU, nn.Softplus, nn.Hardtanh, nn.LogSigmoid, nn.Softsign)
_ACTIVATION_FUNCTIONS = {F.silu, F.gelu, F.hardswish, F.hardsigmoid, torch.sigmoid, F.sigmoid, torch.tanh, F.tanh,
                         F.mish, F.elu, F.celu, F.selu, torch.selu, F.leaky_relu, F.prelu, F.softplus, F.hardtanh,
                         F.logsigmoid, F.softsign}
_ACTIVATION_METHODS = {"sigmoid", "tanh"}
_NORM_MODULES = (nn.LayerNorm, nn.GroupNorm)
_NORM_FUNCTIONS = {F.layer_norm, F.group_norm}
_MAXPOOL_FUNCTIONS = {F.max_pool2d, torch.max_pool2d}
_MAXPOOL_ARGS = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_ADD = {operator.add, operator.iadd, torch.add}
_SCALE = {operator.mul, operator.imul, operator.truediv, operator.itruediv, torch.mul, torch.div, operator.neg,
          operator.sub, operator.isub, torch.sub}
_DIVISIONS = {operator.truediv, operator.itruediv, torch.div, "div", "div_"}
_PRODUCTS = {operator.mul, operator.imul, torch.mul, "mul", "mul_", *_DIVISIONS}


@dataclass(frozen=True)
class Op:
    """One node of the traced forward: what it computes and what the deconvnet does with it."""

    index: int
    node: fx.Node
    kind: str
    module: nn.Module | None  # the called module (call_module nodes), else None
    where: str  # the qualified module path the node belongs to, for messages

    def describe(self) -> str:
        """The op as a message names it: ``SiLU module 'features.1.0'`` or ``sigmoid (call_function)``."""
        if self.module is not None:
            return f"{type(self.module).__name__} module {self.node.target!r}"
        return f"{getattr(self.node.target, '__name__', self.node.target)} ({self.node.op})"


@dataclass(frozen=True)
class GraphLayer:
    """A selectable layer: the node whose output holds its activations."""

    name: str
    op: Op


@dataclass
class ModelGraph:
    """``model``'s forward as a list of :class:`Op` in execution order, with its selectable layers."""

    model: nn.Module
    module: fx.GraphModule
    ops: list[Op]
    outputs: dict[str, list[int]]  # qualified module name -> indices of the ops its calls returned
    aliases: dict[str, str] = field(default_factory=dict)  # zfkit paper name -> qualified module name
    position: dict[fx.Node, int] = field(default_factory=dict)  # node -> index in ``ops``
    signal: frozenset = frozenset()  # the nodes that depend on the image (the rest: shapes, parameters)

    def __post_init__(self):
        self.position = {o.node: o.index for o in self.ops}

    # ------------------------------------------------------------ layers

    def names(self) -> list[str]:
        """Every layer name :meth:`layer` accepts, in forward order (paper names first for zfkit nets)."""
        modules = sorted((n for n, calls in self.outputs.items() if len(calls) == 1 and n),
                         key=lambda n: self.outputs[n][0])
        return list(self.aliases) + [n for n in modules if n not in self.aliases.values()]

    def layer(self, layer: str | nn.Module) -> GraphLayer:
        """The layer named ``layer`` (a qualified module name, a zfkit paper name) or given as a module.

        A convolution or linear layer whose only consumer is a ReLU means its *rectified* output
        (the paper's "conv5"; torchvision's AlexNet/VGG rectify in place, so they mean the same).
        """
        if isinstance(layer, nn.Module):
            name = next((n for n, m in self.model.named_modules() if m is layer), None)
            if name is None:
                raise ValueError(f"the module {type(layer).__name__} is not part of this "
                                 f"{type(self.model).__name__}; pass one of its submodules or a layer name")
            label = next((alias for alias, path in self.aliases.items() if path == name), name)
        elif isinstance(layer, str):
            label, name = layer, self.aliases.get(layer, layer)
        else:
            raise ValueError(f"layer must be a layer name or an nn.Module, got {type(layer).__name__}")
        calls = self.outputs.get(name)
        if not calls:
            close = difflib.get_close_matches(label, self.names(), n=5)
            hint = f"close matches: {', '.join(close)}" if close else f"this model's layers: {', '.join(self.names()[:40])}"
            raise ValueError(f"unknown layer {label!r} in {type(self.model).__name__}; {hint}")
        if len(calls) > 1:
            raise ValueError(f"the module {name!r} runs {len(calls)} times in {type(self.model).__name__}.forward, "
                             "so its output is ambiguous; select the block around it instead")
        op = self.ops[calls[0]]
        users = [u for u in op.node.users if u in self.position]
        if op.kind in ("conv", "linear") and isinstance(op.module, (nn.Conv2d, nn.Linear)) and len(users) == 1:
            after = self.ops[self.position[users[0]]]
            if after.kind == "relu":
                op = after
        return GraphLayer(label, op)

    def ancestors(self, op: Op) -> list[Op]:
        """The ops ``op`` depends on, itself included, in execution order."""
        seen = {op.node}
        stack = [op.node]
        while stack:
            for parent in stack.pop().all_input_nodes:
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        return [o for o in self.ops if o.node in seen]

    def signal_inputs(self, op: Op) -> list[fx.Node]:
        """``op``'s inputs that depend on the image: those a signal walks down to."""
        return [a for a in op.node.all_input_nodes if a in self.signal]

    def gate(self, op: Op) -> fx.Node | None:
        """A gate op's gate: the factor computed from the other (squeeze-excitation's ``scale`` in
        ``scale * x``), or None when neither factor is computed from the other or the gate would be a
        numerator (``f(x) / x`` is no scaling of x)."""
        a, b = (list(op.node.args[:2]) + [None, None])[:2]
        if not (isinstance(a, fx.Node) and isinstance(b, fx.Node)) or a is b:
            return None
        below_b = {o.node for o in self.ancestors(self.ops[self.position[b]])}
        below_a = {o.node for o in self.ancestors(self.ops[self.position[a]])}
        gate = b if a in below_b and b not in below_a else a if b in below_a and a not in below_b else None
        return None if gate is a and divides(op) else gate

    # ------------------------------------------------------------ execution

    def run(self, images: torch.Tensor, until: Sequence[Op], step: Callable | None = None,
            keep: bool = True) -> dict[fx.Node, object]:
        """Run the forward pass as far as ``until`` needs; every computed node's value, by node.

        ``step(op, args, kwargs)`` may compute an op itself (return its output) or return None for
        the default; engines use it to record switches and masks, the oracle to swap backwards.
        ``keep=False`` frees each value once the last op that reads it has run, as a plain forward
        pass does, and returns ``until``'s values only: a batch then holds a few layers at a time.
        """
        needed: set[fx.Node] = set()
        for target in until:
            needed.update(o.node for o in self.ancestors(target))
        env: dict[fx.Node, object] = {}
        last = max(self.position[n] for n in (t.node for t in until))
        ops = [op for op in self.ops[: last + 1] if op.node in needed]
        last_reader = {} if keep else {a: op.node for op in ops for a in op.node.all_input_nodes}
        wanted = {t.node for t in until}
        for op in ops:
            args = fx.node.map_arg(op.node.args, env.__getitem__)
            kwargs = fx.node.map_arg(op.node.kwargs, env.__getitem__)
            out = step(op, args, kwargs) if step is not None else None
            env[op.node] = self._execute(op, args, kwargs, images) if out is None else out
            for a in op.node.all_input_nodes:
                if last_reader.get(a) is op.node and a not in wanted:
                    del env[a]
        return env

    def call(self, op: Op, args, kwargs):
        """``op`` applied to ``args`` out of place: what the deconvnet's generic linear steps replay."""
        return self._execute(op, args, kwargs, None)

    def _execute(self, op: Op, args, kwargs, images):
        node = op.node
        if node.op == "placeholder":
            return images
        if node.op == "get_attr":
            return _fetch(self.module, node.target)
        if node.op == "call_module":
            if op.kind in ("relu", "relu6"):
                return _relu_like(op.module)(args[0])
            if getattr(op.module, "inplace", False):  # nn.SiLU(inplace=True) would overwrite a recorded value
                args = (args[0].clone(), *args[1:])
            return op.module(*args, **kwargs)
        if node.op == "call_function":
            if op.kind == "identity":  # functional dropout, stochastic depth: traced with a fixed `training`
                return args[0]
            target = _OUT_OF_PLACE.get(node.target, node.target)
            if "inplace" in kwargs:
                kwargs = {**kwargs, "inplace": False}
            return target(*args, **kwargs)
        if node.op == "call_method":
            name = node.target
            if name.endswith("_") and not name.endswith("__") and hasattr(torch.Tensor, name[:-1]):
                name = name[:-1]
            return getattr(args[0], name)(*args[1:], **kwargs)
        raise AssertionError(f"unexpected fx node {node.op}")


_OUT_OF_PLACE = {operator.iadd: operator.add, operator.imul: operator.mul, operator.isub: operator.sub,
                 operator.itruediv: operator.truediv, torch.relu_: torch.relu}


def divides(op: Op) -> bool:
    """Whether a scale or gate op divides (its second argument is the divisor)."""
    return op.node.target in _DIVISIONS


def maxpool_module(op: Op) -> nn.MaxPool2d:
    """A max-pool op's geometry as an ``nn.MaxPool2d``: the module itself, or one built from
    ``F.max_pool2d``'s constant arguments (Inception calls it as a function)."""
    if op.module is not None:
        return op.module
    call = {**dict(zip(_MAXPOOL_ARGS, op.node.args)), **op.node.kwargs}
    return nn.MaxPool2d(call["kernel_size"], call.get("stride") or None, call.get("padding", 0),
                        call.get("dilation", 1), ceil_mode=call.get("ceil_mode", False))


def _relu_like(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    if isinstance(module, nn.ReLU):
        return F.relu
    return lambda x: F.hardtanh(x, 0.0, 6.0)


def _fetch(root: nn.Module, target: str):
    value = root
    for part in target.split("."):
        value = getattr(value, part)
    return value


# ---------------------------------------------------------------- tracing


class _Tracer(fx.Tracer):
    """fx's tracer, with LRN kept whole and every module call's returned node recorded by name."""

    def __init__(self):
        super().__init__(autowrap_functions=(check_input,))
        self.returned: dict[str, list[fx.Node]] = {}

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (lrn.LocalResponseNorm, nn.LocalResponseNorm)) or super().is_leaf_module(m, qualname)

    def call_module(self, m: nn.Module, forward, args, kwargs):
        out = super().call_module(m, forward, args, kwargs)
        if isinstance(out, fx.Proxy):
            self.returned.setdefault(self.path_of_module(m), []).append(out.node)
        return out


def _kind(node: fx.Node, module: nn.Module | None) -> str:
    if node.op == "placeholder":
        return "input"
    if node.op in ("get_attr", "output"):
        return "shape"
    if node.op == "call_module":
        return _module_kind(module)
    if node.op == "call_function":
        return _function_kind(node)
    return _method_kind(node)


def _module_kind(m: nn.Module) -> str:
    if isinstance(m, nn.Conv2d):
        return "conv"
    if isinstance(m, nn.BatchNorm2d):
        return "bn"
    if isinstance(m, nn.ReLU):
        return "relu"
    if isinstance(m, nn.ReLU6) or (isinstance(m, nn.Hardtanh) and (m.min_val, m.max_val) == (0.0, 6.0)):
        return "relu6"
    if isinstance(m, nn.MaxPool2d):
        return "maxpool" if _pair(m.dilation) == (1, 1) and not m.return_indices else "unsupported"
    if isinstance(m, nn.AvgPool2d):
        return "avgpool"
    if isinstance(m, (nn.LocalResponseNorm, lrn.LocalResponseNorm)):
        return "lrn"
    if isinstance(m, _IDENTITY_MODULES):
        return "identity"
    if isinstance(m, _LINEAR_MODULES):
        return "linear"
    if isinstance(m, _ACTIVATION_MODULES):
        return "activation"
    if isinstance(m, _NORM_MODULES):
        return "norm"
    return "unsupported"


def _function_kind(node: fx.Node) -> str:
    t = node.target
    if t is check_input:
        return "check"
    if t in (F.relu, torch.relu, torch.relu_):
        return "relu"
    if t is F.relu6 or (t is F.hardtanh and _hardtanh_range(node) == (0.0, 6.0)):
        return "relu6"
    if t is F.avg_pool2d:
        return "linear"
    if t in _MAXPOOL_FUNCTIONS:
        return "maxpool" if _constant_pool(node) else "unsupported"
    if t in _IDENTITY_FUNCTIONS or _is_stochastic_depth(t):
        return "identity"
    if t in _ACTIVATION_FUNCTIONS:
        return "activation"
    if t in _NORM_FUNCTIONS:
        return "norm"
    if t in _SPLIT_FUNCTIONS:
        return "split"
    if t in _ADD:
        return "add"
    if t is torch.cat:
        return "cat"
    if t in _SCALE:
        return "scale"
    if t in _LINEAR_FUNCTIONS:
        return "linear"
    if t is operator.getitem:  # slicing a tensor (linear) or indexing a size (no signal)
        return "linear"
    if t is getattr:
        return "shape"
    return "unsupported"


def _constant_pool(node: fx.Node) -> bool:
    """``F.max_pool2d`` with constant geometry, no dilation and no indices returned: unpoolable."""
    call = {**dict(zip(_MAXPOOL_ARGS, node.args)), **node.kwargs}
    constant = not any(isinstance(v, fx.Node) for k, v in call.items() if k != "input")
    return constant and _pair(call.get("dilation", 1)) == (1, 1) and not call.get("return_indices", False)


def _is_stochastic_depth(t) -> bool:
    """torchvision's ``stochastic_depth`` (fx-wrapped, so a call_function): the identity in eval."""
    return getattr(t, "__name__", None) == "stochastic_depth" and getattr(t, "__module__", "").startswith("torchvision")


def _hardtanh_range(node: fx.Node) -> tuple:
    """``F.hardtanh``'s (min_val, max_val), given by position or, as fx records them, by keyword."""
    low = node.kwargs.get("min_val", node.args[1] if len(node.args) > 1 else -1.0)
    high = node.kwargs.get("max_val", node.args[2] if len(node.args) > 2 else 1.0)
    return (low, high)


def _method_kind(node: fx.Node) -> str:
    name = node.target.rstrip("_") if not node.target.endswith("__") else node.target
    if name == "relu":
        return "relu"
    if name in _ACTIVATION_METHODS:
        return "activation"
    if name in _SPLIT_METHODS:
        return "split"
    if name in _SHAPE_METHODS:
        return "shape"
    if name in _IDENTITY_METHODS:
        return "identity"
    if name == "add":
        return "add"
    if name in ("mul", "div", "sub", "neg"):
        return "scale"
    if name in _LINEAR_METHODS:
        return "linear"
    return "unsupported"


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _where(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    paths = [path for path, _ in stack.values()]
    return paths[-1] if paths else "forward"


def _trace(model: nn.Module) -> ModelGraph:
    tracer = _Tracer()
    try:
        graph = tracer.trace(model)
    except Exception as err:  # fx raises many types; the fix is the same
        raise ValueError(
            f"zfkit cannot trace {type(model).__name__} with torch.fx ({type(err).__name__}: {err}). "
            "zfkit needs a forward without data-dependent Python control flow; wrap such code in a "
            "submodule (kept whole) or pass the traceable backbone (e.g. model.features)") from err
    module = fx.GraphModule(model, graph)
    ops, signal = [], set()
    for node in graph.nodes:
        if node.op == "output":
            continue
        sub = module.get_submodule(node.target) if node.op == "call_module" else None
        kind = _signal_kind(node, _kind(node, sub), signal)
        ops.append(Op(len(ops), node, kind, sub, _where(node) if sub is None else node.target))
    index = {o.node: o.index for o in ops}
    outputs = {name: [index[n] for n in nodes if n in index] for name, nodes in tracer.returned.items()}
    return ModelGraph(model, module, ops, outputs, _paper_names(model), signal=frozenset(signal))


def _signal_kind(node: fx.Node, kind: str, signal: set[fx.Node]) -> str:
    """``kind`` refined by what depends on the image (added to ``signal``): an op none of whose inputs
    does carries no signal (``x.size(1) // 2``, a layer-scale parameter); a product of two signals is a gate."""
    if kind == "input":
        signal.add(node)
        return kind
    carried = sum(a in signal for a in node.all_input_nodes)
    if not carried or kind in ("check", "shape"):
        return "check" if kind == "check" else "shape"
    signal.add(node)
    if kind == "scale" and node.target in _PRODUCTS and sum(a in signal for a in node.args[:2]
                                                            if isinstance(a, fx.Node)) > 1:
        return "gate"  # x * x counts twice: a square is no more linear than a gate
    return kind


def _paper_names(model: nn.Module) -> dict[str, str]:
    """zfkit nets' layer names (``conv5``, ``fc7``) -> qualified module names (``features.conv5``)."""
    aliases = {}
    for part in ("features", "classifier"):
        seq = getattr(model, part, None)
        if isinstance(seq, nn.Sequential) and not all(n.isdigit() for n, _ in seq.named_children()):
            aliases.update({name: f"{part}.{name}" for name, _ in seq.named_children()})
    return aliases


_GRAPHS: "weakref.WeakKeyDictionary[nn.Module, tuple[int, ModelGraph]]" = weakref.WeakKeyDictionary()


def model_graph(model: nn.Module) -> ModelGraph:
    """The traced view of ``model``, traced once and reused while its module tree is unchanged."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"expected an nn.Module, got {type(model).__name__}")
    signature = hash(tuple((n, id(m)) for n, m in model.named_modules()))
    cached = _GRAPHS.get(model)
    if cached is None or cached[0] != signature:
        cached = (signature, _trace(model))
        _GRAPHS[model] = cached
    return cached[1]


def layer_names(model: nn.Module) -> list[str]:
    """The layer names zfkit's engines accept for ``model``, in forward order."""
    return model_graph(model).names()


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for an analysis (dropout off, batch norm's running statistics), the caller's mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
