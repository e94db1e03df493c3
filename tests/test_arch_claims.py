"""Chapter 1's checks come from the measured tables: the real nets pass every Fig. 3 check, other nets fail them.

They are checks of our code, not findings (the nets are built to Fig. 3), so they go to a check table."""

import pytest

from zfkit import arch, models
from zfkit.results import check_table


@pytest.fixture(scope="module")
def measured():
    zf, ax = models.zfnet(), models.alexnet()
    first = [arch.first_layer(ax), arch.first_layer(zf)]
    return models.describe(zf), models.describe(ax), arch.map_sizes(zf, ceil=False), first, \
        arch.alias_check(first, (0.1, 0.2, 0.3))


def test_the_fig3_network_passes_every_check(measured):
    rows = arch.checks(*measured)
    assert [r.holds for r in rows] == [True] * 6
    table = check_table(rows)
    assert table.kind == "checks" and {r["verdict"] for r in table.records()} == {"passed"}
    assert all("source" not in r for r in table.records())  # our own checks cite nobody
    assert rows[0].measured == "96×110×110" and rows[3].measured == "9216"
    assert "5·5·256 = 6400" in rows[3].note  # floor rounding, measured, not typed


def test_a_network_built_otherwise_fails(measured):
    zf, ax, floor, first, aliasing = measured
    rows = arch.checks(ax, zf, floor, first, aliasing)  # AlexNet's table where ZFNet's belongs
    assert rows[0].holds is False and rows[0].measured == "96×55×55"
    assert rows[4].holds is False  # the parameter difference is no longer conv1's
    assert "failed" in [r["verdict"] for r in check_table(rows).records()]


def test_a_grating_that_does_not_alias_as_predicted_fails(measured):
    zf, ax, floor, first, aliasing = measured
    wrong = [{**r, "measured": r["frequency"]} for r in aliasing]  # as if stride-4 sampling kept every frequency
    assert arch.checks(zf, ax, floor, first, wrong)[5].holds is False
    swapped = [first[1], first[0]]  # ZFNet's first layer as the coarse one
    assert arch.checks(zf, ax, floor, swapped, aliasing)[5].holds is False
