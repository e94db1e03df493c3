"""The measurements and noises behind the verdicts of the deconvnet, feature-evolution and sanity-check
chapters (03, 04, 10): closed-form inputs, and for each one inputs that make its verdict come out
reproduced (True), not reproduced (False) and inconclusive (None)."""

import numpy as np
import pytest
import torch

from zfkit import verdicts
from zfkit.data import TensorImages
from zfkit.gallery import (Panel, active_maps, classes_per_map, coherence, control_contrast, evolution, evolutions,
                           grouping, map_measures, top_projections)
from zfkit.sanity import Sweep, mean_with_noise, paired_difference
from zfkit.topk import TopK, topk, topk_layers
from helpers import random_mini


def _panel(patches, labels=None, channel=0):
    k = len(patches)
    labels = torch.zeros(k, dtype=torch.long) if labels is None else torch.tensor(labels)
    return Panel("conv2", channel, torch.ones(k), torch.arange(k), None, patches, labels)


def _maps(vectors, k=3, jitter=0.0, seed=0):
    """One panel per vector: k patches equal to the vector plus ``jitter`` x noise."""
    g = torch.Generator().manual_seed(seed)
    return [_panel(torch.tensor(v, dtype=torch.float64).repeat(k, 1).view(k, 1, 1, -1)
                   + jitter * torch.randn(k, 1, 1, len(v), generator=g, dtype=torch.float64), channel=i)
            for i, v in enumerate(vectors)]


# ---------------------------------------------------------------- chapter 3: grouping, classes, the control

def test_grouping_closed_form():
    # two maps of identical patches, orthogonal to each other: within 1, across 0
    assert grouping(_maps([[1, 0], [0, 1]])) == pytest.approx([1.0, 1.0])
    # three maps, all patches identical: within 1, across 1, no grouping
    assert grouping(_maps([[1, 1], [1, 1], [1, 1]])) == pytest.approx([0.0, 0.0, 0.0])
    # map 0 = (1, 0), map 1 = (1, 1)/sqrt2, map 2 = (0, 1): across cosines 1/sqrt2, 0, 1/sqrt2
    c = 1 / np.sqrt(2)
    assert grouping(_maps([[1, 0], [1, 1], [0, 1]])) == pytest.approx([1 - c / 2, 1 - c, 1 - c / 2])
    # an all-zero patch has cosine 0 with everything, as in coherence
    zero = _panel(torch.tensor([[1.0, 0], [1.0, 0], [0, 0]]).view(3, 1, 1, 2))
    other = _panel(torch.tensor([[0.0, 1]]).repeat(3, 1).view(3, 1, 1, 2), channel=1)
    assert grouping([zero, other]) == pytest.approx([1 / 3, 1.0])


def test_grouping_mean_equals_coherence():
    g = torch.Generator().manual_seed(1)
    panels = [_panel(torch.randn(4, 1, 3, 3, generator=g), channel=i) for i in range(5)]
    c = coherence(panels)
    assert grouping(panels).mean() == pytest.approx(c["within"] - c["across"])


def test_grouping_rejects_bad_panels():
    with pytest.raises(ValueError, match="two maps"):
        grouping(_maps([[1, 0]]))
    with pytest.raises(ValueError, match="same k"):
        grouping([_panel(torch.ones(3, 1, 1, 2)), _panel(torch.ones(2, 1, 1, 2))])


@pytest.mark.parametrize("trained_jitter, expected", [(0.05, True), (1.5, False), (None, None)])
def test_grouping_trained_minus_untrained_verdicts(trained_jitter, expected):
    """Trained maps tightly grouped vs a control of loose maps -> reproduced; the reverse -> not; the same -> inconclusive."""
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(12, 16))
    control = grouping(_maps(directions, k=6, jitter=0.5, seed=1))
    trained = control.copy() if trained_jitter is None else grouping(_maps(directions, k=6, jitter=trained_jitter, seed=2))
    effect = trained.mean() - control.mean()
    assert verdicts.exceeds(effect, 0, verdicts.mean_difference_noise(trained, control)) is expected


def test_classes_per_map_counts_distinct_labels():
    p = torch.zeros(4, 1, 2, 2)
    assert classes_per_map([_panel(p, [1, 1, 2, 3]), _panel(p, [5, 5, 5, 5])]).tolist() == [3.0, 1.0]
    with pytest.raises(ValueError, match="at least one panel"):
        classes_per_map([])


def test_control_contrast_closed_form():
    effect, noise = control_contrast([4, 6], [1, 3], [3, 3], [2, 2])
    assert effect == pytest.approx((5 - 2) - (3 - 2))
    assert noise == pytest.approx(np.sqrt(2 * (2 / 2)))  # var 2 over 2 maps, twice; the control has none
    with pytest.raises(ValueError, match="two values"):
        control_contrast([1], [1, 2], [1, 2], [1, 2])


@pytest.mark.parametrize("trained_high, control_high, expected", [
    (1.0, 3.9, True),   # trained: fewer classes at the top, control: not -> learned invariance
    (4.0, 1.0, False),  # the control's top is the more class-specific one
    (2.0, 2.0, None),   # both drop alike (the receptive field, not learning): no effect beyond the noise
])
def test_control_contrast_verdicts(trained_high, control_high, expected):
    rng = np.random.default_rng(0)
    n = 40
    spread = lambda centre: centre + rng.normal(0, 0.5, n)  # noqa: E731
    low, low_control = spread(4.0), spread(4.0)
    effect, noise = control_contrast(low, spread(trained_high), low_control, spread(control_high))
    assert verdicts.exceeds(effect, 0, noise) is expected


def test_active_maps_keeps_maps_with_k_positive_activations():
    values = torch.tensor([[3.0, 2.0, 1.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0], [5.0, 4.0, 0.5]])
    scan = TopK(values, torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, 3, dtype=torch.long),
                torch.zeros(4, 3, dtype=torch.long))
    assert active_maps(scan, 3) == [0, 3]
    assert active_maps(scan, 1) == [0, 1, 3]
    with pytest.raises(ValueError, match="k must be between"):
        active_maps(scan, 4)


def test_topk_layers_equals_topk_layer_by_layer():
    model = random_mini()
    ds = TensorImages(torch.randn(21, 1, 32, 32), torch.arange(21) % 10, tuple("0123456789"))
    layers = ("conv1", "conv3", "conv5", "pool2")
    scans = topk_layers(model, ds, layers, k=4, batch_size=8, progress=False)
    assert list(scans) == list(layers)
    for layer in layers:  # equal bit for bit: the same modules on the same batches, in one process and thread count
        single = topk(model, ds, layer, k=4, batch_size=8, progress=False)
        for field in ("values", "indices", "ys", "xs"):
            assert torch.equal(getattr(scans[layer], field), getattr(single, field)), (layer, field)
    mixed = topk_layers(model, ds, ["conv1", "fc7"], k=4, batch_size=8, progress=False)  # any layers, one pass
    assert torch.equal(mixed["fc7"].values, topk(model, ds, "fc7", k=4, batch_size=8, progress=False).values)


def test_map_measures_cover_every_active_map():
    model = random_mini()
    ds = TensorImages(torch.randn(16, 1, 32, 32), torch.arange(16) % 10, tuple("0123456789"))
    scans = topk_layers(model, ds, ["conv1", "conv5"], k=3, progress=False)
    scans["conv5"].values[1] = 0.0  # map 1 made dead: no top-3
    measured = map_measures(model, ds, scans, k=3)
    for layer, scan in scans.items():
        maps = top_projections(model, ds, layer, active_maps(scan, 3), k=3, scan=scan, progress=False, project=False)
        assert measured[layer]["grouping"] == pytest.approx(grouping(maps))
        assert measured[layer]["classes"].tolist() == classes_per_map(maps).tolist()
    assert len(measured["conv5"]["grouping"]) == len(active_maps(scans["conv5"], 3)) < scans["conv5"].values.shape[0]


# ---------------------------------------------------------------- chapter 4: evolutions of several layers

def test_evolutions_match_evolution_and_head_keeps_the_first_maps():
    torch.manual_seed(0)
    ds = TensorImages(torch.randn(8, 1, 32, 32), torch.arange(8) % 10, tuple("0123456789"))
    a, b = random_mini(seed=1), random_mini(seed=2)
    snapshots = {1: a, 3: b}
    both = evolutions(snapshots, ds, {"conv2": [0, 3, 5], "conv5": [1]})
    assert [e.layer for e in both] == ["conv2", "conv5"]
    for evo in both:  # equal bit for bit: the same snapshots run on the same batches in this process
        alone = evolution(snapshots, ds, evo.layer, evo.channels)
        assert torch.equal(evo.indices, alone.indices) and torch.equal(evo.projections, alone.projections)
    head = both[0].head(2)
    assert head.channels == [0, 3] and head.projections.shape[:2] == (2, 2)
    assert torch.equal(head.indices, both[0].indices[:, :2])
    evo = both[0]
    evo.values[-1, 1] = 0.0  # map 3 dead at the end of training
    alive = evo.active()
    assert alive.channels == [0, 5] and torch.equal(alive.projections, evo.projections[:, [0, 2]])


@pytest.mark.parametrize("late, expected", [(16, True), (1, False), (None, None)])
def test_settling_epoch_difference_verdicts(late, expected):
    """Fig. 4: conv5 settles later than conv1 -> reproduced; earlier -> not; spread across -> inconclusive."""
    conv1 = [1, 2, 1, 2, 1, 2, 1, 2]
    conv5 = [1, 16, 1, 16, 1, 2, 1, 2] if late is None else [late, late - 1 if late > 1 else 1] * 4
    if late == 1:
        conv1 = [15, 16] * 4
    effect = np.mean(conv5) - np.mean(conv1)
    assert verdicts.exceeds(effect, 0, verdicts.mean_difference_noise(conv5, conv1)) is expected


# ---------------------------------------------------------------- chapter 10: means over images, paired differences

def test_mean_with_noise_closed_form():
    assert mean_with_noise([1.0, 3.0]) == pytest.approx((2.0, 1.0))  # std 1.414 / sqrt 2
    # groups of 2 averaged first: (1, 3) -> 2, (5, 7) -> 6, (nan, 4) -> 4
    assert mean_with_noise([1, 3, 5, 7, float("nan"), 4], group=2) == pytest.approx((4.0, 2 / np.sqrt(3)))
    with pytest.raises(ValueError, match="multiple of group"):
        mean_with_noise([1, 2, 3], group=2)
    with pytest.raises(ValueError, match="2 defined groups"):
        mean_with_noise([1.0, float("nan")])


@pytest.mark.parametrize("centre, expected", [(0.97, True), (0.70, False), (0.90, None)])
def test_mean_with_noise_threshold_verdicts(centre, expected):
    """"SSIM >= 0.9" decided only beyond twice the standard error over images."""
    ssim = centre + np.random.default_rng(0).normal(0, 0.05, 32)
    ssim += centre - ssim.mean()  # exactly centred
    mean, noise = mean_with_noise(ssim)
    assert verdicts.exceeds(mean, 0.9, noise) is expected


def test_paired_difference_closed_form_and_pairing():
    a = np.array([10.0, 20.0, 30.0, 40.0])
    assert paired_difference(a + 1, a) == pytest.approx((1.0, 0.0))  # the shared part cancels
    assert paired_difference([3.0, 1.0, 6.0, 2.0], [1.0, 1.0, 1.0, 1.0], group=2) == pytest.approx((2.0, 1.0))  # groups: 1, 3
    with pytest.raises(ValueError, match="same pairs"):
        paired_difference([1.0, 2.0], [1.0, 2.0, 3.0])


@pytest.mark.parametrize("shift, expected", [(0.1, True), (-0.1, False), (0.0, None)])
def test_paired_difference_verdicts(shift, expected):
    rng = np.random.default_rng(3)
    deconvnet = rng.uniform(0.3, 0.6, 8 * 9)
    guided = deconvnet + shift + rng.normal(0, 0.02, 8 * 9)
    guided -= (guided - deconvnet).mean() - shift
    effect, noise = paired_difference(guided, deconvnet, group=9)
    assert verdicts.exceeds(effect, 0, noise) is expected


def _sweep(values):
    scores = {"guided": {m: np.asarray(values, dtype=float)[None] for m in ("ssim", "spearman_abs", "spearman")}}
    return Sweep("fc8", ["fc6"], ("guided",), scores, {}, {})


def test_sweep_noise_is_the_standard_error_over_pairs():
    s = _sweep([0.8, 1.0, float("nan")])
    assert s.at("fc6", "guided", "ssim") == pytest.approx(0.9)
    assert s.noise("fc6", "guided", "ssim") == pytest.approx(0.1)
    with pytest.raises(ValueError, match="unknown step"):
        s.noise("fc7", "guided", "ssim")


@pytest.mark.parametrize("values, expected", [([0.97, 0.99, 0.98, 0.96], True), ([0.5, 0.7, 0.6, 0.8], False),
                                              ([0.7, 1.1, 0.8, 1.0], None)])
def test_sweep_threshold_verdicts(values, expected):
    s = _sweep(values)
    assert verdicts.exceeds(s.at("fc6", "guided", "ssim"), 0.9, s.noise("fc6", "guided", "ssim")) is expected
