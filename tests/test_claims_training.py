"""Chapter 2's verdicts from closed-form measurements: each row's every outcome, its threshold's source,
`needed` exactly when inconclusive, and a named precondition when not testable."""

import numpy as np
import pytest

from zfkit.claims import training
from zfkit.results import check_table, verdict_table
from zfkit.verdicts import NOT_TESTABLE

SPREAD = np.array([0.0, 0.01, -0.01, 0.0, 0.0])  # standard error 0.00316 over 5 seeds


def _members(n=300, members=3):
    """Member m wrong on every third image (i % 3 == m): each errs on a third of the images, every image alike."""
    i = np.arange(n)
    return np.stack([i % members == m for m in range(members)])


def _ensemble(wrong, n=300):
    return np.arange(n) < wrong


def measurements(**changes):
    """Inputs under which every row is reproduced; ``changes`` replace one measurement."""
    base = {
        "single": {training.ZF: list(0.11 + SPREAD), training.AX: list(0.15 + SPREAD)},
        "converged_error": 0.12,
        "members_wrong": _members(), "ensemble_wrong": _ensemble(30),
        "clipping": {"acted": [True] * 4,
                     "noclip": {"top_energy_share": [0.2, 0.22, 0.18, 0.2], "max_rms": [0.3, 0.3, 0.3, 0.3]},
                     "clip": {"top_energy_share": [0.1] * 4, "max_rms": [0.1] * 4}},
        "first_layer": {"alexnet-mini": {"aliased_energy": list(0.8 + SPREAD), "aliased_energy_untrained": [0.75] * 5,
                                         "dead_conv1_maps": [3, 4, 3, 4, 3], "maps": 32, "stride": 2},
                        "zfnet-mini": {"dead_conv1_maps": [0] * 5, "maps": 32}},
    }
    return {**base, **changes}


def row(claim, **changes):
    rows = training.claims(**measurements(**changes))
    verdict_table(rows)  # every row carries noise, and an inconclusive one `needed`
    return next(r for r in rows if r.claim == claim)


def _outcome(r, holds, source):
    assert r.holds is holds
    assert (r.needed is not None) == (holds is None)
    if holds is NOT_TESTABLE:
        assert r.precondition and r.threshold is None
    else:
        assert r.threshold.source == source and r.threshold.why and r.flips_at is not None and not r.precondition


def test_all_five_rows_reproduce_on_the_baseline():
    rows = training.claims(**measurements())
    assert [r.claim for r in rows] == [training.SINGLE, training.ENSEMBLE, training.DOMINANCE, training.ALIASING,
                                       training.DEAD]
    assert {verdict["verdict"] for verdict in verdict_table(rows).records()} == {"reproduced"}


# ---------------------------------------------------------------- Table 2, single models

def arms(zf, ax):
    return {training.ZF: list(zf + SPREAD), training.AX: list(ax + SPREAD)}


@pytest.mark.parametrize("zf, ax, holds", [
    (0.11, 0.15, True),    # 4 points against 2.78 x 0.45
    (0.15, 0.11, False),
    (0.11, 0.115, None),   # 0.5 points: inside the noise
])
def test_single_models_are_judged_over_seeds(zf, ax, holds):
    r = row(training.SINGLE, single=arms(zf, ax), converged_error=0.11)
    _outcome(r, holds, "paper")
    gap, reach = 100 * (ax - zf), 2.776 * 0.447  # Student's t for 5 seeds x the noise
    assert "± 0.45 points" in r.noise and r.flips_at == pytest.approx(gap - reach if gap > 0 else gap + reach, abs=0.01)
    if holds is None:
        assert "seeds per arm" in r.needed


def test_single_models_far_from_converged_are_not_testable():
    r = row(training.SINGLE, single=arms(0.30, 0.32), converged_error=0.08)  # the worse arm: 4.0 x
    _outcome(r, NOT_TESTABLE, "paper")
    assert r.precondition.startswith("not converged: 4.0 x the converged error")
    assert "alexnet-mini-short 32.00 %" in r.precondition and "8.00 %" in r.precondition
    assert "1.5x" in r.note  # the cut and why it is ours


def test_single_models_from_the_study_are_judged_on_their_plateau_not_the_ratio():
    study = arms(0.15, 0.19)  # 1.9x the fully trained net's error, but each run's validation error plateaued
    r = row(training.SINGLE, single=study, converged_error=0.08, plateaued=[True] * 10)
    _outcome(r, True, "paper")
    assert "plateaued" in r.note
    r = row(training.SINGLE, single=study, converged_error=0.08, plateaued=[True] * 9 + [False])
    _outcome(r, NOT_TESTABLE, "paper")
    assert r.precondition == "not converged: the validation error still fell in 1 of 10 runs"


def test_single_models_at_the_cut_are_still_judged():
    r = row(training.SINGLE, single=arms(0.11, 0.15), converged_error=0.10)  # 1.5 x exactly
    assert r.holds is True


@pytest.mark.parametrize("changes, match", [
    ({"single": {training.ZF: [0.1, 0.2]}}, "alexnet-mini-short"),
    ({"single": arms(11.0, 15.0)}, "fractions"),  # percentages
    ({"single": {training.ZF: [0.1], training.AX: [0.1, 0.2]}}, "at least 2"),
    ({"converged_error": 0.0}, "converged_error"),
])
def test_bad_single_model_inputs_name_the_fix(changes, match):
    with pytest.raises(ValueError, match=match):
        training.claims(**measurements(**changes))


# ---------------------------------------------------------------- Table 2, the ensemble

@pytest.mark.parametrize("wrong, holds", [
    (30, True),     # 10 % against the members' 33.3 %, paired on each image
    (200, False),   # 66.7 %
    (97, None),     # 32.3 %: 1 point, inside the images' noise (± 2.7)
])
def test_the_ensemble_is_judged_paired_over_images(wrong, holds):
    r = row(training.ENSEMBLE, ensemble_wrong=_ensemble(wrong))
    _outcome(r, holds, "paper")
    assert "paired bootstrap over the 300 test images" in r.noise
    assert f"{100 * wrong / 300:.2f} % vs its members' mean 33.33 %" in r.measured
    if holds is None:
        assert "test images" in r.needed


def test_the_noise_is_the_pairs_spread():
    """The same ensemble and the same mean member error (33.3 %): members that err on the ensemble's
    hard images leave the pairs' differences small and the gain decided; members that err elsewhere
    spread them and leave it open."""
    alike, elsewhere = np.stack([_ensemble(100)] * 3), _members()
    assert row(training.ENSEMBLE, members_wrong=alike, ensemble_wrong=_ensemble(90)).holds is True
    assert row(training.ENSEMBLE, members_wrong=elsewhere, ensemble_wrong=_ensemble(90)).holds is None


def test_bad_ensemble_inputs_name_the_fix():
    with pytest.raises(ValueError, match="per_image_errors"):
        training.claims(**measurements(ensemble_wrong=_ensemble(30, n=299)))
    with pytest.raises(ValueError, match="0/1"):
        training.claims(**measurements(ensemble_wrong=np.full(300, 0.5)))


# ---------------------------------------------------------------- Fig. 6a/c, clipping

def clipping(free, acted=None, clipped=0.1):
    acted = [True] * len(free) if acted is None else acted
    return {"acted": acted, "noclip": {"top_energy_share": free, "max_rms": [0.3 if a else 0.09 for a in acted]},
            "clip": {"top_energy_share": [clipped if a else f for a, f in zip(acted, free)], "max_rms": [0.1] * len(free)}}


@pytest.mark.parametrize("free, holds", [
    ([0.2, 0.22, 0.18, 0.2], True),     # 2.0x ± 0.08 over 4 pairs
    ([0.11, 0.1, 0.1, 0.1], False),     # 1.03x
    ([0.13, 0.19, 0.15, 0.17], None),   # 1.6x ± 0.13: Student's t for 4 pairs is 3.18
])
def test_dominance_is_a_ratio_paired_by_seed(free, holds):
    r = row(training.DOMINANCE, clipping=clipping(free))
    _outcome(r, holds, "ours")
    assert r.threshold.value == 1.5 and "4 of 4 seeds where clipping acted" in r.measured
    if holds is None:
        assert "seed pairs in which clipping acts" in r.needed


def test_seeds_where_clipping_never_acted_are_left_out():
    """A pair whose runs are identical (ratio 1) says nothing about what clipping prevents."""
    free = [0.2, 0.22, 0.18, 0.2, 0.09, 0.09]
    r = row(training.DOMINANCE, clipping=clipping(free, acted=[True] * 4 + [False] * 2))
    assert r.holds is True and "2.00x, in the 4 of 6 seeds where clipping acted" in r.measured


@pytest.mark.parametrize("acted, failed", [
    ([False] * 3, "clipping never acted: in all 3 seeds the clipped run's filters equal the unclipped run's"),
    ([True, False, False], "clipping acted in only 1 of 3 seeds"),
])
def test_dominance_is_not_testable_where_clipping_did_not_act(acted, failed):
    r = row(training.DOMINANCE, clipping=clipping([0.2, 0.09, 0.09], acted=acted))
    _outcome(r, NOT_TESTABLE, "ours")
    assert r.precondition.startswith(failed)
    rms = ", ".join("0.300" if a else "0.090" for a in acted)
    assert f"(largest filter RMS without clipping {rms} against the radius 0.1)" in r.precondition


# ---------------------------------------------------------------- Fig. 6b/d, aliasing

@pytest.mark.parametrize("trained, holds", [(0.8, True), (0.68, False), (0.752, None)])
def test_aliasing_is_judged_against_the_untrained_layer(trained, holds):
    layer = {**measurements()["first_layer"]}
    layer["alexnet-mini"] = {**layer["alexnet-mini"], "aliased_energy": list(trained + SPREAD)}
    r = row(training.ALIASING, first_layer=layer)
    _outcome(r, holds, "ours")
    assert "paired over 5 seeds" in r.noise and "0.75 of its energy above stride 2" in r.threshold.why


# ---------------------------------------------------------------- Fig. 6b/c, dead filters

@pytest.mark.parametrize("alexnet, zfnet, holds", [
    ([3, 4, 3, 4, 3], [0] * 5, True),
    ([0] * 5, [3, 4, 3, 4, 3], False),
    ([1, 0, 0, 0, 1], [0, 0, 1, 0, 0], None),
])
def test_dead_filters_are_counted_over_seeds(alexnet, zfnet, holds):
    layer = {**measurements()["first_layer"]}
    layer["alexnet-mini"] = {**layer["alexnet-mini"], "dead_conv1_maps": alexnet}
    layer["zfnet-mini"] = {**layer["zfnet-mini"], "dead_conv1_maps": zfnet}
    _outcome(row(training.DEAD, first_layer=layer), holds, "paper")


def test_no_dead_filter_in_either_net_is_not_testable():
    layer = {**measurements()["first_layer"]}
    layer["alexnet-mini"] = {**layer["alexnet-mini"], "dead_conv1_maps": [0] * 5}
    r = row(training.DEAD, first_layer=layer)
    _outcome(r, NOT_TESTABLE, "paper")
    assert r.precondition.startswith("no dead filter in either net: 0 of 32 conv1 maps in each of 5 alexnet-mini seeds "
                                     "and 0 of 32 conv1 maps in each of 5 zfnet-mini seeds")


# ---------------------------------------------------------------- our checks

def run_record(accuracy=0.93, minutes=10.0):
    return {"test": {"accuracy": accuracy}, "sizes": {"test": 10000}, "train_minutes": minutes, "threads": 2,
            "history": [{"images_per_s": s} for s in (1000, 1010, 990)]}


def test_checks_pass_fail_and_wait_for_the_book_profile():
    rows = training.checks(run_record(), "book", "AMD EPYC", [0.1, 0.0999], [0.0] * 5)
    assert [r.holds for r in rows] == [True, True, True, True]
    assert check_table(rows).records()[1]["measured"] == "10.0 ± 0.1 min on AMD EPYC, 2 threads"
    failing = training.checks(run_record(0.90, 14.0), "book", "AMD EPYC", [0.12], [0.01])
    assert [r.holds for r in failing] == [False, False, False, False]
    ci = training.checks(run_record(), "ci", "AMD EPYC", [0.1], [0.0])
    assert [r.holds for r in ci[:2]] == [None, None] and "for the book profile" in ci[0].note
