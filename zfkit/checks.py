"""Input checks shared by every analysis entry point, so the same mistake reads the same everywhere.

Analyses take images in model-input space: floating point, finite, with the model's channels (and,
for zfkit models, its size). Checking at the public boundary turns a deep PyTorch shape error into
a message that says what was wrong and how to fix it.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["check_images"]


def check_images(images, model: nn.Module, batched: bool = True) -> None:
    """Raise ValueError unless ``images`` is a finite float (B, C, H, W) batch (or one (C, H, W) image) for ``model``."""
    rank, what = (4, "images must be a batch (B, C, H, W)") if batched else (3, "image must be one (C, H, W) tensor")
    fix = "use x.unsqueeze(0) for one image" if batched else "pass images[i], not a batch"
    if not isinstance(images, torch.Tensor) or images.dim() != rank:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{what}, got {shape}; {fix}")
    if not torch.is_floating_point(images):
        raise ValueError(f"images must be floating point, got {images.dtype}; convert with x.float()")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or infinite pixels; clean or clamp them first")
    weight = next(model.parameters(), None)
    if weight is not None and (images.dtype, images.device) != (weight.dtype, weight.device):
        raise ValueError(f"images are {str(images.dtype).removeprefix('torch.')} on {images.device} but the model's "
                         f"weights are {str(weight.dtype).removeprefix('torch.')} on {weight.device}; convert with "
                         f"images.to(dtype=torch.{str(weight.dtype).removeprefix('torch.')}, device='{weight.device}')")
    channels = images.shape[-3]
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first is not None and channels != first.in_channels:
        raise ValueError(f"images have {channels} channel(s) but the model's first convolution takes "
                         f"{first.in_channels}; convert the images (e.g. grey <-> RGB)")
    size = getattr(model, "input_size", None)
    if isinstance(size, int) and tuple(images.shape[-2:]) != (size, size):
        raise ValueError(f"the model expects {size}x{size} images, got {images.shape[-2]}x{images.shape[-1]}; "
                         f"resize or pad the images to {size}x{size}")
