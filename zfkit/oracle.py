"""An independent reference for :class:`zfkit.deconv.Deconvnet`: autograd with the ReLU rule swapped.

DESIGN §4: backward from the selected unit with every ReLU's backward replaced by the rule
(deconvnet: relu(grad); guided: relu(grad) * mask; gradient: grad * mask) and LRN's by identity.
Max-pool and convolution use PyTorch's own autograd, which the deconvnet engine does not call, so
agreement between the two is evidence, not tautology. It projects one unit per call: slow, exact.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .deconv import Deconvnet
from .layers import resolve


def relu_with(rule: str):
    """A ReLU whose backward is ``rule``'s (deconvnet, guided or gradient); the forward is unchanged."""
    class _Relu(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x > 0)
            return x.clamp(min=0)

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


def rule_step(module: nn.Module, x: torch.Tensor, relu) -> torch.Tensor:
    """One module's forward with the backward the deconvnet walk takes: ``relu`` (from
    :func:`relu_with`) for ReLUs, the identity for LRN and dropout (off at test time)."""
    if isinstance(module, nn.ReLU):
        return relu(x)
    if isinstance(module, nn.LocalResponseNorm):
        return IdentityBackward.apply(x, module)
    if isinstance(module, nn.Dropout):
        return x
    return module(x)


def autograd_projection(model: nn.Module, image: torch.Tensor, index: int, channel: int, mode: str = "max",
                        rule: str = "deconvnet") -> torch.Tensor:
    """Projection of ``channel`` of ``model.features[index]``'s output for one (C, H, W) image."""
    relu = relu_with(rule)
    x = image[None].clone().requires_grad_(True)
    h = x
    for m in list(model.features)[: index + 1]:
        h = rule_step(m, h, relu)
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
    index = resolve(model, layer).index
    cosines = [F.cosine_similarity(ours[b, j].flatten(), autograd_projection(model, images[b], index, c, "max", rule)
                                   .flatten(), dim=0).item()
               for b in range(len(images)) for j, c in enumerate(channels) if ours[b, j].abs().sum() > 0]
    if not cosines:
        raise ValueError("every projection is zero (dead units): pick other images or channels")
    return min(cosines)
