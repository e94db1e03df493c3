"""Receptive-field arithmetic: which input pixels can influence a unit of a layer.

For a chain of convolutions and poolings with kernel k, stride s and padding p, a unit's field
grows by (k - 1) * jump and the jump multiplies by s (Araujo et al., Distill 2019). ``start`` is the
input coordinate of the centre of unit (0, 0); it can be negative where padding reaches outside.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .layers import resolve

__all__ = ["ReceptiveField", "receptive_field", "receptive_fields"]


@dataclass(frozen=True)
class ReceptiveField:
    """Size, jump and start of a layer's receptive field on the input (square layers)."""

    size: int
    jump: int
    start: float

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right), bottom/right exclusive, of unit (y, x); may extend past the image."""
        half = (self.size - 1) / 2
        top = int(round(self.start + y * self.jump - half))
        left = int(round(self.start + x * self.jump - half))
        return top, left, top + self.size, left + self.size

    def patch(self, image: torch.Tensor, y: int, x: int, fill: float = 0.0) -> torch.Tensor:
        """The (C, size, size) input patch unit (y, x) sees; parts outside the image are ``fill``."""
        if image.dim() != 3:
            raise ValueError(f"patch() takes one image (C, H, W), got shape {tuple(image.shape)}")
        top, left, bottom, right = self.box(y, x)
        out = image.new_full((image.shape[0], self.size, self.size), fill)
        h, w = image.shape[-2:]
        t, l, b, r = max(top, 0), max(left, 0), min(bottom, h), min(right, w)
        if t < b and l < r:
            out[:, t - top:b - top, l - left:r - left] = image[:, t:b, l:r]
        return out


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def receptive_fields(model: nn.Module, input_size: tuple[int, int, int]) -> dict[nn.Module, ReceptiveField]:
    """The receptive field of every leaf module's output of ``model``.

    Layers after ``features`` (fully connected ones) see the whole input: their field is reported as the span of all units of
    the last feature map (which, with padding, can exceed the image).
    """
    size, jump, start = 1, 1, 0.0
    fields: dict[nn.Module, ReceptiveField] = {}
    height = input_size[-1]
    for module in model.features.modules():
        if list(module.children()):
            continue
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k, s, p = (_pair(getattr(module, a))[0] for a in ("kernel_size", "stride", "padding"))
            d = _pair(getattr(module, "dilation", 1))[0]
            k_eff = d * (k - 1) + 1
            start = start + ((k_eff - 1) / 2 - p) * jump
            size, jump = size + (k_eff - 1) * jump, jump * s
            ceil = getattr(module, "ceil_mode", False)
            height = (height + 2 * p - k_eff + (s - 1 if ceil else 0)) // s + 1
        fields[module] = ReceptiveField(size, jump, start)
    span = ReceptiveField(size + (height - 1) * jump, size + (height - 1) * jump, start + (height - 1) * jump / 2)
    for module in model.modules():
        if not list(module.children()) and module not in fields:
            fields[module] = span
    return fields


def receptive_field(model: nn.Module, layer: str | nn.Module, input_size: tuple[int, int, int] | None = None) -> ReceptiveField:
    """Receptive field of ``layer`` (a name like ``"conv5"`` or a module) on the model's input."""
    if input_size is None:
        input_size = (getattr(model, "in_channels", 3), getattr(model, "input_size", 224), getattr(model, "input_size", 224))
    return receptive_fields(model, input_size)[resolve(model, layer).module]
