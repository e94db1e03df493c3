"""zfkit.object_occlusion: covering the object against the same area of background, in closed form."""

import math

import pytest
import torch
from torch import nn

from zfkit.object_occlusion import cover_object, moved_mask, object_contrast


class RegionScore(nn.Module):
    """Logit of class 0 = the sum of channel 0 inside rows/cols 8..16; class 1's logit is 0."""

    def forward(self, x):
        score = x[:, 0, 8:16, 8:16].sum((1, 2))
        return torch.stack([score, torch.zeros_like(score)], 1)


def _mask(y0, y1, x0, x1, size=32):
    m = torch.zeros(size, size, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def test_moved_mask_keeps_the_shape_off_the_object_and_inside_the_frame():
    mask = _mask(4, 12, 6, 20)
    for seed in range(5):
        moved = moved_mask(mask, seed=seed)
        assert moved.sum() == mask.sum() and not (moved & mask).any()
        ys, xs = torch.nonzero(moved, as_tuple=True)
        assert (ys.max() - ys.min(), xs.max() - xs.min()) == (7, 13)  # a translation: same extent
    assert torch.equal(moved_mask(mask, seed=3), moved_mask(mask, seed=3))
    assert moved_mask(_mask(2, 30, 2, 30)) is None  # no room left on the background
    with pytest.raises(ValueError, match="empty"):
        moved_mask(torch.zeros(8, 8, dtype=torch.bool))


def test_cover_object_measures_the_object_against_the_background_in_closed_form():
    images = torch.full((2, 3, 32, 32), 0.1)
    masks = torch.stack([_mask(8, 16, 8, 16), _mask(8, 16, 8, 16)])
    result = cover_object(RegionScore(), images, masks, targets=[0, 1], fill=0.0)
    score = 0.1 * 64  # the region's sum as it is
    p0 = 1 / (1 + math.exp(-score))
    assert result.base.tolist() == pytest.approx([p0, 1 - p0], rel=1e-5)
    assert result.on_object.tolist() == pytest.approx([0.5, 0.5])  # the region zeroed: logits tie
    assert result.on_background.tolist() == pytest.approx([p0, 1 - p0], rel=1e-5)  # the moved square misses the region
    assert result.reference.sum((1, 2)).tolist() == [64, 64] and not (result.reference & masks).any()
    (obj, bg), (obj1, bg1) = result.losses()
    assert obj == pytest.approx(1 - 0.5 / p0) and bg == pytest.approx(0) and obj1 < 0 and bg1 == pytest.approx(0)
    mean, se, n, holds = object_contrast([(obj, bg), (obj, bg), (obj + 0.01, bg)])
    assert n == 3 and mean == pytest.approx(1 - 0.5 / p0 + 0.01 / 3) and holds


def test_cover_object_marks_images_without_room_and_rejects_bad_shapes():
    images = torch.zeros(1, 3, 32, 32)
    result = cover_object(RegionScore(), images, _mask(1, 31, 1, 31)[None], targets=[0])
    assert math.isnan(result.on_background.item()) and result.losses() == [None]
    assert result.records()["background_covered_p"] == [None] and result.records()["base_p"][0] == result.base.item()
    with pytest.raises(ValueError, match="masks"):
        cover_object(RegionScore(), images, torch.zeros(1, 16, 16, dtype=torch.bool), targets=[0])
    with pytest.raises(ValueError, match="targets"):
        cover_object(RegionScore(), images, _mask(1, 5, 1, 5)[None], targets=[0, 1])
