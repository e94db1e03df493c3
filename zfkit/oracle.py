"""An independent reference for :class:`zfkit.deconv.Deconvnet`: autograd with the ReLU rule swapped.

DESIGN §4: backward from the selected unit with every ReLU's backward replaced by the rule
(deconvnet: relu(grad); guided: relu(grad) * mask; gradient: grad * mask) and LRN's by identity.
Max-pool and convolution use PyTorch's own autograd, which the deconvnet engine does not call, so
agreement between the two is evidence, not tautology. It projects one unit per call: slow, exact.
"""

import torch
from torch import nn


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
