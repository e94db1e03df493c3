"""Correspondence Δ on hand-computed cases, and the random-part baseline's placement rule."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from zfkit.correspondence import correspondence, random_masks, sign_disagreement
from helpers import random_mini


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
    # pairs (1,2): 1 of 4 signs differ; (1,3): 1 of 4; (2,3): none. Exact on any kernel: the 1x1
    # convolution computes x * 1 + 0, which rounds nothing, and 1/4 is a binary fraction.
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
    model = random_mini()
    images = torch.randn(1, 1, 32, 32).repeat(4, 1, 1, 1)
    masks = torch.zeros(4, 32, 32, dtype=torch.bool)
    masks[:, 10:18, 12:20] = True
    other = torch.zeros_like(masks)
    other[:, 2:10, 2:10] = True
    r = correspondence(model, images, masks, ["conv5", "fc7"], baseline_masks=torch.stack([masks, other]))
    # The four copies are four rows of one batch, which oneDNN may compute with different kernels, so
    # their ε agree only up to rounding: an entry of ε within rounding of 0 may change sign. Here the
    # smallest non-zero |ε| is ~1e-5 of the layer's largest feature and at most 5 of the 512-768
    # entries lie below 1e-4 of it: 0.01 (5-7 features) covers that, while two different masks on the
    # same image give 0.25 (below). Zeros of ε from units dead on both sides stay exact (ReLU).
    for name in ("conv5", "fc7"):
        assert r.delta[name].pairs.max() <= 0.01
        assert len(r.delta[name].pairs) == 6
        assert r.baseline[name].pairs.max() <= 0.01 and len(r.baseline[name].pairs) == 12
    mixed = correspondence(model, images, torch.cat([masks[:2], other[:2]]), ["conv5", "fc7"])
    for name in ("conv5", "fc7"):  # the same images with two different masks: far above the tolerance
        assert mixed.delta[name].pairs[0] <= 0.01 and mixed.delta[name].pairs[1:5].min() > 0.1


def test_baseline_with_the_part_masks_equals_the_part_row():
    torch.manual_seed(1)
    images = torch.randn(3, 1, 2, 2)
    masks = torch.stack([TOP_ROW, LEFT_COL, TOP_ROW])
    r = correspondence(_Identity(), images, masks, ["conv1"], baseline_masks=masks)
    # exact: both sides run the same inputs in the same batch shape, through x * 1 + 0 (no rounding)
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


# ---------------------------------------------------------------- parts located from silhouettes (Fig. 8)

def _centre(mask: torch.Tensor) -> tuple[int, int]:
    rows, cols = mask.nonzero(as_tuple=True)
    return int(rows.float().mean()), int(cols.float().mean())


def _boot(mirror: bool = False) -> torch.Tensor:
    """A 32x32 display image of an L-shaped boot: shaft on the left (rows 4-27, cols 4-11), foot to col 27."""
    image = torch.zeros(1, 1, 32, 32)
    image[..., 4:28, 4:12] = 0.8
    image[..., 20:28, 4:28] = 0.6
    return image.flip(-1) if mirror else image


def test_boot_parts_sit_at_heel_toe_and_shaft_and_follow_a_mirrored_boot():
    from zfkit.correspondence import part_masks

    masks = part_masks(_boot(), "Ankle boot", size=5)
    assert set(masks) == {"heel", "toe", "top of shaft"}
    assert all(m.shape == (1, 32, 32) and m.sum() == 25 for m in masks.values())
    # box rows and cols 4-27: heel (0.9, 0.05) -> (24.7, 5.15), nearest pixel (25, 5); toe (0.9, 0.95)
    # -> (25, 26); top of shaft (0.05, 0.2) -> (5.15, 8.6) -> (5, 9)
    assert _centre(masks["heel"][0]) == (25, 5)
    assert _centre(masks["toe"][0]) == (25, 26)
    assert _centre(masks["top of shaft"][0]) == (5, 9)
    flipped = part_masks(_boot(mirror=True), "Ankle boot", size=5)
    for part in masks:
        assert torch.equal(flipped[part], masks[part].flip(-1)), part


def test_a_part_on_background_moves_to_the_nearest_object_pixel():
    from zfkit.correspondence import part_masks

    image = torch.zeros(1, 1, 20, 20)
    image[..., 2:18, 2:18] = 1.0
    image[..., 2:6, 8:12] = 0.0  # a collar notch where the collar's fraction (0, 0.5) points
    collar = part_masks(image, "T-shirt/top", size=3)["collar"][0]
    y, x = _centre(collar)
    assert image[0, 0, y, x] == 1.0 and y == 2 and x in (7, 12)  # the notch's nearest object pixels


def test_masks_stay_inside_the_image():
    from zfkit.correspondence import part_masks

    image = torch.zeros(1, 1, 16, 16)
    image[..., 0:16, 0:16] = 1.0  # the object fills the image: corner parts would cross the border
    for mask in part_masks(image, "Trouser", size=6).values():
        assert mask.sum() == 36


@pytest.mark.parametrize("args, words", [
    ((torch.ones(1, 1, 8, 8), "Dress"), "no part layout for class 'Dress'"),
    ((torch.zeros(2, 1, 8, 8), "Trouser"), "image 0 has no pixel"),
    ((torch.ones(1, 8, 8), "Trouser"), "display images"),
])
def test_part_masks_bad_input(args, words):
    from zfkit.correspondence import part_masks

    with pytest.raises(ValueError, match=words):
        part_masks(*args)
    with pytest.raises(ValueError, match="size must be"):
        part_masks(torch.ones(1, 1, 8, 8), "Trouser", size=9)


def test_part_table_has_a_row_per_part_and_the_paper_alongside():
    from zfkit.correspondence import PAPER_TABLE1, part_table

    model = random_mini()
    display = torch.cat([_boot(), _boot(mirror=True), _boot()]) * torch.tensor([1.0, 0.9, 0.7])[:, None, None, None]
    table = part_table(model, display - 0.3, display, "Ankle boot", draws=2, size=4)
    assert table.layers == ["conv5", "fc7"] and list(table.parts) == ["heel", "toe", "top of shaft"]
    assert len(table.random["conv5"].pairs) == 2 * 3  # two draws of the 3 image pairs
    parts_mean = sum(d["fc7"].mean for d in table.parts.values()) / 3
    assert table.gap("fc7") == pytest.approx(table.random["fc7"].mean - parts_mean)
    markdown = table._repr_markdown_()
    assert markdown.count("\n") == 5 and "| heel |" in markdown and "| Right Eye |" in markdown
    assert f"{PAPER_TABLE1['Random'][0][0]:.3f} ± {PAPER_TABLE1['Random'][0][1]:.3f}" in markdown
    with pytest.raises(ValueError, match="draws"):
        part_table(model, display, display, "Ankle boot", draws=0)


def test_part_summary_pools_cases_and_relative_gaps():
    from zfkit.correspondence import Delta, PartTable, part_summary

    def table(parts, random):
        delta = lambda m: {"conv5": Delta(torch.tensor([m]), m, 0.0)}  # noqa: E731
        return PartTable("x", ["conv5"], {f"p{i}": delta(m) for i, m in enumerate(parts)}, delta(random))

    tables = [table([0.1, 0.3, 0.2], 0.25), table([0.4, 0.5], 0.5)]
    s = part_summary(tables, "conv5")
    assert (s.below, s.cases) == (3, 5) and s.share == pytest.approx(0.6)  # 0.1, 0.2 and 0.4
    # gaps relative to random: (0.25 - 0.2) / 0.25 = 0.2 and (0.5 - 0.45) / 0.5 = 0.1
    assert s.relative_gap == pytest.approx(0.15)
    with pytest.raises(ValueError, match="not in every table"):
        part_summary(tables, "fc7")
    with pytest.raises(ValueError, match="at least one"):
        part_summary([], "conv5")


def test_a_rounding_sized_difference_counts_as_no_change():
    """ε within ROUNDING of the layer's largest feature is the kernel's, not the image's: it has no sign."""
    from zfkit.correspondence import ROUNDING

    tiny = 0.1 * ROUNDING * 4.0  # far below the floor for a layer whose largest feature is 4
    # masked top-left pixels differ by +tiny and -tiny from the fill (0): opposite signs of rounding size
    images = torch.tensor([[[tiny, 4.0], [1.0, 1.0]], [[-tiny, 4.0], [1.0, 1.0]]])[:, None]
    only_corner = torch.tensor([[True, False], [False, False]])
    r = correspondence(_Identity(), images, torch.stack([only_corner, only_corner]), ["conv1"])
    assert r.delta["conv1"].pairs.tolist() == [0.0]
    big = torch.tensor([[[1.0, 4.0], [1.0, 1.0]], [[2.0, 4.0], [1.0, 1.0]]])[:, None]
    assert correspondence(_Identity(), big, torch.stack([only_corner, only_corner]), ["conv1"]).delta["conv1"].pairs.tolist() == [0.0]
    opposite = torch.tensor([[[1.0, 4.0], [1.0, 1.0]], [[-1.0, 4.0], [1.0, 1.0]]])[:, None]  # relu: +1 vs 0
    assert correspondence(_Identity(), opposite, torch.stack([only_corner, only_corner]), ["conv1"]).delta["conv1"].pairs.tolist() == [0.25]
