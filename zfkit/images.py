"""In-memory image datasets, shared by every data source (Fashion-MNIST, photos, scenes).

A module of its own so that :mod:`zfkit.data` and :mod:`zfkit.scenes` both build on it without
importing each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

__all__ = ["DataNotFoundError", "TensorImages", "top_k_hits"]


class DataNotFoundError(FileNotFoundError):
    """Raised when a dataset is in none of the places zfkit looks; the message lists how to add it."""


def missing_debian_file(path, package: str) -> DataNotFoundError:
    """The error for a file that a Debian package installs, naming the command that installs it."""
    return DataNotFoundError(f"{path} is missing: it comes with the Debian package {package}. Install it with "
                             f"`sudo apt-get install {package}` (`make setup` does this when run as root)")


@dataclass
class TensorImages(Dataset):
    """Images (N, C, H, W) float32 with integer labels, indexable like any torch Dataset."""

    images: torch.Tensor
    targets: torch.Tensor
    classes: tuple[str, ...]
    mean: torch.Tensor | None = None  # the mean image that was subtracted (C, H, W), for display
    pixel_range: float = 1.0

    def __post_init__(self):
        if len(self.images) != len(self.targets):
            raise ValueError(f"{len(self.images)} images but {len(self.targets)} labels")

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        return self.images[i], self.targets[i]

    def subset(self, indices: Sequence[int] | torch.Tensor) -> "TensorImages":
        idx = torch.as_tensor(indices, dtype=torch.long)
        return TensorImages(self.images[idx], self.targets[idx], self.classes, self.mean, self.pixel_range)

    def display(self, images: torch.Tensor | None = None) -> torch.Tensor:
        """Undo the mean subtraction and scaling: pixels back in [0, 1] for plotting."""
        x = self.images if images is None else images
        if self.mean is not None:
            x = x + self.mean
        return (x / self.pixel_range).clamp(0, 1)


def top_k_hits(logits: torch.Tensor, correct: Sequence[Sequence[int]], k: int = 5) -> torch.Tensor:
    """For (N, classes) logits: True where one of image i's ``correct[i]`` classes is among its top ``k``.

    A set of correct classes, not one label: ImageNet has near-duplicate classes (tabby, tiger cat).
    """
    top = logits.topk(k, dim=1).indices
    return torch.tensor([bool(set(t.tolist()) & set(c)) for t, c in zip(top, correct)], dtype=torch.bool)
