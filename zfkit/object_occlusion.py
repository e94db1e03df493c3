"""Occlusion against the object's exact outline: covering the object versus the same area of background.

Section 4.2 slides a grey square and reads where p(correct) drops. Whether the model "localises
the object, not the context" needs a reference, because hiding part of a picture may hurt
anywhere: the reference here is the same grey shape, of the same area, moved onto the background.
With scenes (:func:`zfkit.data.scenes`) the object's mask is exact, so each scene gives one
paired comparison in three forward passes, cheap enough for hundreds of objects. The boxes of
:func:`zfkit.data.photos` give the coarser, square-sweep version (:func:`box_mask`,
:func:`background_drop`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import verdicts

__all__ = ["box_mask", "background_drop", "object_contrast", "moved_mask", "CoverResult", "cover_object"]


def box_mask(box: Sequence[int], size: int | tuple[int, int] = 224) -> torch.Tensor:
    """The (H, W) boolean mask of an [x0, y0, x1, y1] box (end exclusive), as ``photos.boxes`` gives it."""
    h, w = (size, size) if isinstance(size, int) else size
    x0, y0, x1, y1 = (int(v) for v in box)
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise ValueError(f"box {list(box)} must lie inside the {h}x{w} image with x0 < x1, y0 < y1")
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


def background_drop(result, mask: torch.Tensor) -> tuple[float, float] | None:
    """p(correct)'s mean loss, as a share of the unoccluded p, with a square sweep's occluder centred on
    the object (its centre pixel inside ``mask``) and with it centred on the background.

    The occluder's centre, not its overlap, decides the side, so that a thin object (24 px wide
    under a 56 px square) counts as covered when the square sits on it. None when either side has
    no position (a box filling the frame leaves no background).
    """
    centre = result.patch // 2
    on_object = mask[(result.ys + centre)[:, None], (result.xs + centre)[None, :]]
    if bool(on_object.all()) or not bool(on_object.any()):
        return None
    base = result.base_prob
    loss = 1 - result.prob.double() / base if base > 0 else torch.zeros_like(result.prob, dtype=torch.float64)
    return float(loss[on_object].mean()), float(loss[~on_object].mean())


def object_contrast(drops: Sequence[tuple[float, float] | None]) -> tuple[float, float, int, bool | None]:
    """Over the images with both kinds of position: mean (loss on object − loss on background), its
    standard error, the number of images, and the verdict "covering the object costs more": beyond
    Student's t for that number of images times the standard error."""
    diffs = [a - b for a, b in (d for d in drops if d is not None)]
    if len(diffs) < 2:
        raise ValueError(f"object_contrast needs at least 2 images with object and background positions, got {len(diffs)}")
    mean, se = float(np.mean(diffs)), verdicts.standard_error(diffs)
    return mean, se, len(diffs), verdicts.exceeds(mean, 0, se, verdicts.k_for(len(diffs)))


def moved_mask(mask: torch.Tensor, seed: int = 0) -> torch.Tensor | None:
    """``mask``'s shape translated to where it overlaps neither itself nor the frame's edge: the same
    area of background. Among the translations that fit, one is drawn with ``seed`` (so the
    reference does not always sit in one corner). None when the object leaves no room.

    The overlap of every translation at once is the mask's autocorrelation (one FFT).
    """
    h, w = mask.shape
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if len(ys) == 0:
        raise ValueError("the mask is empty: there is no object to move")
    m = mask.double()
    spectrum = torch.fft.rfft2(m, s=(2 * h, 2 * w))
    overlap = torch.fft.irfft2(spectrum.conj() * spectrum, s=(2 * h, 2 * w))  # [dy, dx], negative shifts wrapped
    dy = torch.arange(2 * h).view(-1, 1)
    dx = torch.arange(2 * w).view(1, -1)
    dy, dx = torch.where(dy < h, dy, dy - 2 * h), torch.where(dx < w, dx, dx - 2 * w)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    fits = (overlap < 0.5) & (dy >= -y0) & (dy <= h - y1) & (dx >= -x0) & (dx <= w - x1)
    candidates = torch.nonzero(fits)
    if len(candidates) == 0:
        return None
    row, col = candidates[int(np.random.default_rng(seed).integers(len(candidates)))].tolist()
    moved = torch.zeros_like(mask)
    moved[ys + int(dy[row, 0]), xs + int(dx[0, col])] = True
    return moved


@dataclass(frozen=True)
class CoverResult:
    """Per image: p(target) as it is, with the object covered, and with the moved shape covering background
    (NaN where the object left no room); ``reference`` holds those moved shapes (N, H, W), empty where
    there was no room. ``fill`` is the grey value used, in model-input space."""

    base: torch.Tensor
    on_object: torch.Tensor
    on_background: torch.Tensor
    reference: torch.Tensor
    fill: float

    def losses(self) -> list[tuple[float, float] | None]:
        """Per image, the share of p(target) lost covering the object and covering the background
        (None where there was no room), the pairs :func:`object_contrast` reads."""
        out = []
        for b, o, g in zip(self.base.tolist(), self.on_object.tolist(), self.on_background.tolist()):
            out.append(None if np.isnan(g) or b <= 0 else (1 - o / b, 1 - g / b))
        return out

    def records(self) -> dict[str, list[float | None]]:
        """The three probabilities per image as JSON-ready lists (None where there was no room)."""
        plain = lambda t: [None if np.isnan(v) else v for v in t.tolist()]  # noqa: E731
        return {"base_p": plain(self.base), "object_covered_p": plain(self.on_object),
                "background_covered_p": plain(self.on_background)}

    def object_losses(self) -> np.ndarray:
        """The share of p(target) lost when the object is covered, per image."""
        return (1 - self.on_object / self.base.clamp_min(1e-12)).numpy()


@torch.no_grad()
def cover_object(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, targets: Sequence[int],
                 fill: float = 0.0, seed: int = 0, batch_size: int = 16) -> CoverResult:
    """p(target) of each image as it is, with its object (``masks``) filled with ``fill``, and with the
    same shape moved onto the background (:func:`moved_mask`) filled instead: three passes per image.

    ``fill`` 0 is mid-grey for inputs normalised around 0.5, like Lite0's (the paper's grey square).
    """
    if images.dim() != 4 or masks.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"expected images (N, C, H, W) and masks (N, H, W), got {tuple(images.shape)} and "
                         f"{tuple(masks.shape)}")
    if len(targets) != len(images):
        raise ValueError(f"{len(images)} images but {len(targets)} targets")
    moved = [moved_mask(m, seed=seed + i) for i, m in enumerate(masks)]
    room = torch.tensor([m is not None for m in moved])
    reference = torch.stack([m if m is not None else torch.zeros_like(masks[0]) for m in moved])
    stack = torch.cat([images, images.masked_fill(masks[:, None], fill), images.masked_fill(reference[:, None], fill)])
    was = model.training
    model.eval()
    try:
        probs = torch.cat([model(b).float().softmax(-1) for b in stack.split(batch_size)])
    finally:
        model.train(was)
    index = torch.as_tensor(list(targets), dtype=torch.long)
    p = probs.view(3, len(images), -1)[:, torch.arange(len(images)), index]
    background = torch.where(room, p[2], torch.full_like(p[2], float("nan")))
    return CoverResult(p[0], p[1], background, reference, fill)
