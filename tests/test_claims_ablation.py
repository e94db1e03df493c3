"""Chapter 8's verdicts (zfkit.claims.ablation): each of Table 3's conclusions, each outcome, from closed-form rows."""

import math

import pytest

from zfkit import ablation
from zfkit.claims import ablation as claims8
from zfkit.results import verdict_table
from zfkit.verdicts import NOT_TESTABLE, k_for

# Every row's seeds are its mean + (-1, 0, +1): a seed std of exactly 1. Two rows of 3 seeds differ with noise
# sqrt(2/3) = 0.816, decided beyond Student's t for the pooled 4 degrees of freedom (2.776): 2.27 points.
MARGIN = k_for(5) * math.sqrt(2 / 3)
# All five claims reproduced: AlexNet-mini at 40 % (slight: 6), ZFNet-mini at 30 % (slight: 4.5).
TEST = {"alexnet-mini-short": 40, "alexnet-mini-no-conv34": 41, "alexnet-mini-no-fc67": 40,
        "alexnet-mini-no-conv34-fc67": 70, "alexnet-mini-no-fc7": 40, "alexnet-mini-fc-narrow": 40,
        "alexnet-mini-fc-wide": 40, "zfnet-mini-short": 30, "zfnet-mini-fc-narrow": 30, "zfnet-mini-fc-wide": 30,
        "zfnet-mini-conv-wide": 25, "zfnet-mini-conv-fc-wide": 25}
GAP = {"zfnet-mini-conv-fc-wide": 7.0}  # train/test gap; 2 points elsewhere
CLAIMS = [claims8.DEPTH, claims8.FC, claims8.FC_WIDTH, claims8.CONV_WIDE, claims8.OVERFIT]


def _rows(test=None, gap=None, seeds=3, converged=(), parameters=None):
    """Table 3 rows with ``seeds`` seeds each (1: a single run, except the baselines' 5)."""
    test, gap = TEST | (test or {}), GAP | (gap or {})
    rows = []
    for name, error in test.items():
        n = 5 if seeds == 1 and name.endswith("-short") else seeds
        offsets = [0.0] if n == 1 else [-1.0, 0.0, 1.0, -1.0, 1.0][:n] if n == 5 else [-1.0, 0.0, 1.0]
        errors = [error + o for o in offsets]
        rows.append({"name": name, "parameters": (parameters or {}).get(name, 400 if name.endswith("no-fc67") else 1000),
                     "seeds": list(range(n)), "test_top1_seeds": errors, "test_top1": error,
                     "train_top1_seeds": [error - gap.get(name, 2.0)] * n,  # gaps vary with the test error
                     "train_top1": error - gap.get(name, 2.0), "converged": name not in converged})
    return rows


def _by_claim(rows, early=None):
    table = verdict_table(claims8.claims(rows, early))  # refuses rows without noise, or inconclusive without needed
    assert [r.claim for r in table] == CLAIMS
    for r in table:
        assert (r.needed is not None) == (r.holds is None)
        assert r.holds is NOT_TESTABLE or (r.noise.startswith("± ") and r.threshold is not None)
    return {r.claim: r for r in table}


def test_every_claim_reproduced_on_converged_rows():
    rows = _by_claim(_rows())
    assert all(r.holds is True for r in rows.values())
    assert rows[claims8.CONV_WIDE].noise.startswith("± 0.82 points: test error seed std 1.00")
    assert rows[claims8.CONV_WIDE].flips_at == pytest.approx(5 - MARGIN, abs=1e-6)


@pytest.mark.parametrize("claim, test, gap, outcome, source", [
    (claims8.DEPTH, {"alexnet-mini-no-conv34-fc67": 35}, None, False, "paper"),  # all four cost less than conv3+4
    (claims8.DEPTH, {"alexnet-mini-no-conv34-fc67": 43}, None, None, "paper"),  # 2 points beyond the worse pair
    (claims8.FC, {"alexnet-mini-no-fc67": 50}, None, False, "ours"),  # +10 points: far beyond slight (6)
    (claims8.FC, {"alexnet-mini-no-fc67": 46}, None, None, "ours"),  # +6 points: on the slight limit
    (claims8.FC, {"alexnet-mini-no-fc67": 30}, None, True, "ours"),  # a gain costs nothing
    (claims8.FC_WIDTH, {"zfnet-mini-fc-wide": 40}, None, False, "ours"),  # +10 on ZFNet-mini's slight 4.5
    (claims8.FC_WIDTH, {"alexnet-mini-fc-narrow": 35}, None, None, "ours"),  # |-5| against slight 6: undecided
    (claims8.CONV_WIDE, {"zfnet-mini-conv-wide": 35, "zfnet-mini-conv-fc-wide": 35}, None, False, "paper"),
    (claims8.CONV_WIDE, {"zfnet-mini-conv-wide": 28, "zfnet-mini-conv-fc-wide": 28}, None, None, "paper"),  # 2 < 2.27
    (claims8.OVERFIT, None, {"zfnet-mini-conv-fc-wide": -3.0}, False, "paper"),  # smaller gap than conv-wide's 2
    (claims8.OVERFIT, None, {"zfnet-mini-conv-fc-wide": 3.0}, None, "paper"),
    (claims8.OVERFIT, {"zfnet-mini-conv-fc-wide": 15}, None, False, "ours"),  # 10 points better: a gain, not over-fitting
])
def test_each_claim_decides_each_way(claim, test, gap, outcome, source):
    rows = _by_claim(_rows(test, gap))
    assert rows[claim].holds is outcome
    assert rows[claim].threshold.source == source
    assert all(r.holds is True for c, r in rows.items() if c != claim)


def test_the_parameter_share_is_exact_and_the_papers_word():
    row = _by_claim(_rows(parameters={"alexnet-mini-no-fc67": 600}))[claims8.FC]  # fc6+7 hold 40 %
    assert row.holds is False and row.threshold.value == 0.5 and row.threshold.source == "paper"


def test_inconclusive_rows_say_how_many_seeds_per_arm_would_decide():
    row = _by_claim(_rows({"zfnet-mini-conv-wide": 28, "zfnet-mini-conv-fc-wide": 28}))[claims8.CONV_WIDE]
    n = int(row.needed.split()[0])
    noise = lambda seeds: k_for(seeds) * math.sqrt(2 / seeds)  # noqa: E731 - seed std 1 in both arms
    assert noise(n) < 2 <= noise(n - 1)
    assert row.needed.endswith("seeds per arm (measured on 3)")


def test_single_runs_borrow_their_baselines_spread():
    rows = _by_claim(_rows(seeds=1))  # variants one run each, baselines 5 seeds of std 1 (offsets -1 0 1 -1 1)
    std = math.sqrt(4 / 4)
    assert rows[claims8.CONV_WIDE].noise.startswith(f"± {std * math.sqrt(1 + 1 / 5):.2f} points")
    assert "pooled over zfnet-mini-short (5 seeds), arms of 1 and 5 seeds" in rows[claims8.CONV_WIDE].noise
    assert rows[claims8.DEPTH].noise.startswith(f"± {std * math.sqrt(2):.2f} points")  # two single runs


def test_rows_that_never_converged_make_their_claims_not_testable():
    rows = _by_claim(_rows(converged=("zfnet-mini-conv-wide",)))
    assert rows[claims8.CONV_WIDE].holds is NOT_TESTABLE and rows[claims8.OVERFIT].holds is NOT_TESTABLE
    assert "zfnet-mini-conv-wide has not converged: the validation error was still falling" \
        in rows[claims8.CONV_WIDE].precondition
    assert rows[claims8.DEPTH].holds is True  # its rows converged
    assert rows[claims8.CONV_WIDE].noise  # what was seen is kept


def test_early_training_is_quoted_as_the_failed_precondition():
    early = {"ratio": 3.9, "noise": 0.11, "early": True}
    rows = _by_claim(_rows(converged=TEST), early)
    assert all(r.holds is NOT_TESTABLE for r in rows.values())
    assert "none of this claim's rows has converged" in rows[claims8.DEPTH].precondition
    assert "3.9 ± 0.11x its fully trained error" in rows[claims8.DEPTH].precondition
    assert f"below {ablation.EARLY}x" in rows[claims8.DEPTH].precondition


def test_bad_rows_are_named():
    with pytest.raises(ValueError, match="missing zfnet-mini-conv-wide"):
        claims8.claims([r for r in _rows() if r["name"] != "zfnet-mini-conv-wide"])
    with pytest.raises(ValueError, match="no 'converged' flag"):
        claims8.claims([{k: v for k, v in r.items() if k != "converged"} for r in _rows()])
    single = [{**r, "test_top1_seeds": r["test_top1_seeds"][:1], "train_top1_seeds": r["train_top1_seeds"][:1]}
              for r in _rows()]
    with pytest.raises(ValueError, match="single seed"):
        claims8.claims(single)
    unscored = [{**r, "train_top1_seeds": r["train_top1_seeds"][:1]} for r in _rows()]
    with pytest.raises(ValueError, match="score each seed on its training images"):
        claims8.claims(unscored)
