"""Chapter 7's verdicts (zfkit.claims.correspondence): each outcome from closed-form measurements."""

import numpy as np
import pytest
import torch

from zfkit.claims import correspondence as chapter
from zfkit.correspondence import Delta, PartTable
from zfkit.results import verdict_table
from zfkit.verdicts import NOT_TESTABLE, k_for

GAP5 = np.array([0.20, 0.22, 0.18, 0.21, 0.19])  # trained net, layer 5: parts clearly below random in 5 image sets
UP = np.array([0.10, 0.11, 0.09, 0.10, 0.10])  # a paired shift well beyond its noise (se 0.0032)


def measured(below=15, share_noise=0.1, trained5=GAP5, trained7=GAP5 - UP, untrained5=GAP5 - UP):
    gaps = (np.asarray(trained5), np.asarray(trained7), np.asarray(untrained5))
    return chapter.Measurements(below, 15, share_noise, *gaps)


def outcomes(rows):
    return [r.holds for r in rows]


def check_rows(rows):
    assert [r.claim for r in rows] == [chapter.LOWER, chapter.CORRESPONDENCE, chapter.MORE_SIMILAR]
    sources = {chapter.LOWER: "ours", chapter.CORRESPONDENCE: "ours", chapter.MORE_SIMILAR: "paper"}
    for r in rows:
        assert r.holds is NOT_TESTABLE or (r.threshold.source == sources[r.claim] and r.threshold.why)
        assert (r.needed is not None) is (r.holds is None)
        assert r.holds is NOT_TESTABLE or "5 image sets" in r.noise
    assert verdict_table(rows)  # every row carries its noise, an inconclusive one its budget


def test_reproduced():
    # 15 of 15 below random (1.0 - 2.78 * 0.1 > 0.5); trained gap above untrained, layer 7 below layer 5, by 0.1
    rows = chapter.claims(measured())
    assert outcomes(rows) == [True, True, True]
    assert [r.threshold.value for r in rows] == [0.5, 0.0, 0.0]
    assert "15 of 15" in rows[0].measured and "+0.200" in rows[1].measured
    check_rows(rows)


def test_not_reproduced():
    # none below random; the untrained net's gap larger by 0.1; the gap grows from layer 5 to layer 7
    rows = chapter.claims(measured(below=0, trained7=GAP5 + UP, untrained5=GAP5 + UP))
    assert outcomes(rows) == [False, False, False]
    check_rows(rows)


def test_inconclusive_rows_say_what_budget_would_decide_them():
    # 9 of 15 below: 0.6 - 2.78 * 0.1 < 0.5; differences of mean 0.01 with a standard error of 0.04
    wobble = np.array([0.10, -0.08, 0.09, -0.07, 0.01])
    rows = chapter.claims(measured(below=9, trained7=GAP5 + wobble, untrained5=GAP5 - wobble))
    assert outcomes(rows) == [None, None, None]
    assert all(r.needed.endswith("image sets (measured on 5)") for r in rows)
    assert rows[0].flips_at == pytest.approx(0.6 - k_for(5) * 0.1, abs=1e-6)  # rounded to 6 places
    check_rows(rows)


def test_layer7_is_not_testable_without_a_layer5_gap():
    # parts score *above* random at layer 5 (gap -0.2 ± 0.007): there is no difference for layer 7 to shrink
    rows = chapter.claims(measured(below=0, trained5=-GAP5, trained7=-GAP5 - UP, untrained5=-GAP5 - UP))
    assert outcomes(rows) == [False, True, NOT_TESTABLE]
    assert "-0.200" in rows[2].precondition and "conv5" in rows[2].precondition
    assert rows[2].threshold is None and rows[2].needed is None
    check_rows(rows)


def test_an_undecided_layer5_gap_leaves_layer7_testable():
    rows = chapter.claims(measured(trained5=np.array([0.1, -0.1, 0.05, -0.04, 0.0]),
                                   trained7=np.array([0.1, -0.1, 0.05, -0.04, 0.0]) - UP))
    assert rows[2].holds is True


def table(parts, random, parts7, random7, name="x"):
    def delta(m5, m7):
        return {"conv5": Delta(torch.tensor([m5]), m5, 0.0), "fc7": Delta(torch.tensor([m7]), m7, 0.0)}

    return PartTable(name, ["conv5", "fc7"], {f"p{i}": delta(a, b) for i, (a, b) in enumerate(zip(parts, parts7))},
                     delta(random, random7))


def test_measure_reads_the_tables_in_pairs():
    trained = [table([0.1, 0.3], 0.25, [0.2, 0.2], 0.2), table([0.4, 0.4], 0.5, [0.1, 0.3], 0.25)]
    untrained = [table([0.2, 0.2], 0.2, [0.2, 0.2], 0.2), table([0.5, 0.5], 0.5, [0.5, 0.5], 0.5)]
    m = chapter.measure(trained, untrained)
    assert (m.below, m.cases, m.tables) == (3, 4, 2)
    np.testing.assert_allclose(m.trained5, [0.2, 0.2])  # (0.25 - 0.2) / 0.25, (0.5 - 0.4) / 0.5
    np.testing.assert_allclose(m.trained7, [0.0, 0.2])
    np.testing.assert_allclose(m.untrained5, [0.0, 0.0])
    with pytest.raises(ValueError, match="pair up"):
        chapter.measure(trained, untrained[::-1] + [table([0.1], 0.2, [0.1], 0.2, "y")])


@pytest.mark.parametrize("kwargs, words", [
    ({"trained5": GAP5[:4]}, "pair table for table"),
    ({"trained5": GAP5[:1], "trained7": GAP5[:1], "untrained5": GAP5[:1]}, "at least 2 tables"),
    ({"below": 16}, "out of cases"),
])
def test_bad_measurements_are_explained(kwargs, words):
    with pytest.raises(ValueError, match=words):
        measured(**kwargs)
