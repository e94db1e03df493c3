"""Named policies: what a projection does at ops the paper's deconvnet never met.

The paper's networks have convolutions, ReLUs, max-pools and LRN; modern ones add smooth
activations (SiLU, GELU, Hardswish), squeeze-excitation *gates* (a product of two signals, one
computed from the other) and LayerNorm/GroupNorm. None has an agreed deconvnet rule, so each gets a
short, named policy here, chosen per :class:`zfkit.deconv.Deconvnet` (and :mod:`zfkit.oracle`, which
implements the same ones with autograd):

========================  ==========================  ==========================  ====================
op                        ``rule="deconvnet"``        ``rule="guided"``           ``rule="gradient"``
========================  ==========================  ==========================  ====================
ReLU, ReLU6               ``relu(g)``                 ``relu(g)·φ'(x)``           ``g·φ'(x)``
other activation φ        ``relu(g)``                 ``relu(g)·φ'(x)·[x>0]``     ``g·φ'(x)``
gate ``s(x)·x``           ``g·s`` (s frozen)          ``g·s`` (s frozen)          product rule
LayerNorm, GroupNorm      σ frozen, mean transposed   σ frozen, mean transposed   true gradient
========================  ==========================  ==========================  ====================

- ``activations="rule"`` (default) applies the rule's column at every elementwise activation. The
  deconvnet's rectification never looks at the forward pass, so ``relu(g)`` is its direct
  generalisation; guided backpropagation keeps the activation's slope where its input is positive
  (for ReLU and ReLU6, ``φ'(x)·[x>0]`` is Springenberg et al.'s mask exactly).
- ``gates="freeze"`` holds the gate at its forward value: the gated signal is scaled, nothing flows
  into the gate's branch (CP-LRP's treatment of gates). The gate is the factor computed *from* the
  other one; ``"gradient"`` takes the product rule instead.
- ``norms="freeze"`` holds the normalising σ at its forward value; what is left, subtracting the
  mean and scaling, is linear and is transposed: ``h = g·w/σ``, then ``h - mean(h)``.
- Each also takes ``"refuse"``; ``strict=True`` refuses all three, as zfkit did before policies.

The table's gate and norm cells are each rule's defaults; ``gates=`` and ``norms=`` pick
``"freeze"`` or ``"gradient"`` under any rule. Still refused, whatever the policy: an op zfkit
cannot transpose (a softmax, an interpolation, a data-dependent max-pool; kind ``"unsupported"`` in
:data:`zfkit.graph.KINDS`), with ``Deconvnet cannot reverse <op> in '<module>': it has no agreed
deconvnet rule and no policy ...``; projecting a layer below it still works.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from .graph import KINDS, ModelGraph, Op

__all__ = ["RULES", "Policy", "rectified", "guided", "gradient", "ACTIVATION_RULES", "slope_factor", "frozen_gate",
           "NormSpec", "norm_spec", "frozen_norm_backward", "frozen_norm"]

RULES = ("deconvnet", "guided", "gradient")
_CHOICES = {"activations": ("rule", "refuse"), "gates": ("freeze", "gradient", "refuse"),
            "norms": ("freeze", "gradient", "refuse")}
_FORMULA = {"deconvnet": "relu(g)", "guided": "relu(g)·φ'(x)·[x>0]", "gradient": "g·φ'(x)"}


# ---------------------------------------------------------------- activation rules: g -> the signal below


def rectified(g: torch.Tensor, factor: torch.Tensor | None) -> torch.Tensor:
    """Deconvnet: ``relu(g)``, whatever the forward pass did (§2.1)."""
    return g.clamp(min=0)


def guided(g: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Guided backpropagation: ``relu(g)·φ'(x)·[x>0]`` (``factor`` holds ``φ'(x)·[x>0]``)."""
    return g.clamp(min=0) * factor


def gradient(g: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """The gradient: ``g·φ'(x)`` (``factor`` holds ``φ'(x)``)."""
    return g * factor


ACTIVATION_RULES = {"deconvnet": rectified, "guided": guided, "gradient": gradient}


def slope_factor(rule: str, x: torch.Tensor, slope: torch.Tensor) -> torch.Tensor | None:
    """What ``rule`` keeps from the forward pass at an activation with input ``x`` and slope ``φ'(x)``."""
    if rule == "deconvnet":
        return None
    return slope * (x > 0) if rule == "guided" else slope


def frozen_gate(g: torch.Tensor, gate: torch.Tensor, divides: bool) -> torch.Tensor:
    """The signal below ``x·s`` (or ``x/s``) with the gate ``s`` held at its forward value."""
    return g / gate if divides else g * gate


# ---------------------------------------------------------------- LayerNorm / GroupNorm with σ frozen


@dataclass(frozen=True)
class NormSpec:
    """Where a norm normalises: the trailing ``dims`` dims (layer norm) or ``groups`` of channels (group norm)."""

    dims: int
    groups: int | None
    weight: torch.Tensor | None
    bias: torch.Tensor | None
    eps: float

    def grouped(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` viewed so that its last dim holds one normalisation's elements."""
        return t.flatten(-self.dims) if self.groups is None else t.reshape(t.shape[0], self.groups, -1)

    def sigma(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(self.grouped(x).var(-1, unbiased=False, keepdim=True) + self.eps)

    def scale(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` times the affine weight (per normalised element, or per channel for group norm)."""
        return t if self.weight is None else t * self._along(self.weight, t)

    def affine(self, t: torch.Tensor) -> torch.Tensor:
        t = self.scale(t)
        return t if self.bias is None else t + self._along(self.bias, t)

    def _along(self, p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """An affine parameter shaped to broadcast over ``t``."""
        return p if self.groups is None else p.view(-1, *[1] * (t.dim() - 2))


def norm_spec(op: Op, args: tuple, kwargs: dict) -> NormSpec:
    """The :class:`NormSpec` of a ``norm`` op from its resolved arguments (module or functional call)."""
    m = op.module
    if isinstance(m, nn.LayerNorm):
        return NormSpec(len(m.normalized_shape), None, m.weight, m.bias, m.eps)
    if isinstance(m, nn.GroupNorm):
        return NormSpec(0, m.num_groups, m.weight, m.bias, m.eps)
    names = ("input", "normalized_shape" if op.node.target is F.layer_norm else "num_groups", "weight", "bias", "eps")
    call = {**dict(zip(names, args)), **kwargs}
    weight, bias, eps = call.get("weight"), call.get("bias"), call.get("eps", 1e-5)
    if op.node.target is F.layer_norm:
        return NormSpec(len(call["normalized_shape"]), None, weight, bias, eps)
    return NormSpec(0, call["num_groups"], weight, bias, eps)


def frozen_norm_backward(g: torch.Tensor, spec: NormSpec, sigma: torch.Tensor) -> torch.Tensor:
    """The signal below a norm whose σ is frozen: ``h = g·w/σ``, then ``h - mean(h)`` (the centring is symmetric)."""
    h = spec.grouped(spec.scale(g)) / sigma
    return (h - h.mean(-1, keepdim=True)).reshape(g.shape)


def frozen_norm(x: torch.Tensor, spec: NormSpec) -> torch.Tensor:
    """The norm written with σ detached: autograd's backward of this is the frozen-σ policy (the oracle's form)."""
    xs = spec.grouped(x)
    return spec.affine(((xs - xs.mean(-1, keepdim=True)) / spec.sigma(x).detach()).reshape(x.shape))


# ---------------------------------------------------------------- the policy


@dataclass(frozen=True)
class Policy:
    """A rule and the named policy for each op kind the paper's deconvnet has no rule for."""

    rule: str = "deconvnet"
    activations: str = "rule"
    gates: str = "freeze"
    norms: str = "freeze"

    @classmethod
    def of(cls, rule: str = "deconvnet", activations: str | None = None, gates: str | None = None,
           norms: str | None = None, strict: bool = False) -> Policy:
        """Validated, with the defaults: ``strict`` refuses everything; ``rule="gradient"`` is the true
        gradient (gates and norms by the product rule); else gates and σ frozen."""
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
        if not isinstance(strict, bool):
            raise ValueError(f"strict must be True or False, got {strict!r}")
        exact = "gradient" if rule == "gradient" else "freeze"
        default = {"activations": "refuse" if strict else "rule", "gates": "refuse" if strict else exact,
                   "norms": "refuse" if strict else exact}
        given = {"activations": activations, "gates": gates, "norms": norms}
        for name, value in given.items():
            if value is not None and value not in _CHOICES[name]:
                raise ValueError(f"unknown {name} policy {value!r}; choose one of {', '.join(_CHOICES[name])} "
                                 "(zfkit.policies explains each)")
        return cls(rule, **{k: default[k] if v is None else v for k, v in given.items()})

    # ------------------------------------------------------------ what a walk down meets

    def reached(self, graph: ModelGraph, target: Op) -> list[Op]:
        """The ops a projection from ``target`` carries signal through, in execution order: frozen
        gates' branches and ops that carry no signal (shape arithmetic, parameters) are not reached."""
        seen, stack = {target.node}, [target]
        while stack:
            op = stack.pop()
            for parent in self._signal_inputs(graph, op):
                if parent not in seen:
                    seen.add(parent)
                    stack.append(graph.ops[graph.position[parent]])
        return [o for o in graph.ops if o.node in seen]

    def _signal_inputs(self, graph: ModelGraph, op: Op) -> list[fx.Node]:
        inputs = graph.signal_inputs(op)
        if op.kind == "gate" and self.gates == "freeze":
            gate = graph.gate(op)
            return [a for a in inputs if a is not gate] if gate is not None else inputs
        return inputs

    def refusal(self, graph: ModelGraph, target: Op) -> str | None:
        """Why a projection from ``target`` is refused under this policy, or None."""
        for op in self.reached(graph, target):
            why = self._refuses(graph, op)
            if why:
                return f"Deconvnet cannot reverse {op.describe()} in {op.where!r}: {why}"
        return None

    def _refuses(self, graph: ModelGraph, op: Op) -> str | None:
        if op.kind == "unsupported":
            walkable = ", ".join(k for k in KINDS if k not in ("input", "check", "shape", "unsupported"))
            return (f"it has no agreed deconvnet rule and no policy. Supported on the way down: {walkable} "
                    "(zfkit.graph.KINDS says how each is reversed); project a layer below it")
        if op.kind == "activation" and self.activations == "refuse":
            return (f"it has no agreed deconvnet rule and activations='refuse' passes only ReLU and ReLU6; pass "
                    f"activations='rule' to apply {_FORMULA[self.rule]} at every elementwise activation")
        if op.kind == "gate" and self.gates == "refuse":
            return ("it multiplies two signals (a gate, e.g. squeeze-excitation), which has no agreed deconvnet rule "
                    "and gates='refuse'; pass gates='freeze' (the gate held at its forward value) or 'gradient'")
        if op.kind == "gate" and self.gates == "freeze" and graph.gate(op) is None:
            return ("it multiplies two signals, neither computed from the other (or divides by the signal), so "
                    "there is no gate to freeze; pass gates='gradient' for the product rule")
        if op.kind == "norm" and self.norms == "refuse":
            return ("it normalises by a statistic of its input, which has no agreed deconvnet rule and "
                    "norms='refuse'; pass norms='freeze' (σ held at its forward value) or 'gradient'")
        return None

    def caption(self, graph: ModelGraph, target: Op) -> str:
        """What a figure of a projection from ``target`` says about how it was made: empty for the
        paper's deconvnet (rule deconvnet, nothing but ReLU-family activations reached), else the
        rule and each policy that acted, e.g. ``"deconvnet; SiLU: relu(g); 16 gates frozen"``."""
        ops = self.reached(graph, target)
        names = sorted({_op_name(o) for o in ops if o.kind == "activation"})
        gates = sum(o.kind == "gate" for o in ops)
        norms = sorted({_op_name(o) for o in ops if o.kind == "norm"})
        parts = [f"{', '.join(names)}: {_FORMULA[self.rule]}"] if names else []
        if gates:
            how = "frozen" if self.gates == "freeze" else "by the product rule"
            parts.append(f"{gates} gate{'s' * (gates > 1)} {how}")
        if norms:
            parts.append(f"{', '.join(norms)} {'σ frozen' if self.norms == 'freeze' else 'true gradient'}")
        if not parts and self.rule == "deconvnet":
            return ""
        return "; ".join([self.rule, *parts])


def _op_name(op: Op) -> str:
    """``SiLU`` for a module, ``sigmoid`` for a function or method: how a caption names an op."""
    if op.module is not None:
        return type(op.module).__name__
    return getattr(op.node.target, "__name__", str(op.node.target)).rstrip("_")
