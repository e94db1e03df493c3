"""Randomisation sanity checks against independent facts: closed-form similarities, the weights
actually touched, the cascade's order, and projections against autograd and the deconvnet engine."""

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from helpers import random_mini
from zfkit import sanity
from zfkit.deconv import Deconvnet

ORDER = ("fc8", "fc7", "fc6", "conv5", "conv4", "conv3", "conv2", "conv1")


@pytest.fixture
def mini(one_thread):
    return random_mini()


def _changed(a: nn.Module, b: nn.Module) -> set[str]:
    """Weight layers of two models whose weight or bias differ (exactly: copied or seeded weights, no arithmetic)."""
    la, lb = sanity.weight_layers(a), sanity.weight_layers(b)
    return {n for n in la if not (torch.equal(la[n].weight, lb[n].weight) and torch.equal(la[n].bias, lb[n].bias))}


# ---------------------------------------------------------------- similarity

def test_identical_maps_are_similar_by_every_metric():
    a = torch.randn(1, 16, 16)
    assert sanity.similarity(a, a) == pytest.approx({"ssim": 1.0, "spearman_abs": 1.0, "spearman": 1.0})


def test_negation_flips_only_the_signed_spearman():
    a = torch.randn(1, 16, 16)
    assert sanity.similarity(a, -a) == pytest.approx({"ssim": 1.0, "spearman_abs": 1.0, "spearman": -1.0})


def test_metrics_ignore_the_projection_scale():
    a = torch.randn(3, 12, 12)
    assert sanity.similarity(a, 7.5 * a) == pytest.approx({"ssim": 1.0, "spearman_abs": 1.0, "spearman": 1.0})


def test_spearman_matches_its_closed_form():
    """Two adjacent swaps among n=49 ranks: sum d^2 = 4, rho = 1 - 6 * 4 / (n (n^2 - 1))."""
    a = np.arange(49, dtype=float)
    b = a.copy()
    b[[3, 4]] = b[[4, 3]]
    b[[20, 21]] = b[[21, 20]]
    n = 49
    got = sanity.similarity(a.reshape(7, 7), b.reshape(7, 7))
    assert got["spearman"] == pytest.approx(1 - 6 * 4 / (n * (n * n - 1)), abs=1e-12)
    assert got["spearman_abs"] == pytest.approx(1 - 6 * 4 / (n * (n * n - 1)), abs=1e-12)


def test_ssim_of_a_flat_map_against_an_empty_one_is_its_closed_form():
    """Constant 1 vs constant 0 in every window: SSIM = C1 / (1 + C1), C1 = (0.01 * data_range)^2."""
    c1 = (0.01 * 1.0) ** 2
    got = sanity.similarity(torch.ones(1, 9, 9), torch.zeros(1, 9, 9))
    assert got["ssim"] == pytest.approx(c1 / (1 + c1), rel=1e-9)
    assert math.isnan(got["spearman"]) and math.isnan(got["spearman_abs"])  # undefined for constant maps


def test_independent_noise_is_dissimilar():
    torch.manual_seed(0)
    got = sanity.compare(torch.randn(20, 1, 32, 32), torch.randn(20, 1, 32, 32))
    assert abs(got["spearman"].mean()) < 0.05 and abs(got["spearman_abs"].mean()) < 0.05
    assert got["ssim"].mean() < 0.2


def test_similarity_checks_shapes():
    with pytest.raises(ValueError, match="shape"):
        sanity.similarity(torch.zeros(1, 8, 8), torch.zeros(1, 9, 9))


def test_mass_inside_and_edges():
    p = torch.zeros(2, 1, 4, 4)
    p[0, 0, 0, 0], p[0, 0, 3, 3] = 3.0, -1.0
    p[1, 0, 1, 1] = 2.0
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[:, :2, :2] = True
    assert sanity.mass_inside(p, mask).tolist() == [0.75, 1.0]  # exact: 3 / 4 and 2 / 2 of whole numbers
    step = torch.zeros(1, 1, 8, 8)
    step[..., 4:] = 1.0
    e = sanity.edges(step)[0, 0]
    # exact zeros: Sobel (float64 numpy) sums whole-number multiples of 0 or 1 on the flat parts
    assert e[:, 3:5].min() > 0 and e[:, :2].abs().max() == 0 and e[:, 6:].abs().max() == 0  # only at the edge


def test_recovery_correlates_each_projection_with_its_image_and_the_next_ones():
    ramp = torch.arange(64, dtype=torch.float64).reshape(1, 1, 8, 8)
    shown = torch.cat([ramp, -ramp + 63])  # the second image ranks every pixel the other way round
    found = sanity.recovery({"copy": shown, "inverse": shown.flip(0)}, shown)
    assert set(found["copy"]) == {"image", "other image", "edges", "other edges"}
    assert np.allclose(found["copy"]["image"], 1) and np.allclose(found["copy"]["other image"], -1)  # exact ranks
    assert np.allclose(found["inverse"]["image"], -1) and np.allclose(found["inverse"]["other image"], 1)


# ---------------------------------------------------------------- randomised copies

def test_weight_layers_in_forward_order(mini):
    assert list(sanity.weight_layers(mini)) == list(reversed(ORDER))


def test_randomize_changes_exactly_the_named_layers_and_leaves_the_original(mini):
    before = {k: v.clone() for k, v in mini.state_dict().items()}
    copy = sanity.randomize(mini, ["fc7", "conv3"], seed=1)
    assert _changed(mini, copy) == {"fc7", "conv3"}
    assert all(torch.equal(v, mini.state_dict()[k]) for k, v in before.items())
    assert not copy.training


def test_randomize_draws_he_initialisation(mini):
    copy = sanity.randomize(mini, ["fc6", "conv4"], seed=3)
    for name in ("fc6", "conv4"):
        m = sanity.weight_layers(copy)[name]
        fan_in = m.weight[0].numel()
        assert m.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.05)
        assert abs(m.weight.mean().item()) < 0.1 * math.sqrt(2 / fan_in)
        assert m.bias.abs().max() == 0


def test_randomize_is_deterministic_by_seed(mini):
    a, b, c = (sanity.randomize(mini, ["conv2"], seed=s) for s in (5, 5, 6))
    assert torch.equal(a.features.conv2.weight, b.features.conv2.weight)
    assert not torch.equal(a.features.conv2.weight, c.features.conv2.weight)


@pytest.mark.parametrize("bad", ["conv9", ["fc8", "pool1"], ["relu1"]])
def test_unknown_layers_are_named_with_the_valid_ones(mini, bad):
    with pytest.raises(ValueError, match="conv1, conv2, conv3, conv4, conv5, fc6, fc7, fc8"):
        sanity.randomize(mini, bad)
    with pytest.raises(ValueError, match="weight layers are"):
        list(sanity.cascade(mini, order=[bad] if isinstance(bad, str) else bad))


def test_cascade_runs_top_down_and_is_cumulative(mini):
    steps = list(sanity.cascade(mini, seed=2))
    assert [name for name, _ in steps] == list(ORDER)
    for k, (_, copy) in enumerate(steps):
        assert _changed(mini, copy) == set(ORDER[: k + 1])
    last = sanity.weight_layers(steps[-1][1])
    for k, (name, copy) in enumerate(steps):  # a layer keeps its random weights in every later step
        assert torch.equal(sanity.weight_layers(copy)[name].weight, last[name].weight)


def test_independent_randomises_one_layer_each_with_the_cascade_weights(mini):
    steps = list(sanity.independent(mini, ["conv1", "fc8"], seed=2))
    assert [n for n, _ in steps] == ["conv1", "fc8"]
    full = sanity.weight_layers(sanity.randomize(mini, ORDER, seed=2))
    for name, copy in steps:
        assert _changed(mini, copy) == {name}
        assert torch.equal(sanity.weight_layers(copy)[name].weight, full[name].weight)


# ---------------------------------------------------------------- projections

def test_conv_projections_are_the_deconvnet_per_pair(mini):
    torch.manual_seed(0)
    x = torch.randn(4, 1, 32, 32)
    units = [3, 0, 3, 7]
    for rule in ("deconvnet", "guided", "gradient"):
        got = sanity.project(mini, x, "conv4", units, rule)
        full = Deconvnet(mini, rule).project(x, "conv4", channels=units, mode="max")
        for i, u in enumerate(units):
            assert torch.allclose(got[i], full[i, i], atol=1e-6)


def test_gradient_rule_from_a_logit_is_autograd_without_lrn(mini):
    mini.features.norm1, mini.features.norm2 = nn.Identity(), nn.Identity()  # LRN is the identity on the way down
    torch.manual_seed(1)
    x = torch.randn(3, 1, 32, 32, requires_grad=True)
    classes = torch.tensor([2, 9, 2])
    (ref,) = torch.autograd.grad(mini(x)[torch.arange(3), classes].sum(), x)
    got = sanity.project(mini, x.detach(), "fc8", classes, "gradient")
    assert torch.allclose(got, ref, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("rule", ["deconvnet", "guided", "gradient"])
def test_logit_projection_continues_the_deconvnet_engine(mini, rule):
    """A one-output fc8 whose weights are pool5's channel-c map: its projection is the deconvnet's
    full-map projection of that channel (the engine is oracle-tested in test_deconv.py)."""
    torch.manual_seed(2)
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        pool5 = mini.features(x)
    seed = torch.zeros_like(pool5)
    seed[0, 5] = pool5[0, 5]
    mini.classifier = nn.Sequential(OrderedDict(fc8=nn.Linear(pool5.numel(), 1)))
    with torch.no_grad():
        mini.classifier.fc8.weight.copy_(seed.flatten()[None])
    got = sanity.project(mini, x, "fc8", [0], rule)[0]
    ref = Deconvnet(mini, rule).project(x, "pool5", channels=[5], mode="map")[0, 0]
    assert torch.allclose(got, ref, atol=1e-5, rtol=1e-4)


def test_project_rejects_bad_input(mini):
    x = torch.randn(2, 1, 32, 32)
    with pytest.raises(ValueError, match="deconvnet, guided, gradient"):
        sanity.project(mini, x, "fc8", 0, "lrp")
    with pytest.raises(ValueError, match="unknown layer"):
        sanity.project(mini, x, "fc9", 0)
    with pytest.raises(ValueError, match="out of range"):
        sanity.project(mini, x, "fc8", [0, 10])
    with pytest.raises(ValueError, match="one per image"):
        sanity.project(mini, x, "conv5", [0, 1, 2])


def test_sweep_scores_one_where_nothing_changed(mini):
    torch.manual_seed(3)
    x = torch.randn(4, 1, 32, 32)
    variants = [("same", mini), ("fc8", sanity.randomize(mini, ["fc8"]))]
    result = sanity.sweep(mini, variants, x, "conv5", [0, 1, 2, 3], rules=("guided", "gradient"), examples=2)
    assert result.steps == ["same", "fc8"]
    for rule in ("guided", "gradient"):
        for metric in sanity.METRICS:  # conv5's projection cannot depend on fc8: identical in both steps
            assert result.mean(rule, metric) == pytest.approx([1.0, 1.0])
        assert result.examples[rule].shape == (3, 2, 1, 32, 32)
    assert set(result.records()["mean"]) == {"guided", "gradient"}


def test_small_patches_shrink_the_ssim_window():
    a = torch.randn(1, 5, 5)
    assert sanity.similarity(a, a)["ssim"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="3x3"):
        sanity.similarity(torch.randn(1, 2, 2), torch.randn(1, 2, 2))


def test_relative_change_is_zero_for_a_copy_and_one_for_a_sign_flip(mini):
    flipped = sanity.randomize(mini, [])
    with torch.no_grad():
        flipped.features.conv2.weight.neg_()
    change = sanity.relative_change(mini, flipped)
    assert change["conv2"] == pytest.approx(2.0) and change["conv1"] == 0.0  # exact: conv1 is a copy


def test_figures_have_one_axes_per_panel(mini):
    from zfkit import gallery, data

    torch.manual_seed(4)
    x = torch.randn(3, 1, 32, 32)
    result = sanity.sweep(mini, sanity.cascade(mini, order=["fc8", "conv5"]), x, "fc8", [0, 1, 2], examples=2)
    assert len(sanity.draw_sweep(result).axes) == 3
    assert len(sanity.draw_examples(result, pair=1, image=x[1]).axes) == 3 * 4
    sets = {"a": {"guided": x}, "b": {"guided": -x}}
    assert len(sanity.draw_comparison(sets, images=x, count=2).axes) == 2 * 3
    images = data.TensorImages(torch.randn(12, 1, 32, 32), torch.arange(12) % 10, tuple("abcdefghij"))
    panels = {rule: gallery.top_projections(mini, images, "conv3", [0, 1], k=4, rule=rule, progress=False)
              for rule in ("deconvnet", "gradient")}
    assert len(sanity.draw_rules(panels, labels=images.classes).axes) == 2 * 3


def test_units_may_be_one_int_a_list_or_an_array(mini):
    x = torch.randn(2, 1, 32, 32)
    one = sanity.project(mini, x, "fc8", 3, "gradient")
    # exact: every form becomes the same unit tensor, then the same kernel calls on the same shapes
    assert torch.equal(one, sanity.project(mini, x, "fc8", [3, 3], "gradient"))
    assert torch.equal(one, sanity.project(mini, x, "fc8", np.array([3, 3]), "gradient"))
    assert torch.equal(one, sanity.project(mini, x, "fc8", torch.tensor(3), "gradient"))
