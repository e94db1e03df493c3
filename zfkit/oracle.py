"""An independent reference for :class:`zfkit.deconv.Deconvnet`: autograd with the ReLU rule swapped.

DESIGN §4: backward from the selected unit with every ReLU's (and ReLU6's) backward replaced by the
rule (deconvnet: relu(grad); guided: relu(grad) * mask; gradient: grad * mask) and LRN's by
identity, on any traceable model. The policies of :mod:`zfkit.policies` are written for autograd,
not with the engine's steps: another activation's backward is swapped for the rule (deconvnet
``relu(g)``, guided ``relu(g)·φ'(x)·[x>0]``; the gradient keeps autograd's), a frozen gate is
detached, a frozen norm is written with σ detached. Everything else (convolution, batch norm,
max-pool, residual addition, concatenation, pooling) uses PyTorch's own autograd, which the
deconvnet's cropped walk does not call, so agreement between the two is evidence, not tautology.
It projects one unit per call: slow, exact.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .deconv import Deconvnet
from .graph import ModelGraph, Op, eval_mode, model_graph
from .policies import Policy, frozen_norm, norm_spec

__all__ = ["relu_with", "activation_with", "rule_forward", "autograd_projection", "agreement"]


def relu_with(rule: str, top: float | None = None):
    """A ReLU (``top=None``) or ReLU6 (``top=6``) whose backward is ``rule``'s; the forward is unchanged."""
    class _Relu(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            mask = (x > 0) if top is None else (x > 0) & (x < top)
            ctx.save_for_backward(mask)
            return x.clamp(min=0) if top is None else x.clamp(0, top)

        @staticmethod
        def backward(ctx, g):
            (mask,) = ctx.saved_tensors
            return {"deconvnet": g.clamp(min=0), "guided": g.clamp(min=0) * mask, "gradient": g * mask}[rule]

    return _Relu.apply


def activation_with(rule: str, phi: Callable[[torch.Tensor], torch.Tensor]):
    """The elementwise activation ``phi`` with the backward ``relu(g)`` (deconvnet) or
    ``relu(g)·φ'(x)·[x>0]`` (guided); the forward is unchanged. (The gradient needs no swap.)"""
    class _Activation(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return phi(x)

        @staticmethod
        def backward(ctx, g):
            if rule == "deconvnet":
                return g.clamp(min=0)
            (x,) = ctx.saved_tensors
            with torch.enable_grad():
                leaf = x.detach().requires_grad_(True)
                y = phi(leaf)
                (slope,) = torch.autograd.grad(y, leaf, torch.ones_like(y))
            return g.clamp(min=0) * slope * (x > 0)

    return _Activation.apply


class IdentityBackward(torch.autograd.Function):
    """A module's forward, the identity backward: LRN is skipped on the way down (the paper's choice)."""

    @staticmethod
    def forward(ctx, x, module):
        return module(x)

    @staticmethod
    def backward(ctx, g):
        return g, None


def rule_forward(model: nn.Module, images: torch.Tensor, layer, rule: str = "deconvnet",
                 **policies) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, h)``: a leaf copy of ``images`` and ``layer``'s output computed from it in eval mode,
    with every ReLU-family backward replaced by ``rule``, LRN's by the identity and other
    activations, gates and norms by ``policies`` (``activations=``, ``gates=``, ``norms=``,
    ``strict=`` as :class:`zfkit.deconv.Deconvnet` takes them); ``h``'s gradient with respect to
    ``x`` is then the rule's projection."""
    graph = model_graph(model)
    target = graph.layer(layer).op
    policy = Policy.of(rule, **policies)
    refusal = policy.refusal(graph, target)
    if refusal:
        raise ValueError(refusal)
    x = images.detach().clone().requires_grad_(True)
    with torch.enable_grad(), eval_mode(model):
        h = graph.run(x, [target], _policy_step(graph, policy))[target.node]
    return x, h


def _policy_step(graph: ModelGraph, policy: Policy) -> Callable:
    """The forward step that swaps each op's backward for the policy's (None: autograd's own)."""
    relu, relu6 = relu_with(policy.rule), relu_with(policy.rule, top=6.0)

    def step(op: Op, args, kwargs):
        if op.kind == "relu":
            return relu(args[0])
        if op.kind == "relu6":
            return relu6(args[0])
        if op.kind == "lrn":
            return IdentityBackward.apply(args[0], op.module)
        if op.kind == "activation" and policy.rule != "gradient":
            return activation_with(policy.rule, lambda t: graph.call(op, (t, *args[1:]), kwargs))(args[0])
        if op.kind == "gate" and policy.gates == "freeze":
            gate = graph.gate(op)
            frozen = [a.detach() if n is gate else a for n, a in zip(op.node.args, args)]
            return graph.call(op, (*frozen, *args[len(frozen):]), kwargs)
        if op.kind == "norm" and policy.norms == "freeze":
            exact, frozen = graph.call(op, args, kwargs), frozen_norm(args[0], norm_spec(op, args, kwargs))
            return exact.detach() + (frozen - frozen.detach())  # the exact value, the frozen-σ backward
        return None

    return step


def autograd_projection(model: nn.Module, image: torch.Tensor, layer, channel: int, mode: str = "max",
                        rule: str = "deconvnet", **policies) -> torch.Tensor:
    """Projection of ``channel`` of ``layer``'s output for one (C, H, W) image (``policies`` as in :func:`rule_forward`)."""
    x, h = rule_forward(model, image[None], layer, rule, **policies)
    a = h[0, channel].flatten()
    if mode == "max":
        pos = a.argmax()
        (a[pos].detach() * a[pos]).backward()
    else:
        (a.detach() * a).sum().backward()
    return x.grad[0]


def agreement(model: nn.Module, images: torch.Tensor, layer, channels, rule: str = "deconvnet", **policies) -> float:
    """The lowest cosine similarity between :class:`zfkit.deconv.Deconvnet` projections (mode "max")
    and this oracle's, over every image and channel whose projection is not all zero: the number a
    chapter reports to show the fast engine computes exactly the modified backward pass."""
    channels = list(channels)
    ours = Deconvnet(model, rule, **policies).project(images, layer, channels=channels)
    cosines = [F.cosine_similarity(ours[b, j].flatten(), autograd_projection(model, images[b], layer, c, "max", rule,
                                                                             **policies).flatten(), dim=0).item()
               for b in range(len(images)) for j, c in enumerate(channels) if ours[b, j].abs().sum() > 0]
    if not cosines:
        raise ValueError("every projection is zero (dead units): pick other images or channels")
    return min(cosines)
