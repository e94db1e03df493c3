"""The measurements and noises behind the verdicts of chapters 5, 6, 7 and 9.

Each function is fed closed-form, synthetic inputs built so that the chapter's rule must read
reproduced (True), not reproduced (False) or inconclusive (None); a rule that could only ever say
one of them would fail here.
"""

import math

import numpy as np
import pytest
import torch

from zfkit import verdicts
from zfkit.correspondence import Delta, PartTable, below_share, gap_difference, relative_gaps
from zfkit.invariance import InvarianceResult, first_step_ratio, image_bootstrap, retained, select
from zfkit.occlusion import ObjectSensitivity, OcclusionResult, localisation, object_sensitivity
from zfkit.probes import FewShotCurve, fold_margins, layer_trend


# ---------------------------------------------------------------- chapter 5: invariance

AMOUNTS = [-2.0, -1.0, 0.0, 1.0, 2.0]  # translate: magnitudes 2, 1, 0, 1, 2


def _sweep(conv1, fc7, prob=None, kind="translate", amounts=AMOUNTS):
    """A hand-made sweep: ``conv1``/``fc7`` (N, A) relative distances, ``prob`` (N, A) p(true)."""
    conv1, fc7 = torch.as_tensor(conv1, dtype=torch.float32), torch.as_tensor(fc7, dtype=torch.float32)
    n = len(conv1)
    prob = torch.full((n, len(amounts)), 0.9) if prob is None else torch.as_tensor(prob, dtype=torch.float32)
    d = {"conv1": conv1, "fc7": fc7}
    return InvarianceResult(kind, torch.tensor(amounts), d, d, prob, torch.zeros(n, dtype=torch.long))


def _curves(n, first, last, spread, seed):
    """``n`` images whose distance is ``first`` at magnitude 1 and ``last`` at magnitude 2 (± ``spread``)."""
    g = torch.Generator().manual_seed(seed)
    scale = 1 + spread * torch.randn(n, 1, generator=g)
    return scale * torch.tensor([[last, first, 0.0, first, last]])


def test_select_takes_rows_with_repeats():
    s = _sweep(_curves(4, 0.5, 0.8, 0.1, 0), _curves(4, 0.1, 0.2, 0.1, 1))
    picked = select(s, [3, 3, 0])
    assert torch.equal(picked.normalized["fc7"], s.normalized["fc7"][[3, 3, 0]])
    assert picked.prob.shape == (3, 5) and picked.kind == "translate"
    with pytest.raises(ValueError, match="indices of the sweep's 4 images"):
        select(s, [4])


def test_first_step_ratio_is_the_high_layer_over_the_low_one():
    s = _sweep(_curves(3, 0.6, 0.9, 0.0, 0), _curves(3, 0.15, 0.3, 0.0, 0))
    assert first_step_ratio(s) == pytest.approx(0.25)


@pytest.mark.parametrize("trained_fc7, untrained_fc7, expected", [
    (0.1, 0.3, True),  # learning made layer 7 less affected than in the untrained net
    (0.3, 0.1, False),  # the untrained net's layer 7 is the more invariant one
    (0.2, 0.2, None),  # the same ratio: only image noise separates them
])
def test_learned_invariance_rule_reads_all_three_outcomes(trained_fc7, untrained_fc7, expected):
    n = 60
    trained = _sweep(_curves(n, 0.5, 0.8, 0.05, 0), _curves(n, trained_fc7, 2 * trained_fc7, 0.3, 1))
    untrained = _sweep(_curves(n, 0.5, 0.8, 0.05, 2), _curves(n, untrained_fc7, 2 * untrained_fc7, 0.3, 3))
    effect = first_step_ratio(trained) - first_step_ratio(untrained)
    noise = image_bootstrap(lambda t, u: first_step_ratio(t) - first_step_ratio(u), trained, untrained, draws=200)
    assert 0 < noise < 0.1
    assert verdicts.below(effect, 0, noise) is expected


def test_image_bootstrap_pairs_the_sweeps_and_vanishes_for_identical_images():
    s = _sweep(_curves(10, 0.5, 0.8, 0.3, 0), _curves(10, 0.1, 0.2, 0.3, 1))
    assert image_bootstrap(lambda a, b: first_step_ratio(a) - first_step_ratio(b), s, s, draws=50) == 0.0
    same = _sweep(_curves(10, 0.5, 0.8, 0.0, 0), _curves(10, 0.1, 0.2, 0.0, 1))
    assert image_bootstrap(first_step_ratio, same, draws=50) == pytest.approx(0.0, abs=1e-6)
    other = _sweep(_curves(9, 0.5, 0.8, 0.3, 0), _curves(9, 0.1, 0.2, 0.3, 1))
    with pytest.raises(ValueError, match="same images"):
        image_bootstrap(first_step_ratio, s, other)


def test_retained_is_the_share_of_p_true_kept_away_from_the_identity():
    prob = torch.tensor([[0.4, 0.4, 0.8, 0.4, 0.4], [0.2, 0.2, 0.4, 0.2, 0.2]])
    s = _sweep(torch.ones(2, 5), torch.ones(2, 5), prob)
    assert retained(s) == pytest.approx(0.5)
    moved_only = _sweep(torch.ones(2, 2), torch.ones(2, 2), prob[:, :2], amounts=[-2.0, -1.0])
    assert retained(moved_only, reference=s) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no identity amount"):
        retained(moved_only)
    scale = _sweep(torch.ones(2, 3), torch.ones(2, 3), prob[:, 1:4], kind="scale", amounts=[1 / 1.1, 1.0, 1.1])
    assert retained(scale) == pytest.approx(0.5)  # the identity is found by magnitude, not by an exact amount


@pytest.mark.parametrize("kept, expected", [(0.95, True), (0.5, False), (0.8, None)])
def test_stability_rule_reads_all_three_outcomes(kept, expected):
    n = 80
    g = torch.Generator().manual_seed(0)
    upright = (0.9 + 0.05 * torch.rand(n, 1, generator=g))
    moved = (upright * kept * (1 + 0.2 * torch.randn(n, 4, generator=g))).clamp(0, 1)
    prob = torch.cat([moved[:, :2], upright, moved[:, 2:]], 1)
    s = _sweep(torch.ones(n, 5), torch.ones(n, 5), prob)
    noise = image_bootstrap(retained, s, draws=200)
    assert 0 < noise < 0.05
    assert verdicts.exceeds(retained(s), 0.8, noise) is expected


# ---------------------------------------------------------------- chapter 6: occlusion

def _occlusion_result(prob, base_prob=0.8, patch=2, size=5):
    n = size - patch + 1
    prob = torch.as_tensor(prob, dtype=torch.float32).view(n, n)
    return OcclusionResult(torch.zeros(n, n), prob, torch.zeros(n, n, dtype=torch.long), 0, torch.zeros(1, size, size),
                           torch.arange(n), torch.arange(n), patch, "conv5", 0, 10.0, base_prob, 0, 0)


def test_a_drop_within_the_tolerance_has_no_worst_place():
    prob = torch.full((16,), 0.8)
    prob[5] = 0.8 * (1 - 0.005)  # a float-rounding-sized dip
    obj = torch.zeros(5, 5, dtype=torch.bool)
    obj[1:3, 1:3] = True
    r = _occlusion_result(prob)
    assert object_sensitivity(r, obj).worst_on_object is True  # the default keeps the exact comparison
    assert object_sensitivity(r, obj, min_drop=0.01).worst_on_object is None
    prob[5] = 0.4
    assert object_sensitivity(_occlusion_result(prob), obj, min_drop=0.01).worst_on_object is True
    with pytest.raises(ValueError, match="min_drop"):
        object_sensitivity(r, obj, min_drop=1.0)


@pytest.mark.parametrize("on, off, expected", [(30, 10, True), (10, 30, False), (11, 9, None)])
def test_localisation_reads_all_three_outcomes(on, off, expected):
    images = [ObjectSensitivity(0.5, True, 0.5)] * on + [ObjectSensitivity(0.5, False, 0.5)] * off
    images += [ObjectSensitivity(0.0, None, 0.9)] * 5  # no worst place: left out
    excess, noise, n = localisation(images)
    assert n == on + off and excess == pytest.approx(on / n - 0.5)
    assert noise == pytest.approx(verdicts.standard_error([0.5] * on + [-0.5] * off))
    assert verdicts.exceeds(excess, 0, noise) is expected


def test_localisation_needs_images_with_a_worst_place():
    with pytest.raises(ValueError, match="at least 2 images"):
        localisation([ObjectSensitivity(0.5, True, 0.5), ObjectSensitivity(0.0, None, 0.5)])


# ---------------------------------------------------------------- chapter 7: correspondence

def _table(parts, random, name="Boot", layers=("conv5",)):
    """A PartTable whose parts have Δ ``parts`` and whose random row ``random`` at every layer (or per layer, dicts)."""
    at = lambda v, layer: v[layer] if isinstance(v, dict) else v  # noqa: E731
    delta = lambda m: Delta(torch.tensor([m]), m, 0.0)  # noqa: E731
    return PartTable(name, list(layers), {f"p{i}": {layer: delta(at(m, layer)) for layer in layers} for i, m in enumerate(parts)},
                     {layer: delta(at(random, layer)) for layer in layers})


def test_relative_gaps_per_table():
    gaps = relative_gaps([_table([0.1, 0.3, 0.2], 0.25), _table([0.4, 0.5], 0.5)], "conv5")
    assert gaps == pytest.approx([0.2, 0.1])
    with pytest.raises(ValueError, match="not in every table"):
        relative_gaps([_table([0.1], 0.2)], "fc7")


@pytest.mark.parametrize("parts, expected", [
    ([0.1, 0.15, 0.12], True),  # every part below random (0.2)
    ([0.3, 0.25, 0.28], False),  # every part above
    ([0.1, 0.3, 0.15, 0.25], None),  # half below: a coin
])
def test_below_share_reads_all_three_outcomes(parts, expected):
    tables = [_table(parts, 0.2, name=f"c{i}") for i in range(8)]
    share, noise = below_share(tables, "conv5")
    assert noise >= verdicts.share_noise(len(parts) * 8)  # never below the binomial noise of a coin
    assert verdicts.exceeds(share, 0.5, noise) is expected


def test_below_share_noise_counts_tables_that_disagree():
    tables = [_table([0.1, 0.1, 0.1], 0.2, name="a")] * 3 + [_table([0.3, 0.3, 0.3], 0.2, name="b")] * 3
    share, noise = below_share(tables, "conv5")
    assert share == 0.5 and noise > verdicts.share_noise(18)  # the parts of a table move together


@pytest.mark.parametrize("trained_parts, expected", [(0.1, True), (0.19, False), (None, None)])
def test_gap_difference_trained_against_untrained_reads_all_three_outcomes(trained_parts, expected):
    rng = np.random.default_rng(0)
    untrained = [_table([0.15 + 0.01 * rng.standard_normal()] * 3, 0.2, name=f"c{i}") for i in range(10)]
    if trained_parts is None:  # as the untrained net, up to noise of the same size
        trained = [_table([0.15 + 0.01 * rng.standard_normal()] * 3, 0.2, name=f"c{i}") for i in range(10)]
    else:
        trained = [_table([trained_parts + 0.01 * rng.standard_normal()] * 3, 0.2, name=f"c{i}") for i in range(10)]
    diff, noise = gap_difference(trained, "conv5", untrained)
    assert 0 < noise < 0.05
    assert verdicts.exceeds(diff, 0, noise) is expected


@pytest.mark.parametrize("fc7_parts, expected", [(0.19, True), (0.05, False), (0.15, None)])
def test_gap_difference_between_layers_reads_all_three_outcomes(fc7_parts, expected):
    rng = np.random.default_rng(1)
    tables = [_table([{"conv5": 0.15 + 0.005 * rng.standard_normal(), "fc7": fc7_parts + 0.02 * rng.standard_normal()}] * 3,
                     0.2, name=f"c{i}", layers=("conv5", "fc7")) for i in range(8)]
    diff, noise = gap_difference(tables, "fc7", other_layer="conv5")  # layer 7's gap minus layer 5's
    assert verdicts.below(diff, 0, noise) is expected  # the claim: layer 7's gap is smaller


def test_gap_difference_needs_paired_tables():
    a = [_table([0.1], 0.2, name="x"), _table([0.1], 0.2, name="y")]
    with pytest.raises(ValueError, match="pair table for table"):
        gap_difference(a, "conv5", a[:1])
    with pytest.raises(ValueError, match="classes differ"):
        gap_difference(a, "conv5", a[::-1])
    with pytest.raises(ValueError, match="at least 2 pairs"):
        gap_difference(a[:1], "conv5")


# ---------------------------------------------------------------- chapter 9: transfer

def _curve(pretrained, scratch):
    pretrained, scratch = np.asarray(pretrained, float), np.asarray(scratch, float)
    return FewShotCurve(tuple(range(1, len(pretrained) + 1)), "fc7", pretrained, scratch, ())


def test_fold_margins_average_the_shots_per_fold_in_points():
    c = _curve([[0.6, 0.7], [0.8, 0.9]], [[0.5, 0.5], [0.6, 0.6]])
    assert fold_margins(c) == pytest.approx([15.0, 25.0])
    assert fold_margins(c).mean() == pytest.approx(np.mean(list(c.margin().values())))
    other = FewShotCurve(c.shots, "conv2", np.full((2, 2), 0.9), None, ())
    assert fold_margins(other, baseline=c) == pytest.approx([35.0, 35.0])
    with pytest.raises(ValueError, match="scratch baseline"):
        fold_margins(other)


@pytest.mark.parametrize("gain, expected", [(0.25, True), (0.0, False), (-0.05, False), (0.1, None)])
def test_wide_margin_rule_reads_all_three_outcomes(gain, expected):
    rng = np.random.default_rng(0)
    scratch = 0.5 + 0.03 * rng.standard_normal((4, 5))
    c = _curve(scratch + gain + 0.03 * rng.standard_normal((4, 5)), scratch)
    margins = fold_margins(c)
    assert verdicts.exceeds(margins.mean(), 10, verdicts.standard_error(margins)) is expected


def _rows(means, std, classifier="svm"):
    return [{"layer": f"l{i}", "classifier": classifier, "dims": 10, "mean": m, "std": std} for i, m in enumerate(means)]


@pytest.mark.parametrize("means, std, expected", [
    ([0.50, 0.60, 0.70, 0.80, 0.85], 0.01, True),  # the paper's Table 7: up all the way
    ([0.50, 0.60, 0.70, 0.80, 0.799], 0.01, True),  # a plateau at the top within noise is still steady
    ([0.90, 0.85, 0.80, 0.75, 0.70], 0.01, False),  # falls with depth
    ([0.50, 0.60, 0.70, 0.80, 0.55], 0.01, False),  # rises, then one step falls beyond noise
    ([0.70, 0.71, 0.69, 0.70, 0.71], 0.05, None),  # flat within noise
])
def test_layer_trend_reads_all_three_outcomes(means, std, expected):
    rows = _rows(means, std) + _rows(means[::-1], std, "softmax")
    trend = layer_trend(rows, "svm", folds=5)
    assert trend.layers == ("l0", "l1", "l2", "l3", "l4") and trend.means == pytest.approx(means)
    from zfkit.claims.transfer import rises_verdict

    assert rises_verdict(_rows(means, std), folds=5).holds is expected  # Table 7's rule (zfkit.claims.transfer)


def test_layer_trend_slope_and_noise_in_closed_form():
    trend = layer_trend(_rows([0.5, 0.6, 0.7], 0.02), "svm", folds=4)
    assert trend.slope == pytest.approx(0.1)
    assert trend.slope_noise == pytest.approx(math.sqrt(2 * 0.25 * 0.01 ** 2))  # weights -1/2, 0, 1/2; se 0.02/2
    assert trend.steps == pytest.approx([0.1, 0.1]) and trend.step_noise == pytest.approx([0.01 * math.sqrt(2)] * 2)
    assert trend.falls == 0
    with pytest.raises(ValueError, match="at least 2 layers"):
        layer_trend(_rows([0.5], 0.01), "svm", folds=4)
    with pytest.raises(ValueError, match="folds"):
        layer_trend(_rows([0.5, 0.6], 0.01), "svm", folds=1)


def test_claim_measurements_are_the_single_functions_with_their_bootstrap_noise():
    from zfkit.invariance import claim_measurements, growth

    n = 30
    g = torch.Generator().manual_seed(0)
    prob = (0.5 + 0.4 * torch.rand(n, 5, generator=g))
    trained = {k: _sweep(_curves(n, 0.5, 0.8, 0.1, 0), _curves(n, 0.1, 0.25, 0.2, 1), prob) for k in ("translate", "scale")}
    trained["rotate"] = _sweep(torch.ones(n, 5), torch.ones(n, 5), prob * torch.tensor([0.2, 0.3, 1.0, 0.3, 0.2]),
                               kind="rotate", amounts=[-40.0, -20.0, 0.0, 20.0, 40.0])
    control = {k: _sweep(_curves(n, 0.5, 0.8, 0.1, 2), _curves(n, 0.2, 0.3, 0.2, 3)) for k in ("translate", "scale")}
    m = claim_measurements(trained, control, draws=50)
    t, u = trained["translate"], control["translate"]
    assert m["ratio/translate"][0] == pytest.approx(first_step_ratio(t))
    assert m["learned/translate"][0] == pytest.approx(first_step_ratio(t) - first_step_ratio(u))
    assert m["linearity/scale"][0] == pytest.approx(growth(trained["scale"], "fc7").linearity)
    assert m["kept/rotate"][0] == pytest.approx(retained(trained["rotate"]))
    assert m["rotate_vs_others"][0] == pytest.approx(retained(trained["rotate"]) - retained(t))
    assert m["learned/translate"][1] == pytest.approx(
        image_bootstrap(lambda a, b: first_step_ratio(a) - first_step_ratio(b), t, u, draws=50))
    assert all(noise > 0 for _, noise in m.values())
    # the rules read them: rotation loses the class, layer 7 is learned to be less affected
    (rotation, rotation_noise), (learned, learned_noise) = m["rotate_vs_others"], m["learned/translate"]
    assert verdicts.below(rotation, 0, rotation_noise) is True and verdicts.below(learned, 0, learned_noise) is True
    with pytest.raises(ValueError, match="rotate"):
        claim_measurements({k: v for k, v in trained.items() if k != "rotate"}, control)
