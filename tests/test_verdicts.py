"""Verdict rules: each outcome (reproduced, not reproduced, inconclusive, not testable) from closed-form inputs."""

import math

import numpy as np
import pytest

from zfkit import verdicts
from zfkit.verdicts import all_of, below, bootstrap_noise, equals, exceeds, mean_difference_noise, share_noise, \
    standard_error, when


@pytest.mark.parametrize("value, noise, outcome", [
    (1.0, 0.4, True),      # 1.0 - 2 * 0.4 = 0.2 > 0
    (1.0, 0.5, None),      # exactly 2 noise: not beyond it
    (-1.0, 0.4, False),    # against the claim, beyond its noise
    (-0.3, 0.2, None),     # against it, but inside the noise
    (0.0, 0.0, False),     # no effect and no noise: the claim "> 0" is false
    (1e-12, 0.0, True),    # exact arithmetic decides on any difference
])
def test_exceeds_decides_only_beyond_k_noise(value, noise, outcome):
    assert exceeds(value, 0.0, noise) is outcome


def test_exceeds_uses_the_threshold_and_k():
    assert exceeds(10.5, 10.0, 0.2) is True
    assert exceeds(10.5, 10.0, 0.2, k=3) is None
    assert exceeds(9.0, 10.0, 0.2) is False


@pytest.mark.parametrize("value, outcome", [(0.5, True), (0.8, None), (1.1, False)])
def test_below_mirrors_exceeds(value, outcome):
    assert below(value, 0.8, 0.1) is outcome


def test_rounding_far_below_the_noise_cannot_flip_a_verdict():
    """What a kernel change does (a relative 1e-7) must not move a decided verdict, nor decide an undecided one."""
    for value in (0.3, 0.7, -0.4):
        noisy = value * (1 + 1e-7)
        assert exceeds(value, 0.0, 0.1) is exceeds(noisy, 0.0, 0.1)
    assert exceeds(0.2, 0.0, 0.1) is None and exceeds(0.2 + 1e-9, 0.0, 0.1) is True  # the edge is the rule's, not noise


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_bad_noise_is_rejected_with_the_fix(bad):
    with pytest.raises(ValueError, match="noise must be a finite standard deviation"):
        exceeds(1.0, 0.0, bad)


def test_non_finite_values_are_rejected():
    with pytest.raises(ValueError, match="finite"):
        exceeds(float("nan"), 0.0, 0.1)


def test_equals_is_exact():
    assert equals((96, 110, 110), (96, 110, 110)) is True
    assert equals(9216, 6400) is False


@pytest.mark.parametrize("parts, outcome", [
    ((True, True), True), ((True, None), None), ((True, False), False), ((None, False), False), ((None, None), None),
])
def test_all_of(parts, outcome):
    assert all_of(*parts) is outcome


def test_when_makes_a_failed_precondition_inconclusive():
    assert when(True, False) is False and when(False, True) is None and when(False, False) is None


def test_standard_error_closed_form():
    assert standard_error([1.0, 3.0]) == pytest.approx(math.sqrt(2) / math.sqrt(2))
    assert mean_difference_noise([1.0, 3.0], [0.0, 0.0, 0.0]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 2"):
        standard_error([1.0])


def test_share_noise_is_binomial():
    assert share_noise(100) == pytest.approx(0.05)
    assert share_noise(4, 0.9) == pytest.approx(0.15)
    with pytest.raises(ValueError, match="positive"):
        share_noise(0)


def test_bootstrap_noise_matches_the_standard_error_of_a_mean_and_repeats():
    x = np.random.default_rng(1).normal(size=400)
    assert bootstrap_noise(x) == pytest.approx(standard_error(x), rel=0.15)
    assert bootstrap_noise(x, seed=3) == bootstrap_noise(x, seed=3)  # seeded: same numbers, same verdict
    assert bootstrap_noise(np.ones(10)) == 0.0


def test_k_is_two():
    assert verdicts.K == 2.0


def test_k_for_few_samples_is_students_t_and_never_below_k():
    from zfkit.verdicts import k_for

    assert k_for(5) == pytest.approx(2.776, abs=1e-3)  # t(0.975, 4 dof)
    assert k_for(2) == pytest.approx(12.706, abs=1e-3)
    assert k_for(10_000) == verdicts.K
    # a gain of 3.8 against a seed std of 1.9 from 5 seeds: decided at K = 2 by a hair, not with t
    assert exceeds(3.82, 0, 1.9) is True and exceeds(3.82, 0, 1.9, k=k_for(5)) is None
    with pytest.raises(ValueError, match="at least 2"):
        k_for(1)


# ---------------------------------------------------------------- decisions: four outcomes, flip points, budgets

@pytest.mark.parametrize("value, direction, outcome", [
    (3.0, ">", True), (-3.0, ">", False), (1.0, ">", None),
    (-3.0, "<", True), (3.0, "<", False), (-1.0, "<", None),
])
def test_decide_reads_each_outcome_in_both_directions(value, direction, outcome):
    d = verdicts.decide(value, 0.0, 1.0, direction=direction, k=2.0, samples=10)
    assert d.holds is outcome
    assert d.flips_at == pytest.approx(min((value - 2, value + 2), key=abs))  # the edge nearest the threshold
    assert (d.needed is not None) is (outcome is None)


def test_decide_flip_point_is_where_the_outcome_changes():
    d = verdicts.decide(3.0, 0.0, 1.0, k=2.0)
    assert d.holds is True and d.flips_at == 1.0
    assert verdicts.exceeds(3.0, d.flips_at - 1e-9, 1.0) is True and verdicts.exceeds(3.0, d.flips_at + 1e-9, 1.0) is None


def test_decide_defaults_to_students_t_for_few_samples():
    assert verdicts.decide(2.5, 0.0, 1.0).holds is True                # K = 2 without a sample count
    assert verdicts.decide(2.5, 0.0, 1.0, samples=5).holds is None     # t(4) = 2.78


def test_samples_needed_is_the_first_budget_that_clears_students_t():
    n = verdicts.samples_needed(1.0, 1.0, samples=5)
    assert verdicts.k_for(n) * math.sqrt(5 / n) < 1.0 <= verdicts.k_for(n - 1) * math.sqrt(5 / (n - 1))
    assert verdicts.samples_needed(0.0, 1.0, samples=5) is None          # on the threshold: nothing decides it
    assert verdicts.samples_needed(1e-9, 1.0, samples=5) is None         # beyond any budget we would name
    with pytest.raises(ValueError, match="at least 2"):
        verdicts.samples_needed(1.0, 1.0, samples=1)


def test_requires_turns_a_failed_precondition_into_not_testable():
    decided = verdicts.decide(3.0, 0.0, 1.0)
    assert verdicts.requires(True, decided, "unused") is decided
    untestable = verdicts.requires(False, decided, "no dead filter in either net (0 and 0 over 5 seeds)")
    assert untestable.holds is verdicts.NOT_TESTABLE and "0 and 0" in untestable.precondition
    with pytest.raises(ValueError, match="precondition"):
        verdicts.requires(False, decided, "")


@pytest.mark.parametrize("values, outcome, deciding", [
    ((3.0, 4.0), True, 3.0),      # reproduced: reported by the part with the least margin
    ((3.0, -4.0), False, -4.0),   # refuted by its refuted part
    ((3.0, 1.0), None, 1.0),      # undecided by its undecided part
])
def test_combine_reports_the_deciding_part(values, outcome, deciding):
    parts = [verdicts.decide(v, 0.0, 1.0, k=2.0, samples=10) for v in values]
    combined = verdicts.combine(*parts)
    assert combined.holds is outcome and combined.value == deciding


def test_combine_and_all_of_put_not_testable_first():
    untestable = verdicts.requires(False, None, "no symmetric class")
    assert verdicts.combine(verdicts.decide(-3.0, 0.0, 1.0), untestable).holds is verdicts.NOT_TESTABLE
    assert all_of(False, verdicts.NOT_TESTABLE) is verdicts.NOT_TESTABLE
    with pytest.raises(ValueError, match="Decision"):
        verdicts.combine(True)


def test_paired_bootstrap_cancels_what_the_pairs_share():
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 1, 400)                 # image difficulty, common to both models
    a, b = shared + 0.1, shared + rng.normal(0, 0.05, 400)
    paired = verdicts.paired_bootstrap_noise(a, b)
    assert paired == pytest.approx(np.std(a - b, ddof=1) / math.sqrt(400), rel=0.15)
    assert paired < 0.2 * verdicts.mean_difference_noise(a, b)
    with pytest.raises(ValueError, match="paired"):
        verdicts.paired_bootstrap_noise([1.0, 2.0], [1.0])
