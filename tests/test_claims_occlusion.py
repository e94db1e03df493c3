"""Chapter 6's claims (zfkit.claims.occlusion) on closed-form survey numbers, one test per outcome."""

import pytest

from zfkit.claims.occlusion import DROPS, LOCALISES, OVERLAP, claims
from zfkit.results import verdict_table


def _survey(**changes):
    """A survey of 100 images in which every claim holds by 5 noise or more, with context around the objects."""
    s = {"n": 100, "median_largest_drop": 0.8, "median_largest_drop_noise": 0.05, "images_hurt": 90,
         "worst_on_object": 0.9, "on_object_share": 0.4, "localisation_excess": 0.5, "localisation_se": 0.05,
         "iou_own": 0.5, "iou_other_image": 0.2, "iou_chance": 0.14, "difference": 0.3, "difference_se": 0.02,
         "context_share": 0.6}
    return {**s, **changes}


def _records(rows):
    records = verdict_table(rows).records()
    for r in records:
        assert ("needed" in r) is (r["verdict"] == "inconclusive"), r
        assert r["verdict"] == "not testable" or (r["noise"].startswith("± ") and r["threshold"]["source"] == "ours")
    return {r["claim"]: r for r in records}


def test_every_claim_reproduced_beyond_its_noise():
    rows = _records(claims(_survey(), accuracy=0.9))
    assert list(rows) == [DROPS, LOCALISES, OVERLAP]
    assert {r["verdict"] for r in rows.values()} == {"reproduced"}
    assert rows[DROPS]["threshold"]["value"] == 0.5 and "half of p(correct)" in rows[DROPS]["threshold"]["why"]
    # Student's t for 100 images (1.98) is below 2: decided beyond 2 noise, the edge nearest the threshold
    assert rows[DROPS]["flips_at"] == pytest.approx(0.8 - 2 * 0.05)
    assert rows[LOCALISES]["flips_at"] == pytest.approx(0.5 - 2 * 0.05)


@pytest.mark.parametrize("change, claim", [
    ({"median_largest_drop": 0.07, "median_largest_drop_noise": 0.03}, DROPS),
    ({"localisation_excess": -0.3}, LOCALISES),
    ({"difference": -0.1}, OVERLAP),
])
def test_a_measurement_beyond_its_threshold_the_wrong_way_is_not_reproduced(change, claim):
    rows = _records(claims(_survey(**change), accuracy=0.9))
    assert rows[claim]["verdict"] == "not reproduced"
    assert all(r["verdict"] == "reproduced" for c, r in rows.items() if c != claim)


@pytest.mark.parametrize("change, claim, samples", [
    ({"median_largest_drop": 0.55}, DROPS, 100),  # 1 noise above half
    ({"localisation_excess": 0.05}, LOCALISES, 90),  # 1 standard error above 0, over the 90 images hurt
    ({"difference": 0.02}, OVERLAP, 100),
])
def test_a_measurement_within_its_noise_is_inconclusive_with_the_budget_that_decides_it(change, claim, samples):
    row = _records(claims(_survey(**change), accuracy=0.9))[claim]
    assert row["verdict"] == "inconclusive"
    assert row["needed"].endswith(f"images (measured on {samples})")
    assert 3.5 * samples < int(row["needed"].split()[0].replace(",", "")) < 4.5 * samples


def test_without_context_localising_is_not_testable_and_names_the_measurement():
    rows = _records(claims(_survey(context_share=0.0025), accuracy=0.9))
    row = rows[LOCALISES]
    assert row["verdict"] == "not testable" and "0.25% of their ink off the object" in row["precondition"]
    assert "5%" in row["precondition"]
    assert rows[DROPS]["verdict"] == rows[OVERLAP]["verdict"] == "reproduced"
    assert _records(claims(_survey(context_share=0.05), accuracy=0.9))[LOCALISES]["verdict"] == "reproduced"
    # both preconditions fail: the data's (no context) is the one named
    assert "ink" in _records(claims(_survey(context_share=0.0), accuracy=0.2))[LOCALISES]["precondition"]


def test_an_untrained_model_makes_the_output_claims_not_testable_but_not_the_overlap():
    rows = _records(claims(_survey(), accuracy=0.3))
    for claim in (DROPS, LOCALISES):
        assert rows[claim]["verdict"] == "not testable" and "30.0%" in rows[claim]["precondition"]
    assert rows[OVERLAP]["verdict"] == "reproduced"
    assert _records(claims(_survey()))[DROPS]["verdict"] == "reproduced"  # accuracy None: known to be trained


@pytest.mark.parametrize("survey, kwargs, words", [
    ({"n": 100}, {}, "survey lacks"),
    (_survey(images_hurt=1), {}, "at least 2 images"),
    (_survey(), {"accuracy": 91.0}, "share"),
])
def test_bad_input_is_explained(survey, kwargs, words):
    with pytest.raises(ValueError, match=words):
        claims(survey, **kwargs)
