"""zfkit.claims.student: each of the student's rows for every outcome, from closed-form measurements."""

import numpy as np
import pytest

from zfkit.claims import student
from zfkit.results import check_table


def _rows(scene_top1, n_scenes, photo_top5, n_photos, trained, control):
    return student.checks({"top1": scene_top1, "n": n_scenes}, {"top5_overlap": photo_top5, "n": n_photos},
                          {"conv5": (trained, control)})


@pytest.mark.parametrize("expected, scene_top1, photo_top5, trained, control", [
    (True, 0.3, 0.4, [2.0, 2.1, 1.9, 2.2], [1.0, 1.1, 0.9, 1.0]),
    (False, 0.001, 0.0, [1.0, 1.1, 0.9, 1.0], [2.0, 2.1, 1.9, 2.2]),
])
def test_rows_decide_both_ways(expected, scene_top1, photo_top5, trained, control):
    rows = _rows(scene_top1, 500, photo_top5, 400, trained, control)
    assert [r.holds for r in rows] == [expected] * 3
    records = check_table(rows).records()
    assert all(r["noise"] and r["threshold"]["source"] == "ours" for r in records)
    assert rows[0].threshold.value == pytest.approx(0.01) and rows[1].threshold.value == pytest.approx(0.05)


def test_rows_undecided_say_what_would_decide():
    rows = _rows(0.012, 100, 0.06, 8, [1.2, 0.8, 1.5, 0.6], [1.0, 1.0, 1.0, 1.0])
    assert [r.holds for r in rows] == [None, None, None]
    assert all("measured on" in r.needed for r in rows)


def test_nan_scenes_are_left_out_and_bad_input_is_named():
    rows = _rows(0.3, 500, 0.4, 400, [2.0, np.nan, 1.9, 2.2], [1.0, 1.1, 0.9, 1.0])
    assert "over 3 scenes" in rows[2].measured
    with pytest.raises(ValueError, match="agreement"):
        student.checks({"top5": 0.1}, {"top5_overlap": 0.1, "n": 8}, {})
