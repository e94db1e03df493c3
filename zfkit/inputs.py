"""Checking an image batch against what a network expects, with a message that says the fix.

Its own module below :mod:`zfkit.models` and :mod:`zfkit.graph`: the zfkit nets call it in their
``forward``, and the traced view keeps it as one opaque call.
"""

from __future__ import annotations

import torch

__all__ = ["check_input"]


def check_input(x: torch.Tensor, channels: int, size: int, what: str = "model") -> None:
    """Raise a ValueError that says what the model expects when ``x`` does not fit it."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{what} expects a torch.Tensor of shape (B, {channels}, {size}, {size}), got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(
            f"{what} expects a batch of shape (B, {channels}, {size}, {size}), got shape {tuple(x.shape)}; "
            "add a batch dimension with x.unsqueeze(0) for a single image"
        )
    if x.shape[1] != channels:
        raise ValueError(
            f"{what} expects {channels} input channel(s), got {x.shape[1]} (shape {tuple(x.shape)}); "
            f"build the model with in_channels={x.shape[1]} or convert the images"
        )
    if tuple(x.shape[-2:]) != (size, size):
        raise ValueError(
            f"{what} expects {size}x{size} images, got {x.shape[-2]}x{x.shape[-1]}; "
            f"resize or pad the images to {size}x{size} (zfkit.data pads Fashion-MNIST's 28x28 to 32x32)"
        )
    if not torch.is_floating_point(x):
        raise ValueError(f"{what} expects floating-point images, got dtype {x.dtype}; convert with x.float()")
