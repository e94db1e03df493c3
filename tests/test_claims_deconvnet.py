"""Chapter 3's verdicts (zfkit.claims.deconvnet): each outcome of Fig. 2's two claims and of our oracle check,
from closed-form per-map measurements."""

import numpy as np
import pytest

from zfkit.claims import deconvnet, lite0
from zfkit.results import check_table, verdict_table
from zfkit.verdicts import NOT_TESTABLE

LAYERS = ("conv2", "conv3", "conv4", "conv5")


def _maps(mean, spread=0.05, n=40):
    """n values evenly spread over mean ± spread: their mean is exactly ``mean``."""
    return mean + spread * np.linspace(-1, 1, n)


def _net(grouping, classes_low=4.0, classes_high=4.0, spread=0.05, n=40):
    """layer -> {"grouping", "classes"}: ``grouping`` per layer (a number or layer -> number)."""
    per_layer = grouping if isinstance(grouping, dict) else dict.fromkeys(LAYERS, grouping)
    return {layer: {"grouping": _maps(per_layer[layer], spread, n),
                    "classes": _maps(classes_low if layer == "conv2" else classes_high, spread, n)} for layer in LAYERS}


def _check_rows(rows, outcome):
    assert [r.claim for r in rows] == [deconvnet.GROUPING, deconvnet.INVARIANCE]
    for row in rows:
        assert row.holds is outcome
        assert (row.needed is not None) == (outcome is None)
        if outcome is NOT_TESTABLE:
            assert row.precondition and row.threshold is None
        else:
            assert row.threshold.source == "ours" and row.threshold.value == 0 and row.threshold.why
            assert row.noise and row.flips_at is not None
    verdict_table(rows)


def test_reproduced_when_every_layer_groups_beyond_the_control_and_classes_drop_more():
    trained = _net({"conv2": 0.5, "conv3": 0.4, "conv4": 0.6, "conv5": 0.7}, classes_low=4, classes_high=1.5)
    rows = deconvnet.claims(trained, _net(0.3, classes_low=4, classes_high=4))
    _check_rows(rows, True)
    grouping, invariance = rows
    assert "conv3 +0.100" in grouping.measured and "conv5 +0.400" in grouping.measured
    assert "decided by conv3" in grouping.note  # the part closest to flipping reports the claim
    assert "+2.50" in invariance.measured and "4.00 → 1.50" in invariance.measured


def test_not_reproduced_when_one_layer_groups_below_the_control_and_the_control_drops_as_much():
    trained = _net({"conv2": 0.5, "conv3": 0.1, "conv4": 0.6, "conv5": 0.7}, classes_low=4, classes_high=2)
    rows = deconvnet.claims(trained, _net(0.3, classes_low=4, classes_high=1))
    _check_rows(rows, False)
    assert "decided by conv3" in rows[0].note and rows[0].flips_at < 0
    assert "-1.00" in rows[1].measured


def test_inconclusive_within_the_noise_says_how_many_maps_would_decide():
    rows = deconvnet.claims(_net(0.32, 4, 3.9, spread=0.5, n=20), _net(0.3, 4, 4, spread=0.5, n=20))
    _check_rows(rows, None)
    assert all("maps" in r.needed and "measured on 20" in r.needed for r in rows)


def test_not_testable_when_a_layer_has_fewer_than_two_active_maps():
    untrained = _net(0.3)
    untrained["conv5"] = {"grouping": np.array([0.2]), "classes": np.array([3.0])}
    rows = deconvnet.claims(_net(0.6, 4, 1.5), untrained)
    _check_rows(rows, NOT_TESTABLE)
    assert all("conv5 untrained has 1" in r.precondition for r in rows)


def test_layers_low_high_and_labels_are_arguments_as_chapter_11_needs():
    trained = {"stage2": {"grouping": _maps(0.5), "classes": _maps(6)},
               "stage7": {"grouping": _maps(0.5), "classes": _maps(2)}}
    control = {"stage2": {"grouping": _maps(0.3), "classes": _maps(6)},
               "stage7": {"grouping": _maps(0.3), "classes": _maps(6)}}
    grouping, invariance = deconvnet.claims(trained, control, low="stage2", high="stage7", control="Lite0 untrained",
                                            counted="photos")
    assert grouping.holds is True and invariance.holds is True
    assert "stage2" in grouping.measured and "stage7" in grouping.measured and "Lite0 untrained" in grouping.note
    assert invariance.measured.startswith("distinct photos in top-9, stage2 → stage7")
    assert deconvnet.GROUPING == lite0.GROUPING and deconvnet.INVARIANCE == lite0.INVARIANCE
    only = deconvnet.claims(trained, control, low="stage2", high="stage7", layers=["stage7"])[0]
    assert "stage2" not in only.measured


def test_claims_name_what_is_missing():
    with pytest.raises(ValueError, match="at least one layer"):
        deconvnet.claims({"conv2": {}}, {"conv3": {}})
    with pytest.raises(ValueError, match="untrained measurements have no 'classes'"):
        deconvnet.claims(_net(0.5), {layer: {"grouping": _maps(0.3)} for layer in LAYERS})


@pytest.mark.parametrize("lowest, outcome", [(0.99999994, True), (0.9990, False)])
def test_engine_check_passes_only_above_the_oracle_cosine(lowest, outcome):
    agreement = {"conv1": 1.0, "conv2": lowest, "conv3": 0.9999999}
    (row,) = deconvnet.checks(agreement, maps=3, images=4)
    assert row.claim == deconvnet.ENGINE and row.holds is outcome and row.needed is None
    assert row.threshold.value == deconvnet.ORACLE_COSINE and row.threshold.source == "ours"
    assert f"{lowest:.6f}" in row.measured and "3 layers, 3 maps, 4 images" in row.measured
    assert check_table([row])[0] is row
    with pytest.raises(ValueError, match="agreement"):
        deconvnet.checks({}, maps=3, images=4)
