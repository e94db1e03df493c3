"""Cut an object out of a studio photograph on a plain background.

Tux Paint's stamps come with an alpha channel; a few product photos (GCompris' hammers, a scale, a
volleyball) come on plain white instead. Their mask is the complement of the background: the pixels
close to the border's colour that connect to the border. This is exact where the background is
plain and the object's rim differs from it; a pale rim or a soft shadow fails it, so each photo that
uses it was checked by eye (``zfkit/objects.json`` records the tolerance).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["plain_background_mask"]


def plain_background_mask(rgb: np.ndarray, tolerance: int = 24, min_part: float = 0.25,
                          plain_share: float = 0.8) -> np.ndarray:
    """The (H, W) bool mask of the object in an (H, W, 3) uint8 photo on a plain background.

    The background colour is the median border pixel; the background is every pixel within
    ``tolerance`` of it (largest channel difference) that connects to the border. The object is
    the rest with its holes filled, opened by a 3x3 square (specks go, corners stay) and kept
    in parts of at least ``min_part`` of the largest (two tools in one photo stay; a crumb goes).
    Raises ``ValueError`` when fewer than ``plain_share`` of the border pixels match the background
    colour: the photo has no plain background to cut along.
    """
    pixels = np.asarray(rgb)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {pixels.shape}")
    pixels = pixels.astype(np.int16)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    colour = np.median(border, axis=0)
    plain = (np.abs(border - colour).max(axis=1) <= tolerance).mean()
    if plain < plain_share:
        raise ValueError(f"only {plain:.0%} of the border is within {tolerance} of its median colour "
                         f"{colour.astype(int).tolist()}: the photo has no plain background (need {plain_share:.0%})")
    near = np.abs(pixels - colour).max(axis=2) <= tolerance
    labels, _ = ndimage.label(near)
    touching = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    background = np.isin(labels, touching[touching > 0])
    obj = ndimage.binary_opening(ndimage.binary_fill_holes(~background), structure=np.ones((3, 3), bool))
    labels, count = ndimage.label(obj)
    if count == 0:
        raise ValueError("no object is left once the plain background is removed")
    sizes = ndimage.sum(obj, labels, range(1, count + 1))
    return np.isin(labels, 1 + np.flatnonzero(sizes >= min_part * sizes.max()))
