"""The incremental occlusion engine against full recomputation (one forward pass per occluded image)."""

import re
from functools import cache

import pytest
import torch
import torchvision
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

from zfkit import models
from zfkit.deconv import Deconvnet
from zfkit.layers import resolve
from zfkit.occlusion import occlusion
from zfkit.topk import layer_activations


def _randomised(model, std=None):
    """Seeded weights; std=None gives He initialisation, so logits are spread and p(target) varies."""
    torch.manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                if std is None:
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                else:
                    m.weight.normal_(0, std)
                m.bias.normal_(0, 0.01)
    return model.eval()


def full_recomputation(model, image, target, patch, stride, layer, channel, fill=0.0):
    """activity, p(target), top class maps by occluding each position and running the whole model,
    and every class's probability (positions, classes)."""
    index = resolve(model, layer).index
    ys, xs = range(0, image.shape[-2] - patch + 1, stride), range(0, image.shape[-1] - patch + 1, stride)
    batch = image.repeat(len(ys) * len(xs), 1, 1, 1)
    for n, (y, x) in enumerate((y, x) for y in ys for x in xs):
        batch[n, :, y:y + patch, x:x + patch] = fill
    with torch.no_grad():
        activity = model.features[: index + 1](batch.clone())[:, channel].sum((1, 2))
        p = model(batch).softmax(-1)
    shape = (len(ys), len(xs))
    return activity.view(shape), p[:, target].view(shape), p.argmax(-1).view(shape), p


def full_recomputation_by_graph(model, image, target, patch, stride, layer, channel, fill=0.0):
    """The same maps for any traceable model: each occluded image through the whole model, one at a time."""
    ys, xs = range(0, image.shape[-2] - patch + 1, stride), range(0, image.shape[-1] - patch + 1, stride)
    activity, probs = [], []
    for y, x in ((y, x) for y in ys for x in xs):
        occluded = image.clone()
        occluded[:, y:y + patch, x:x + patch] = fill
        with torch.no_grad():
            activity.append(layer_activations(model, occluded[None], layer)[0, channel].sum())
            probs.append(model(occluded[None]).softmax(-1)[0])
    p = torch.stack(probs)
    shape = (len(ys), len(xs))
    return torch.stack(activity).view(shape), p[:, target].view(shape), p.argmax(-1).view(shape), p


@cache
def zfnet_he():
    return _randomised(models.zfnet())


CASES = {
    "zfnet_mini": (lambda: _randomised(models.zfnet_mini(), 0.05), 32, 8, 3, "conv5"),
    "zfnet_mini_conv2": (lambda: _randomised(models.zfnet_mini()), 32, 5, 4, "conv2"),
    "zfnet_224": (zfnet_he, 224, 35, 95, "conv5"),
    "tv_alexnet": (lambda: torchvision.models.alexnet().eval(), 224, 50, 87, 10),
}


@pytest.mark.parametrize("name", list(CASES))
def test_incremental_equals_full_recomputation(name):
    build, size, patch, stride, layer = CASES[name]
    model = build()
    layer = model.features[layer] if isinstance(layer, int) else layer
    torch.manual_seed(1)
    image = torch.randn(model.features[0].in_channels, size, size)
    fill = 0.5 if name == "zfnet_mini" else 0.0
    r = occlusion(model, image, 3, patch, stride, layer=layer, fill=fill)
    activity, prob, top, every = full_recomputation(model, image, 3, patch, stride, layer, r.channel, fill)
    assert r.activity.shape == r.prob.shape == r.top_class.shape == (len(r.ys), len(r.xs))
    assert r.ys.tolist() == list(range(0, size - patch + 1, stride))
    # 1e-5 absolute; activities of a few hundred are compared relative to their scale (float32 spacing there is 3e-5)
    assert (r.activity - activity).abs().max() <= 1e-5 * max(1.0, activity.abs().max())
    assert (r.prob - prob).abs().max() <= 1e-5
    # The top class is an argmax over floats that the two computations round differently: where they
    # disagree, the two classes must tie to the same 1e-5 in the full recomputation's probabilities.
    differ = (r.top_class != top).flatten().nonzero().flatten()
    assert torch.all(every[differ, top.flatten()[differ]] - every[differ, r.top_class.flatten()[differ]] <= 1e-5)
    assert r.macs < r.full_macs


def test_strongest_map_and_its_projection():
    model = _randomised(models.zfnet_mini(), 0.05)
    torch.manual_seed(2)
    image = torch.randn(1, 32, 32)
    r = occlusion(model, image, 0, 16, 16)
    with torch.no_grad():
        acts = model.features[: resolve(model, "conv5").index + 1](image[None].clone())[0]
        p = model(image[None]).softmax(-1)[0, 0]
    assert r.channel == int(acts.flatten(1).amax(1).argmax())
    assert r.base_activity == pytest.approx(float(acts[r.channel].sum()), rel=1e-6)
    assert r.base_prob == pytest.approx(float(p), rel=1e-6)
    expected = Deconvnet(model).project(image[None], "conv5", channels=[r.channel], mode="max")[0, 0]
    assert torch.equal(r.projection, expected)  # exact: occlusion makes this very call (same shapes, same process)
    assert r.projection.shape == image.shape


def test_occluding_with_the_image_own_value_changes_nothing():
    """A constant image occluded with its own value: every map equals the unoccluded values."""
    model = _randomised(models.zfnet_mini(), 0.05)
    image = torch.full((1, 32, 32), 0.3)
    r = occlusion(model, image, 2, 9, 5, fill=0.3)
    assert torch.allclose(r.activity, torch.full_like(r.activity, r.base_activity), rtol=1e-5)
    assert torch.allclose(r.prob, torch.full_like(r.prob, r.base_prob), rtol=1e-5)


def test_approximate_mode_is_cheaper_and_close():
    model = zfnet_he()
    torch.manual_seed(3)
    image = torch.randn(3, 224, 224)
    with torch.no_grad():
        target = int(model(image[None]).argmax())
    exact = occlusion(model, image, target, 35, 77)
    approx = occlusion(model, image, target, 35, 77, approximate=True)
    assert approx.macs < 0.7 * exact.macs
    assert (approx.prob - exact.prob).abs().max() <= 0.05
    assert (approx.activity - exact.activity).abs().max() <= 0.1 * exact.activity.abs().max()


def test_a_cap_of_the_whole_map_is_exact():
    model = _randomised(models.zfnet_mini(), 0.05)
    image = torch.randn(1, 32, 32)
    exact = occlusion(model, image, 0, 8, 8)
    whole = occlusion(model, image, 0, 8, 8, approximate=1.0)
    # exact: a cap of 1.0 trims no window, so both runs make the same kernel calls on the same shapes
    assert whole.macs == exact.macs and torch.equal(whole.prob, exact.prob)


def test_training_mode_is_restored():
    model = _randomised(models.zfnet_mini(width=0.25), 0.05).train()
    occlusion(model, torch.randn(1, 32, 32), 0, 16, 16)
    assert model.training


# ---------------------------------------------------------------- property: random stacks, float64

class _Stack(nn.Module):
    def __init__(self, features: nn.Sequential, flat: int):
        super().__init__()
        self.features = features
        self.classifier = nn.Sequential(nn.Linear(flat, 4))

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


_conv = st.tuples(st.just("conv"), st.integers(1, 5), st.integers(1, 3), st.integers(0, 2), st.integers(1, 2))
_pool = st.tuples(st.just("pool"), st.integers(2, 3), st.integers(1, 3), st.integers(0, 1), st.booleans())
_block = st.one_of(_conv, _pool, st.just(("lrn",)))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks=st.lists(_block, min_size=1, max_size=4), height=st.integers(6, 18), width=st.integers(6, 18),
       patch=st.integers(1, 6), stride=st.integers(1, 4), fill=st.floats(-2, 2), seed=st.integers(0, 2**16))
def test_property_incremental_equals_full_on_random_stacks(blocks, height, width, patch, stride, fill, seed):
    torch.manual_seed(seed)
    layers, channels = [nn.Conv2d(2, 3, 3, padding=1), nn.ReLU()], 3
    for block in blocks:
        if block[0] == "conv":
            _, k, s, p, d = block
            layers += [nn.Conv2d(channels, 4, k, s, p, d), nn.ReLU()]
            channels = 4
        elif block[0] == "pool":
            _, k, s, p, ceil = block
            layers.append(nn.MaxPool2d(k, s, min(p, k // 2), ceil_mode=ceil))
        else:
            layers.append(nn.LocalResponseNorm(3))
    features = nn.Sequential(*layers).double()
    try:
        out = features(torch.zeros(1, 2, height, width, dtype=torch.float64))
    except RuntimeError:  # the stack shrinks the image to nothing
        assume(False)
    assume(patch <= min(height, width))
    model = _Stack(features, out.numel()).double().eval()
    image = torch.randn(2, height, width, dtype=torch.float64)
    layer = features[-1]
    r = occlusion(model, image, 1, patch, stride, layer=layer, fill=fill, batch_size=7)
    activity, prob, *_ = full_recomputation(model, image, 1, patch, stride, layer, r.channel, fill)
    assert torch.allclose(r.activity, activity, atol=1e-9, rtol=1e-9)
    assert torch.allclose(r.prob, prob, atol=1e-12, rtol=1e-9)


# ---------------------------------------------------------------- bad input

MINI = models.zfnet_mini(width=0.25).eval()
GOOD = torch.zeros(1, 32, 32)


@pytest.mark.parametrize("kwargs, words", [
    (dict(patch=33), "larger than the 32x32 image"),
    (dict(patch=0), "patch must be an int >= 1"),
    (dict(stride=0), "stride must be an int >= 1"),
    (dict(stride=-2), "stride must be an int >= 1"),
    (dict(target=10), r"target must be an int in 0 … 9"),
    (dict(target=-1), r"target must be an int in 0 … 9"),
    (dict(image=torch.zeros(1, 1, 32, 32)), r"one \(C, H, W\) tensor"),
    (dict(image=torch.zeros(3, 32, 32)), "3 channel"),
    (dict(image=torch.zeros(1, 28, 28)), "expects 32x32"),
    (dict(image=torch.full((1, 32, 32), float("nan"))), "NaN"),
    (dict(image=torch.zeros(1, 32, 32, dtype=torch.long)), "floating point"),
    (dict(layer="conv9"), "unknown layer 'conv9'"),
    (dict(layer="fc7"), "'fc7' has no spatial output"),
    (dict(fill=float("inf")), "fill must be a finite number"),
    (dict(approximate=1.5), r"ratio in \(0, 1\]"),
    (dict(channel=999), "channel must be"),
])
def test_bad_input_is_explained(kwargs, words):
    args = dict(model=MINI, image=GOOD, target=0, patch=8, stride=4) | kwargs
    with pytest.raises(ValueError, match=words):
        occlusion(**args)


def test_features_the_features_engine_cannot_recompute_get_the_graph_engine():
    torch.manual_seed(0)
    model = _Stack(nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(2)), 2 * 7 * 7).eval()
    image = torch.randn(1, 16, 16)
    r = occlusion(model, image, 1, 4, 4, layer=model.features[0])
    activity, prob, *_ = full_recomputation_by_graph(model, image, 1, 4, 4, model.features[0], r.channel)
    assert r.macs < r.full_macs and r.whole_from == "flatten"  # windows up to the average pool, then the head
    assert torch.allclose(r.activity, activity, rtol=1e-5, atol=1e-5) and torch.allclose(r.prob, prob, atol=1e-6)
    with pytest.raises(ValueError, match="approximate= applies to the incremental engine"):
        occlusion(model, image, 1, 4, 4, layer=model.features[0], approximate=True)


# ---------------------------------------------------------------- reading a sweep: covered, drop_overlap, object_sensitivity

def _sweep_result(activity, prob, patch=2, size=5, base_activity=10.0, base_prob=0.8, projection=None):
    """A hand-made OcclusionResult on a size x size image, stride 1 (positions 0 … size - patch)."""
    from zfkit.occlusion import OcclusionResult

    n = size - patch + 1
    activity, prob = torch.as_tensor(activity, dtype=torch.float32), torch.as_tensor(prob, dtype=torch.float32)
    projection = torch.zeros(1, size, size) if projection is None else projection
    return OcclusionResult(activity.view(n, n), prob.view(n, n), torch.zeros(n, n, dtype=torch.long), 0, projection,
                           torch.arange(n), torch.arange(n), patch, "conv5", 0, base_activity, base_prob, 0, 0)


def test_covered_sums_the_weights_under_each_square():
    from zfkit.occlusion import covered

    r = _sweep_result(torch.zeros(16), torch.zeros(16))  # 5x5 image, 2x2 patch: 4x4 positions
    # exact on any kernel: sums of a few ones and zeros are whole numbers, which float32 holds exactly
    assert torch.equal(covered(r, torch.ones(5, 5)), torch.full((4, 4), 4.0))
    dot = torch.zeros(5, 5)
    dot[2, 3] = 1.0  # covered by squares with top-left rows 1-2, columns 2-3
    expected = torch.zeros(4, 4)
    expected[1:3, 2:4] = 1.0
    assert torch.equal(covered(r, dot), expected)
    with pytest.raises(ValueError, match="occluded image is"):
        covered(r, torch.ones(4, 4))


def test_drop_overlap_is_one_where_the_drop_follows_the_projection_and_zero_elsewhere():
    from zfkit.occlusion import drop_overlap

    projection = torch.zeros(1, 5, 5)
    projection[0, 0:2, 0:2] = -3.0  # sign does not matter: the magnitude is where it lies
    coverage = torch.tensor([[4, 2, 0, 0], [2, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.float32) * 3
    r = _sweep_result(10.0 - coverage, torch.zeros(16), projection=projection)
    match = drop_overlap(r, top=0.25)  # k = 4 of 16 positions: the top-left 2x2 block in both maps
    assert match.iou == 1.0 and match.correlation == pytest.approx(1.0)
    assert match.chance == pytest.approx(1 / 7)  # expected intersection 4*4/16 = 1, IoU 1 / (4 + 4 - 1)
    elsewhere = torch.zeros(1, 5, 5)
    elsewhere[0, 3:, 3:] = 1.0
    miss = drop_overlap(r, projection=elsewhere, top=0.25)
    assert miss.iou == 0.0 and miss.correlation < 0


def test_object_sensitivity_finds_the_worst_place_and_its_chance_level():
    from zfkit.occlusion import object_sensitivity

    prob = torch.full((16,), 0.8)
    prob[5] = 0.2  # position (1, 1): the square over rows/columns 1-2
    r = _sweep_result(torch.zeros(16), prob)
    obj = torch.zeros(5, 5, dtype=torch.bool)
    obj[1:3, 1:3] = True  # only the square at (1, 1) is wholly on the object
    s = object_sensitivity(r, obj, on=0.5)
    assert s.largest_drop == pytest.approx(0.75) and s.worst_on_object
    # squares with >= 2 of 4 object pixels: (0,1), (1,0), (1,1), (1,2), (2,1)
    assert s.on_object_share == pytest.approx(5 / 16)
    assert object_sensitivity(r, ~obj, on=0.5).worst_on_object is False
    saturated = _sweep_result(torch.zeros(16), torch.full((16,), 0.8))  # p never falls below its unoccluded 0.8
    assert object_sensitivity(saturated, obj).worst_on_object is None


@pytest.mark.parametrize("kwargs, words", [({"top": 0.0}, "fraction"), ({"projection": torch.zeros(5, 5)}, "(C, H, W)")])
def test_drop_overlap_bad_input(kwargs, words):
    from zfkit.occlusion import drop_overlap

    with pytest.raises(ValueError, match=re.escape(words)):
        drop_overlap(_sweep_result(torch.zeros(16), torch.zeros(16)), **kwargs)


def test_context_share_is_the_ink_off_the_object():
    from zfkit.occlusion import context_share

    images = torch.zeros(2, 1, 4, 4)
    images[:, 0, 1:3, 1:3] = 1.0  # a 2x2 object of ink 4
    images[1, 0, 0, 0] = 1.0  # and one pixel of context beside it: 1 of 5
    objects = torch.zeros(2, 4, 4, dtype=torch.bool)
    objects[:, 1:3, 1:3] = True
    assert context_share(images, objects).tolist() == pytest.approx([0.0, 0.2])
    with pytest.raises(ValueError, match="one \\(H, W\\) mask per image"):
        context_share(images, objects[0])
    with pytest.raises(ValueError, match="no ink"):
        context_share(torch.zeros(1, 1, 4, 4), objects[:1])


def test_movable_examples_are_correct_and_nearest_the_aim():
    from zfkit.occlusion import movable_examples

    p_true = torch.tensor([0.9999, 0.7, 0.5, 0.99, 0.8, 0.2])
    correct = torch.tensor([True, True, False, True, True, False])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    # class 0: 0.7 beats the saturated 0.9999 and the misclassified 0.5; class 1: 0.8
    assert movable_examples(p_true, correct, labels, [0, 1]) == [1, 4]
    assert movable_examples(p_true, correct, labels, [0, 1], aim=0.995) == [0, 3]
    with pytest.raises(ValueError, match="no correctly classified image of class 2"):
        movable_examples(p_true, correct, labels, [2])
    with pytest.raises(ValueError, match="aim"):
        movable_examples(p_true, correct, labels, [0], aim=1.0)
