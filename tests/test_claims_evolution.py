"""Chapter 4's verdicts (zfkit.claims.evolution): each outcome of Fig. 4's three claims, from closed-form
per-map measurements over snapshots that start at epoch 0 (the untrained network)."""

import numpy as np
import pytest

from zfkit.claims import evolution
from zfkit.results import verdict_table
from zfkit.verdicts import NOT_TESTABLE

EPOCHS = [0, 1, 2, 4]


def _spread(mean, spread, n):
    """n values evenly spread over mean ± spread: their mean is exactly ``mean``."""
    return mean + spread * np.linspace(-1, 1, n)


def _similarity(start, early, spread=0.02, n=16):
    """(snapshots, maps) cosine to the final: ``start`` at epoch 0, ``early`` at epoch 1, then 0.99 and 1."""
    return np.stack([_spread(start, spread, n), _spread(early, spread, n), _spread(0.99, 0.005, n), np.ones(n)])


def _claims(low, high, settled_low=(1, 2), settled_high=(4, 4), early=1):
    settled = {"conv1": _spread(np.mean(settled_low), np.ptp(settled_low) / 2, low.shape[1]),
               "conv5": _spread(np.mean(settled_high), np.ptp(settled_high) / 2, high.shape[1])}
    return evolution.claims({"conv1": low, "conv5": high}, settled, EPOCHS, early=early)


def _check(row, claim, outcome):
    assert row.claim == claim and row.holds is outcome
    assert (row.needed is not None) == (outcome is None)
    if outcome is NOT_TESTABLE:
        assert row.precondition and row.threshold is None
    else:
        assert row.threshold.source == "ours" and row.threshold.why and row.noise and row.flips_at is not None
    verdict_table([row])


def test_reproduced_when_conv1_moves_early_and_conv5_settles_later_and_moves_more():
    rows = _claims(_similarity(0.4, 0.97), _similarity(0.1, 0.3))
    for row, claim in zip(rows, (evolution.LOWER_EARLY, evolution.UPPER_LATE, evolution.UPPER_CHANGE)):
        _check(row, claim, True)
    early, late, change = rows
    assert early.threshold.value == evolution.CONVERGED
    assert "epoch 1 of 4: cosine 0.97" in early.measured and "0.40 ± " in early.measured
    assert "conv5 4.0 vs conv1 1.5: +2.5" in late.measured
    assert "conv1 0.40, conv5 0.10: difference +0.30" in change.measured


def test_not_reproduced_when_conv1_is_far_from_final_and_conv5_settles_first_and_moves_less():
    rows = _claims(_similarity(0.1, 0.6), _similarity(0.5, 0.7), settled_low=(3, 4), settled_high=(1, 1))
    for row, claim in zip(rows, (evolution.LOWER_EARLY, evolution.UPPER_LATE, evolution.UPPER_CHANGE)):
        _check(row, claim, False)


def test_inconclusive_within_the_noise_says_how_many_maps_would_decide():
    rows = _claims(_similarity(0.3, 0.92, spread=0.3, n=6), _similarity(0.29, 0.5, spread=0.3, n=6),
                   settled_low=(1, 4), settled_high=(1, 4.5))
    for row, claim in zip(rows, (evolution.LOWER_EARLY, evolution.UPPER_LATE, evolution.UPPER_CHANGE)):
        _check(row, claim, None)
        assert "maps per layer (measured on 6)" in row.needed


def test_convergence_is_not_testable_when_conv1_already_looked_final_before_training():
    early, late, change = _claims(_similarity(0.95, 0.98), _similarity(0.1, 0.3))
    _check(early, evolution.LOWER_EARLY, NOT_TESTABLE)
    assert "epoch 0" in early.precondition and "0.95" in early.precondition
    assert late.holds is True and change.holds is True  # the other claims do not need it


def test_not_testable_with_fewer_than_two_measured_maps():
    rows = _claims(_similarity(0.4, 0.97, n=1), _similarity(0.1, 0.3))
    for row, claim in zip(rows, (evolution.LOWER_EARLY, evolution.UPPER_LATE, evolution.UPPER_CHANGE)):
        _check(row, claim, NOT_TESTABLE)
        assert "conv1 has 1" in row.precondition


def test_the_early_epoch_picks_the_snapshot():
    early = _claims(_similarity(0.4, 0.6), _similarity(0.1, 0.3), early=2)[0]
    assert early.holds is True and "epoch 2 of 4: cosine 0.99" in early.measured


@pytest.mark.parametrize("epochs, early, match", [
    ([1, 2, 4, 8], 1, "epoch 0"),
    (EPOCHS, 0, "early=0"),
    (EPOCHS, 3, "early=3"),
    ([0, 1, 2], 1, "snapshots=3"),
])
def test_claims_say_what_input_is_wrong(epochs, early, match):
    sim = {"conv1": _similarity(0.4, 0.97), "conv5": _similarity(0.1, 0.3)}
    settled = {"conv1": [1] * 16, "conv5": [4] * 16}
    with pytest.raises(ValueError, match=match):
        evolution.claims(sim, settled, epochs, early=early)
    with pytest.raises(ValueError, match="conv5"):
        evolution.claims({"conv1": sim["conv1"]}, settled, EPOCHS, early=1)
