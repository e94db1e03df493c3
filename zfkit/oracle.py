"""An independent reference for :class:`zfkit.deconv.Deconvnet`: autograd with the ReLU rule swapped.

DESIGN §4: backward from the selected unit with every ReLU's (and ReLU6's) backward replaced by the
rule (deconvnet: relu(grad); guided: relu(grad) * mask; gradient: grad * mask) and LRN's by
identity, on any traceable model. Everything else (convolution, batch norm, max-pool, residual
addition, concatenation, pooling) uses PyTorch's own autograd, which the deconvnet's cropped
walk does not call, so agreement between the two is evidence, not tautology. It projects one
unit per call: slow, exact.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .deconv import Deconvnet
from .graph import Op, eval_mode, model_graph

__all__ = ["relu_with", "rule_forward", "autograd_projection", "agreement"]


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


class IdentityBackward(torch.autograd.Function):
    """A module's forward, the identity backward: LRN is skipped on the way down (the paper's choice)."""

    @staticmethod
    def forward(ctx, x, module):
        return module(x)

    @staticmethod
    def backward(ctx, g):
        return g, None


def rule_forward(model: nn.Module, images: torch.Tensor, layer, rule: str = "deconvnet") -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, h)``: a leaf copy of ``images`` and ``layer``'s output computed from it in eval mode,
    with every ReLU-family backward replaced by ``rule`` and LRN's by the identity; ``h``'s
    gradient with respect to ``x`` is then the rule's projection."""
    graph = model_graph(model)
    target = graph.layer(layer).op
    relu, relu6 = relu_with(rule), relu_with(rule, top=6.0)

    def step(op: Op, args, kwargs):
        if op.kind == "relu":
            return relu(args[0])
        if op.kind == "relu6":
            return relu6(args[0])
        if op.kind == "lrn":
            return IdentityBackward.apply(args[0], op.module)
        return None

    x = images.detach().clone().requires_grad_(True)
    with torch.enable_grad(), eval_mode(model):
        h = graph.run(x, [target], step)[target.node]
    return x, h


def autograd_projection(model: nn.Module, image: torch.Tensor, layer, channel: int, mode: str = "max",
                        rule: str = "deconvnet") -> torch.Tensor:
    """Projection of ``channel`` of ``layer``'s output for one (C, H, W) image."""
    x, h = rule_forward(model, image[None], layer, rule)
    a = h[0, channel].flatten()
    if mode == "max":
        pos = a.argmax()
        (a[pos].detach() * a[pos]).backward()
    else:
        (a.detach() * a).sum().backward()
    return x.grad[0]


def agreement(model: nn.Module, images: torch.Tensor, layer, channels, rule: str = "deconvnet") -> float:
    """The lowest cosine similarity between :class:`zfkit.deconv.Deconvnet` projections (mode "max")
    and this oracle's, over every image and channel whose projection is not all zero: the number a
    chapter reports to show the fast engine computes exactly the modified backward pass."""
    channels = list(channels)
    ours = Deconvnet(model, rule).project(images, layer, channels=channels)
    cosines = [F.cosine_similarity(ours[b, j].flatten(), autograd_projection(model, images[b], layer, c, "max", rule)
                                   .flatten(), dim=0).item()
               for b in range(len(images)) for j, c in enumerate(channels) if ours[b, j].abs().sum() > 0]
    if not cosines:
        raise ValueError("every projection is zero (dead units): pick other images or channels")
    return min(cosines)
