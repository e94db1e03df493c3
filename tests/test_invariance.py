"""Invariance sweeps against closed forms computed without torchvision's transforms."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from zfkit.invariance import invariance, transform
from helpers import random_mini


class _Tiny(nn.Module):
    """conv1 = identity 1x1 convolution (weight 1, bias 0) + ReLU; optionally a global max pool as "pool1"."""

    def __init__(self, size: int = 8, global_max: bool = False):
        super().__init__()
        layers = OrderedDict(conv1=nn.Conv2d(1, 1, 1), relu1=nn.ReLU())
        if global_max:
            layers["pool1"] = nn.AdaptiveMaxPool2d(1)
        self.features = nn.Sequential(layers)
        with torch.no_grad():
            self.features.conv1.weight.fill_(1.0)
            self.features.conv1.bias.zero_()
        self.classifier = nn.Sequential(OrderedDict(fc8=nn.Linear(1 if global_max else size * size, 3)))

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def _shift_down(x, a):
    """x shifted down by a pixels (up if negative), uncovered rows 0: a closed form independent of torchvision."""
    out = torch.zeros_like(x)
    if a >= 0:
        out[..., a:, :] = x[..., : x.shape[-2] - a, :]
    else:
        out[..., :a, :] = x[..., -a:, :]
    return out


@pytest.fixture(scope="module")
def mini():
    model = random_mini()
    return model, torch.randn(3, 1, 32, 32), torch.tensor([1, 4, 7])


@pytest.mark.parametrize("kind, identity, other", [("translate", 0, 3), ("scale", 1.0, 1.3), ("rotate", 0.0, 30.0)])
def test_the_identity_amount_gives_distance_zero_and_the_plain_probability(mini, kind, identity, other):
    model, images, labels = mini
    r = invariance(model, images, labels, kind, [other, identity], ["conv1", "pool2", "fc7"])
    for name in ("conv1", "pool2", "fc7"):
        assert r.distance[name].shape == r.normalized[name].shape == (3, 2)
        # Not exactly 0: the originals and their identity copies are different rows of one batch, and
        # oneDNN may give rows of a GEMM different kernels (an AMD EPYC gave fc7 a distance of 2.6e-7).
        # Relative to ||f(x)||, 1e-5 is ~100 float32 roundings; the real amounts move every layer by
        # more than 0.05, 5,000 times as far, so an identity amount that moved the image would fail.
        assert torch.all(r.normalized[name][:, 1] <= 1e-5)
        assert torch.all(r.normalized[name][:, 0] > 0.05)
    with torch.no_grad():
        p = model(images).softmax(-1)[torch.arange(3), labels]
    # another batch shape: probabilities (about 0.1 here) agree to float32 rounding, far inside 1e-6
    assert torch.allclose(r.prob[:, 1], p, rtol=0, atol=1e-6)
    assert r.prob.shape == (3, 2) and r.kind == kind


@pytest.mark.parametrize("shift", [-5, -1, 2, 7])
def test_translation_distance_at_an_identity_layer_is_the_pixel_distance(shift):
    torch.manual_seed(1)
    images = torch.randn(2, 1, 8, 8)
    r = invariance(_Tiny(), images, [0, 2], "translate", [shift], ["conv1"])
    expected = (_shift_down(images, shift).relu() - images.relu()).flatten(1).norm(dim=1)
    assert torch.allclose(r.distance["conv1"][:, 0], expected, atol=1e-5)
    assert torch.allclose(r.normalized["conv1"][:, 0], expected / images.relu().flatten(1).norm(dim=1), atol=1e-5)


def test_rotation_by_90_degrees_is_rot90():
    torch.manual_seed(2)
    images = torch.randn(2, 1, 8, 8)
    r = invariance(_Tiny(), images, [0, 1], "rotate", [90, -90], ["conv1"])
    for j, k in enumerate((1, -1)):
        expected = (torch.rot90(images, k, (-2, -1)).relu() - images.relu()).flatten(1).norm(dim=1)
        assert torch.allclose(r.distance["conv1"][:, j], expected, atol=1e-5)


def test_global_max_pool_is_invariant_to_translation_that_keeps_the_peak():
    images = torch.zeros(1, 1, 8, 8)
    images[0, 0, 3, 4] = 2.0
    images[0, 0, 4, 2] = 0.5
    r = invariance(_Tiny(global_max=True), images, [0], "translate", [-3, -1, 2, 4], ["conv1", "pool1"])
    # The shifts are whole pixels, but torchvision resamples them through an affine grid computed in
    # float32 (kernel-dependent rounding), so the peak may come back a rounding away from 2.0: pool1
    # moves by at most 1e-5 of its norm (the peak), while conv1 moves by at least the 0.5 pixel.
    assert torch.all(r.normalized["pool1"] <= 1e-5)
    assert torch.all(r.distance["conv1"] >= 0.5)


def test_scaling_shrinks_about_the_centre_and_pads_with_fill():
    image = torch.ones(1, 1, 8, 8)
    half = transform(image, "scale", 0.5, fill=-1.0)
    # antialiased resizing averages ones with float32 weights that sum to 1 only up to rounding
    assert torch.allclose(half[0, 0, 2:6, 2:6], torch.ones(4, 4), rtol=0, atol=1e-6)
    assert torch.all(half[0, 0, :2] == -1.0)  # the padding is the fill itself, copied: exact
    assert torch.isclose(half.sum(), torch.tensor(16.0 - 48.0))
    double = transform(image, "scale", 2.0)
    assert torch.allclose(double, image)


@pytest.mark.parametrize("kind, amounts, words", [
    ("shear", [1], "unknown kind 'shear'"),
    ("translate", [32], r"use \|amount\| < 32"),
    ("translate", [-40], r"use \|amount\| < 32"),
    ("scale", [0], "scale factor must be > 0"),
    ("scale", [-1.5], "scale factor must be > 0"),
    ("scale", [0.001], "shrinks a 32-pixel image to nothing"),
    ("rotate", [400], r"\[-360, 360\]"),
    ("rotate", [float("nan")], "finite"),
    ("rotate", [], "amounts is empty"),
])
def test_bad_amounts_are_explained(mini, kind, amounts, words):
    model, images, labels = mini
    with pytest.raises(ValueError, match=words):
        invariance(model, images, labels, kind, amounts, ["conv1"])


@pytest.mark.parametrize("kwargs, words", [
    (dict(labels=[1, 2]), "3 integer class indices"),
    (dict(labels=[0, 1, 10]), r"labels must lie in 0 … 9"),
    (dict(layers=["conv9"]), "unknown layer 'conv9'"),
    (dict(images=torch.zeros(1, 32, 32)), r"\(B, C, H, W\)"),
])
def test_bad_input_is_explained(mini, kwargs, words):
    model, images, labels = mini
    args = dict(model=model, images=images, labels=labels, kind="rotate", amounts=[10], layers=["conv1"]) | kwargs
    with pytest.raises(ValueError, match=words):
        invariance(**args)


# ---------------------------------------------------------------- reading a sweep: magnitude, growth, symmetry

def _sweep(kind, amounts, distances):
    """An InvarianceResult whose layer "fc7" has the given normalised distances, (images, amounts)."""
    from zfkit.invariance import InvarianceResult

    d = torch.as_tensor(distances, dtype=torch.float32)
    return InvarianceResult(kind, torch.as_tensor(amounts, dtype=torch.float32), {"fc7": d}, {"fc7": d},
                            torch.ones_like(d), torch.zeros(len(d), dtype=torch.long))


def test_magnitude_is_the_distance_from_the_identity():
    from zfkit.invariance import magnitude

    # exact: abs, remainder and subtraction of whole numbers in float64 round nothing, on any kernel
    assert magnitude("translate", [-2, 0, 3]).tolist() == [2, 0, 3]
    assert magnitude("scale", [0.5, 1, 2]).tolist() == pytest.approx([0.6931, 0, 0.6931], abs=1e-4)
    assert magnitude("rotate", [0, 10, 350, 180, -90]).tolist() == [0, 10, 10, 180, 90]


def test_growth_of_a_straight_line_and_of_a_curve_that_flattens():
    from zfkit.invariance import growth

    amounts = [-4, -2, 0, 2, 4]
    line = growth(_sweep("translate", amounts, [[0.2, 0.1, 0.0, 0.1, 0.2], [0.4, 0.2, 0.0, 0.2, 0.4]]), "fc7")
    assert line.magnitudes.tolist() == [2, 4] and line.distance.tolist() == pytest.approx([0.15, 0.3])
    assert line.steepness == pytest.approx(1.0) and line.linearity == pytest.approx(1.0)
    steep = growth(_sweep("translate", [0, 1, 2, 3, 4], [[0.0, 0.8, 0.9, 0.95, 1.0], [0.0, 0.8, 0.9, float("nan"), 1.0]]), "fc7")
    assert steep.steepness == pytest.approx(0.8 / 1.0 * 4) and steep.linearity < 0.9
    assert steep.distance[2] == pytest.approx(0.95)  # the NaN (an all-zero original feature) is skipped


def test_growth_bad_input():
    from zfkit.invariance import growth

    with pytest.raises(ValueError, match="sweep has fc7"):
        growth(_sweep("translate", [0, 1, 2], [[0, 1, 2]]), "conv1")
    with pytest.raises(ValueError, match="two non-zero"):
        growth(_sweep("rotate", [0, 10, 350], [[0, 1, 1]]), "fc7")


def test_rotational_symmetry_is_high_for_a_disc_and_low_for_a_bar():
    from zfkit.invariance import rotational_symmetry

    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    disc = (((yy - 15.5) ** 2 + (xx - 15.5) ** 2) < 100).float()
    bar = torch.zeros(32, 32)
    bar[14:18, 2:30] = 1.0
    sym = rotational_symmetry(torch.stack([disc, bar])[:, None])
    assert sym[0] > 0.95 and sym[1] < 0.5
    assert rotational_symmetry(bar[None, None], angles=[180]).item() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="batch"):
        rotational_symmetry(bar)


def test_growth_pools_shrinking_and_enlarging_by_the_same_ratio():
    from zfkit.invariance import growth

    amounts = [1 / 1.2, 1 / 1.1, 1.0, 1.1, 1.2]  # float32 in the result: 1 / 1.1 is not exactly -log(1.1) away
    g = growth(_sweep("scale", amounts, [[0.4, 0.2, 0.0, 0.2, 0.4]]), "fc7")
    assert len(g.magnitudes) == 2 and g.distance.tolist() == pytest.approx([0.2, 0.4])


def test_the_symmetric_reference_is_a_square_between_a_disc_and_a_half_turn_box():
    from zfkit.invariance import rotational_symmetry, symmetric_reference

    yy, xx = torch.meshgrid(torch.arange(32.0) - 15.5, torch.arange(32.0) - 15.5, indexing="ij")
    disc = (yy ** 2 + xx ** 2 <= 64).float()
    box = ((xx.abs() <= 10) & (yy.abs() <= 5)).float()  # 2:1, unchanged only by a half turn
    square = ((xx.abs() <= 8) & (yy.abs() <= 8)).float()  # what symmetric_reference(32) draws
    disc_score, box_score = rotational_symmetry(torch.stack([disc, box])[:, None]).tolist()
    reference = symmetric_reference(32)
    assert reference == pytest.approx(rotational_symmetry(square[None, None]).item())
    assert box_score + 0.1 < reference < disc_score - 0.05
    assert rotational_symmetry(square[None, None], angles=[90, 180, 270]).item() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="image side"):
        symmetric_reference(2)


def test_the_most_symmetric_class_is_the_highest_mean_with_its_standard_error():
    from zfkit.invariance import most_symmetric_class

    scores = torch.tensor([0.2, 0.4, 0.7, 0.9, 0.5, 0.5, 0.99])  # class 2 has one image: no noise, skipped
    labels = torch.tensor([0, 0, 1, 1, 3, 3, 2])
    best = most_symmetric_class(scores, labels, ["a", "b", "c", "d"])
    assert (best.name, best.images) == ("b", 2)
    assert best.score == pytest.approx(0.8) and best.noise == pytest.approx(0.1)  # std 0.1414 / sqrt(2)
    with pytest.raises(ValueError, match="one symmetry score per label"):
        most_symmetric_class(scores[:3], labels, ["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="at least 2 images"):
        most_symmetric_class(scores, labels, ["a", "b"])
