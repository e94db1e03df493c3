"""Correspondence Δ on hand-computed cases, and the random-part baseline's placement rule."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from zfkit import models
from zfkit.correspondence import correspondence, random_masks, sign_disagreement


class _Identity(nn.Module):
    """conv1 = 1x1 convolution with weight 1, bias 0, then ReLU: "conv1" features are relu(pixels)."""

    def __init__(self, size: int = 2):
        super().__init__()
        self.features = nn.Sequential(OrderedDict(conv1=nn.Conv2d(1, 1, 1), relu1=nn.ReLU()))
        with torch.no_grad():
            self.features.conv1.weight.fill_(1.0)
            self.features.conv1.bias.zero_()
        self.classifier = nn.Sequential(OrderedDict(fc8=nn.Linear(size * size, 2)))

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


TOP_ROW = torch.tensor([[True, True], [False, False]])
LEFT_COL = torch.tensor([[True, False], [True, False]])


def test_hand_computed_three_images():
    # eps = relu(x) - relu(x with the mask set to 0): signs [+,+,0,0], [+,0,0,0], [+,0,0,0] (row-major)
    images = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[1.0, -1.0], [5.0, 5.0]], [[2.0, 2.0], [-3.0, 2.0]]])[:, None]
    masks = torch.stack([TOP_ROW, TOP_ROW, LEFT_COL])
    r = correspondence(_Identity(), images, masks, ["conv1"])
    d = r.delta["conv1"]
    # pairs (1,2): 1 of 4 signs differ; (1,3): 1 of 4; (2,3): none
    assert d.pairs.tolist() == [0.25, 0.25, 0.0]
    assert d.mean == pytest.approx(1 / 6)
    assert d.std == pytest.approx(3 ** 0.5 / 12)
    assert r.baseline is None and r.layers == ["conv1"]


def test_opposite_signs_disagree():
    # fill 2.5: a masked 3 drops (eps > 0), a masked 1 rises (eps < 0); unmasked pixels give 0
    images = torch.tensor([[[3.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]])[:, None]
    masks = torch.stack([TOP_ROW, TOP_ROW])
    r = correspondence(_Identity(), images, masks, ["conv1"], fill=2.5)
    # signs [+,-,0,0] and [-,-,0,0]: one of four differs
    assert r.delta["conv1"].pairs.tolist() == [0.25]


def test_identical_images_and_masks_give_zero():
    torch.manual_seed(0)
    model = models.zfnet_mini(width=0.5).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    images = torch.randn(1, 1, 32, 32).repeat(4, 1, 1, 1)
    masks = torch.zeros(4, 32, 32, dtype=torch.bool)
    masks[:, 10:18, 12:20] = True
    other = torch.zeros_like(masks)
    other[:, 2:10, 2:10] = True
    r = correspondence(model, images, masks, ["conv5", "fc7"], baseline_masks=torch.stack([masks, other]))
    for name in ("conv5", "fc7"):
        assert r.delta[name].mean == 0 and r.delta[name].std == 0
        assert len(r.delta[name].pairs) == 6
        assert r.baseline[name].mean == 0 and len(r.baseline[name].pairs) == 12


def test_baseline_with_the_part_masks_equals_the_part_row():
    torch.manual_seed(1)
    images = torch.randn(3, 1, 2, 2)
    masks = torch.stack([TOP_ROW, LEFT_COL, TOP_ROW])
    r = correspondence(_Identity(), images, masks, ["conv1"], baseline_masks=masks)
    assert torch.equal(r.delta["conv1"].pairs, r.baseline["conv1"].pairs)


def test_sign_disagreement_counts_every_pair_once():
    eps = torch.tensor([[1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 1.0, 2.0]])
    assert sign_disagreement(eps).tolist() == pytest.approx([1 / 3, 1.0, 2 / 3])


def test_random_masks_keep_shape_stay_inside_and_centre_on_the_object():
    masks = torch.zeros(3, 16, 16, dtype=torch.bool)
    masks[:, 2:5, 3:7] = True  # a 3x4 part
    objects = torch.zeros_like(masks)
    objects[:, 6:14, 4:12] = True
    out = random_masks(masks, objects, seed=0)
    assert out.shape == masks.shape and out.dtype == torch.bool
    for m in out:
        rows, cols = m.nonzero(as_tuple=True)
        assert m.sum() == 12
        assert (rows.max() - rows.min(), cols.max() - cols.min()) == (2, 3)
        cy, cx = (rows.min() + rows.max()) // 2, (cols.min() + cols.max()) // 2
        assert objects[0, cy, cx]
    assert torch.equal(out, random_masks(masks, objects, seed=0))
    assert not torch.equal(random_masks(masks, objects, seed=0), random_masks(masks, objects, seed=1))


@pytest.mark.parametrize("kwargs, words", [
    (dict(images=torch.zeros(1, 1, 2, 2), masks=TOP_ROW[None]), "at least 2 images"),
    (dict(masks=torch.ones(2, 3, 3, dtype=torch.bool)), r"shape \(N, H, W\) = \(2, 2, 2\)"),
    (dict(masks=torch.stack([TOP_ROW, torch.zeros(2, 2, dtype=torch.bool)])), r"image\(s\) \[1\] are empty"),
    (dict(baseline_masks=torch.zeros(2, 2, 2, dtype=torch.bool)), r"baseline_masks of image\(s\) \[0, 1\] are empty"),
    (dict(layers=["conv7"]), "unknown layer 'conv7'"),
])
def test_bad_input_is_explained(kwargs, words):
    args = dict(model=_Identity(), images=torch.ones(2, 1, 2, 2), masks=torch.stack([TOP_ROW, TOP_ROW]), layers=["conv1"]) | kwargs
    with pytest.raises(ValueError, match=words):
        correspondence(**args)


def test_random_masks_bad_input():
    masks = torch.zeros(1, 8, 8, dtype=torch.bool)
    masks[0, 0:6, 0:6] = True
    objects = torch.zeros_like(masks)
    objects[0, 0, 0] = True  # the only object pixel cannot host the 6x6 mask's centre
    with pytest.raises(ValueError, match="no place on object 0"):
        random_masks(masks, objects)
    with pytest.raises(ValueError, match="masks' shape"):
        random_masks(masks, objects[0])
    with pytest.raises(ValueError, match=r"masks\[0\] is empty"):
        random_masks(torch.zeros_like(masks), objects)
