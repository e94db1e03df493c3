"""Chapter 9's verdicts (zfkit.claims.transfer): each outcome from closed-form measurements."""

import numpy as np
import pytest

from zfkit.claims import transfer as chapter
from zfkit.probes import FewShotCurve
from zfkit.results import verdict_table
from zfkit.verdicts import k_for, samples_needed, standard_error

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")


def check(row, source):
    assert (row.needed is not None) is (row.holds is None)
    assert row.threshold.source == source and row.threshold.why and "folds" in row.noise
    assert verdict_table([row])  # noise stated, an inconclusive row with its budget


# ---------------------------------------------------------------- "a wide margin"

@pytest.mark.parametrize("margins, outcome", [
    ([40, 42, 38, 41], True),     # 40.25 - 3.18 * 0.85 > 10
    ([-5, -3, -4, -6], False),    # far below 10
    ([12, 9, 11, 8], None),       # 10 ± 0.9: on the threshold, where no budget decides
    ([5, 30, 10, 20], None),      # 16.25 ± 5.5: within Student's t (4 folds) of 10
])
def test_margin_verdict_outcomes(margins, outcome):
    row = chapter.margin_verdict(margins, (1, 30))
    assert row.claim == chapter.TRANSFER and row.holds is outcome and row.threshold.value == chapter.WIDE_MARGIN
    assert f"fc7: {np.mean(margins):+.1f} ± {standard_error(margins):.1f} points on average over 1-30" in row.measured
    check(row, "ours")


def test_margin_verdict_flips_where_its_noise_says_and_names_the_budget():
    margins = [5, 30, 10, 20]
    mean, se = np.mean(margins), standard_error(margins)
    row = chapter.margin_verdict(margins, (1, 30))
    assert row.flips_at == pytest.approx(mean - k_for(4) * se, abs=1e-6)
    assert row.needed == f"{samples_needed(mean - 10, se, 4)} folds (measured on 4)"


def test_margin_verdict_serves_another_net():
    """Chapter 11's call: its own features, words and threshold, the same claim text."""
    row = chapter.margin_verdict([40, 42, 38, 41], (1, 30), features="Lite0 pool", detail=" against a scratch net",
                                 threshold=45)
    assert row.measured.startswith("Lite0 pool: +40.2") and row.measured.endswith("against a scratch net")
    assert row.holds is False and row.threshold.value == 45


@pytest.mark.parametrize("margins", [[10.0], [[1.0, 2.0], [3.0, 4.0]]])
def test_margin_verdict_needs_one_margin_per_fold(margins):
    with pytest.raises(ValueError, match="one number per fold"):
        chapter.margin_verdict(margins, (1, 30))


# ---------------------------------------------------------------- Table 7

def rows(means, std=0.01):
    return [{"layer": layer, "classifier": c, "mean": m, "std": std, "dims": 512}
            for c in ("svm", "softmax") for layer, m in zip(LAYERS, means)]


RISING = [0.5 + 0.05 * i for i in range(7)]


@pytest.mark.parametrize("means, std, outcome", [
    (RISING, 0.01, True),                                   # +5 points per layer, ± 0.05
    (RISING[::-1], 0.01, False),                            # falls
    (RISING[:4] + [0.5, 0.85, 0.9], 0.01, False),           # rises overall, but conv5 drops 15 points beyond noise
    ([0.5 + 0.002 * i for i in range(7)], 0.05, None),      # +0.2 ± 0.42 points per layer
    ([0.8, 0.79, 0.83, 0.85, 0.84, 0.88, 0.90], 0.01, True),  # steps down within noise pass, as in the paper's Table 7
])
def test_rises_verdict_outcomes(means, std, outcome):
    row = chapter.rises_verdict(rows(means, std), folds=5)
    assert row.claim == chapter.RISES and row.holds is outcome and row.threshold.value == 0
    assert "SVM:" in row.measured and "softmax:" in row.measured and "conv1" in row.measured
    check(row, "paper")


def test_a_falling_step_decides_with_its_own_flip_point():
    row = chapter.rises_verdict(rows(RISING[:4] + [0.5, 0.85, 0.9]), folds=5)
    step_noise = 100 * np.hypot(0.01, 0.01) / np.sqrt(5)
    assert row.flips_at == pytest.approx(-15 + k_for(5) * step_noise, abs=1e-5)


def test_one_classifier_that_does_not_rise_decides_the_row():
    mixed = rows(RISING)[:7] + rows(RISING[::-1])[7:]  # svm rises, softmax falls
    assert chapter.rises_verdict(mixed, folds=5).holds is False


# ---------------------------------------------------------------- the chapter's rows

def curve(pretrained, scratch=None, layer="fc7", folds=5):
    """Accuracies constant over the shots; the pretrained ones rise by 1 point per fold (margins k + 0 … 4)."""
    shots = (1, 5, 10)
    scores = np.full((len(shots), folds), pretrained) + 0.01 * np.arange(folds)
    return FewShotCurve(shots, layer, scores, None if scratch is None else np.full((len(shots), folds), scratch), ())


def test_claims_rows_in_order_with_the_best_layer_beside_fc7():
    curves = {"digits": curve(0.9, 0.5), "fashion 5→5": curve(0.6, 0.55)}  # margins 42 ± 0.7 and 7 ± 0.7
    best = {"digits": curve(0.95, layer="conv2"), "fashion 5→5": curve(0.7, layer="conv1")}
    table7 = {"digits": rows(RISING), "fashion 5→5": rows(RISING[::-1])}
    out = chapter.claims(curves, best, table7, table7_folds=5)
    assert [r.claim for r in out] == [chapter.TRANSFER, chapter.TRANSFER_FASHION, chapter.RISES, chapter.RISES_FASHION]
    assert [r.holds for r in out] == [True, False, True, False]
    assert out[0].measured == ("fc7: +42.0 ± 0.7 points on average over 1-10 images/class (1/class +42.0); "
                               "best layer conv2: +47.0 ± 0.7")
    assert verdict_table(out)


def test_claims_need_every_target_known_and_complete():
    curves = {"cifar": curve(0.9, 0.5)}
    with pytest.raises(ValueError, match="digits, fashion 5→5"):
        chapter.claims(curves, {"cifar": curve(0.9)}, {"cifar": rows(RISING)}, 5)
    with pytest.raises(ValueError, match="same targets"):
        chapter.claims({"digits": curve(0.9, 0.5)}, {}, {"digits": rows(RISING)}, 5)


def test_a_margin_on_the_threshold_names_no_budget():
    row = chapter.margin_verdict([12, 9, 11, 8], (1, 30))  # 10.0 ± 0.9: the effect sits on the threshold
    assert row.holds is None and row.needed.startswith("no budget decides it")
