"""Model builders shared by the tests."""

import torch

from zfkit import models


def random_mini(width: float = 0.5, std: float = 0.05, seed: int = 0) -> torch.nn.Module:
    """A ZFNet-mini with N(0, std) weights: activations that are neither dead nor exploding, no training."""
    torch.manual_seed(seed)
    model = models.zfnet_mini(width=width).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, std)
    return model
