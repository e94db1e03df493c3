"""Chapter 10's verdicts (zfkit.claims.sanity): the later papers' claims, each outcome, from closed-form measurements."""

import numpy as np
import pytest

from zfkit.claims import sanity as claims10
from zfkit.results import check_table, verdict_table
from zfkit.sanity import Sweep
from zfkit.verdicts import NOT_TESTABLE, k_for

N = 8  # images per measurement: decided beyond Student's t for 8 (2.365 standard errors)
RULES = ("deconvnet", "guided", "gradient")
STEPS = ["fc8", "fc7", "fc6", "conv5", "conv1"]
ORDER = [claims10.SANITY_CLEANER, claims10.SANITY_GUIDED, claims10.SANITY_GRADIENT, claims10.SANITY_LABELS,
         claims10.SANITY_CLASS_GUIDED, claims10.SANITY_CLASS_DECONV, claims10.SANITY_RECOVERY, claims10.SANITY_DECONV]
SOURCES = ["Springenberg 2014", "Adebayo 2018", "Adebayo 2018", "Adebayo 2018", "Nie 2018", "Nie 2018", "Nie 2018",
           "Sixt 2020"]


def _values(mean, se, n=N):
    """``n`` values whose mean is ``mean`` and whose standard error is exactly ``se``."""
    return mean + np.resize([-1.0, 1.0], n) * se * np.sqrt(n - 1)


def _sweep(guided=(0.99, 0.005), deconv=(0.98, 0.005), gradient=(0.3, 0.02), rank=(0.0, 0.02)):
    """A cascade whose classifier step (fc6) and first step (fc8) hold the given (mean, se) SSIMs."""
    scores = {}
    for rule, top in (("guided", guided), ("deconvnet", deconv), ("gradient", (0.2, 0.02))):
        ssim = np.stack([_values(*(gradient if rule == "gradient" and s == "fc8" else top)) for s in STEPS])
        signed = np.stack([_values(*(rank if rule == "gradient" else (0.9, 0.01))) for _ in STEPS])
        scores[rule] = {"ssim": ssim, "spearman_abs": signed, "spearman": signed}
    floor = {r: {"ssim": 0.17, "spearman_abs": 0.1, "spearman": 0.02} for r in RULES}
    return Sweep("fc8", STEPS, RULES, scores, floor, {})


def _measured(sweep=None, cleaner=(0.06, 0.01), labels=(0.4, 0.02), train_error=0.04, classes=None, recovery=None):
    """Every measurement of the chapter, by default each claim reproduced."""
    base = np.full(9 * N, 0.4)
    gain = np.repeat(_values(*cleaner), 9)  # 9 pairs per map: one value per map
    garment = {"conv1": {"guided": base, "deconvnet": base}, "conv5": {"guided": base + gain, "deconvnet": base}}
    shuffled = {"guided": {"ssim": 0.1 + _values(*labels)}, "gradient": {"ssim": np.full(N, 0.1)}}
    classes = {"guided": (0.98, 0.005), "deconvnet": (0.97, 0.005), "gradient": (0.3, 0.02)} | (classes or {})
    margins = {(r, net): (0.05, 0.01) for r in ("deconvnet", "guided") for net in ("trained", "random")} | (recovery or {})
    return dict(cascade=sweep or _sweep(), classifier="fc6", garment=garment, shuffled=shuffled,
                shuffled_train_error=train_error, classes={r: {"ssim": _values(*v)} for r, v in classes.items()},
                recovery={r: {net: {"image": 0.3 + _values(*margins[r, net]), "other image": np.full(N, 0.3)}
                              for net in ("trained", "random")} for r in ("deconvnet", "guided")})


def _rows(**measured):
    table = verdict_table(claims10.claims(**measured))  # refuses rows without noise, or inconclusive without needed
    assert [r.claim for r in table] == ORDER and [r.source for r in table] == SOURCES
    for r in table:
        assert (r.needed is not None) == (r.holds is None)
        assert r.holds is NOT_TESTABLE or r.threshold.source == "ours"  # the papers state no number
    return {r.claim: r for r in table}


def test_every_claim_reproduced():
    rows = _rows(**_measured())
    assert all(r.holds is True for r in rows.values())
    guided = rows[claims10.SANITY_GUIDED]
    assert guided.threshold.value == claims10.ALIKE and "(0.17)" in guided.threshold.why  # the floor, for scale
    assert guided.flips_at == pytest.approx(0.99 - k_for(N) * 0.005, abs=1e-6)
    assert guided.noise == f"± 0.005, standard error over {N} test images"
    assert "after fc8–fc6 randomised 0.99" in guided.measured and "after conv5 too" in guided.measured


@pytest.mark.parametrize("claim, measured, outcome", [
    (claims10.SANITY_GUIDED, {"sweep": _sweep(guided=(0.5, 0.01))}, False),
    (claims10.SANITY_GUIDED, {"sweep": _sweep(guided=(0.91, 0.01))}, None),  # 0.01 above 0.9, 2.4 se needed
    (claims10.SANITY_GRADIENT, {"sweep": _sweep(gradient=(0.95, 0.01))}, False),
    (claims10.SANITY_GRADIENT, {"sweep": _sweep(rank=(0.6, 0.02))}, False),  # the signed ranks still agree
    (claims10.SANITY_GRADIENT, {"sweep": _sweep(gradient=(0.58, 0.02))}, None),
    (claims10.SANITY_DECONV, {"sweep": _sweep(deconv=(0.83, 0.01))}, False),
    (claims10.SANITY_DECONV, {"sweep": _sweep(deconv=(0.92, 0.02))}, None),
    (claims10.SANITY_CLEANER, {"cleaner": (-0.05, 0.01)}, False),
    (claims10.SANITY_CLEANER, {"cleaner": (0.01, 0.01)}, None),
    (claims10.SANITY_LABELS, {"labels": (0.05, 0.02)}, False),
    (claims10.SANITY_LABELS, {"labels": (0.22, 0.02)}, None),
    (claims10.SANITY_LABELS, {"train_error": 0.8}, NOT_TESTABLE),  # the control never memorised its labels
    (claims10.SANITY_CLASS_GUIDED, {"classes": {"guided": (0.6, 0.02)}}, False),
    (claims10.SANITY_CLASS_DECONV, {"classes": {"deconvnet": (0.82, 0.01)}}, False),
    (claims10.SANITY_CLASS_DECONV, {"classes": {"deconvnet": (0.9, 0.02)}}, None),
    (claims10.SANITY_RECOVERY, {"recovery": {("deconvnet", "trained"): (-0.03, 0.01)}}, False),
    (claims10.SANITY_RECOVERY, {"recovery": {("guided", "trained"): (0.01, 0.02)}}, None),
])
def test_each_claim_decides_each_way(claim, measured, outcome):
    rows = _rows(**_measured(**measured))
    assert rows[claim].holds is outcome
    assert all(r.holds is True for c, r in rows.items() if c != claim)


def test_the_label_control_names_its_measured_failure():
    row = _rows(**_measured(train_error=0.8))[claims10.SANITY_LABELS]
    assert "below 0.5" in row.precondition and "this one's is 0.80" in row.precondition
    assert row.noise.startswith("± ") and row.threshold is None


def test_inconclusive_rows_say_how_many_images_would_decide():
    row = _rows(**_measured(sweep=_sweep(guided=(0.91, 0.01))))[claims10.SANITY_GUIDED]
    n = int(row.needed.split()[0])
    clears = lambda m: k_for(m) * 0.01 * np.sqrt(N / m) < 0.01  # noqa: E731
    assert clears(n) and not clears(n - 1)
    assert row.needed.endswith(f"test images (measured on {N})")
    cleaner = _rows(**_measured(cleaner=(0.01, 0.01)))[claims10.SANITY_CLEANER]
    assert cleaner.needed.endswith(f"conv5 maps (measured on {N})")


def test_the_randomisation_rows_alone_as_the_imagenet_chapter_asks_them():
    rows = claims10.claims(_sweep(), "fc8", what="photos")
    assert [r.claim for r in rows] == [claims10.SANITY_GUIDED, claims10.SANITY_GRADIENT, claims10.SANITY_DECONV]
    assert all(r.noise.endswith(f"over {N} photos") for r in rows)
    assert "after fc8 randomised" in rows[0].measured  # the classifier is the first step


def test_bad_measurements_are_refused():
    with pytest.raises(ValueError, match="must be steps of the sweep"):
        claims10.claims(_sweep(), "classifier")
    with pytest.raises(ValueError, match="pass shuffled and shuffled_train_error together"):
        claims10.claims(_sweep(), "fc6", shuffled={"guided": {}, "gradient": {}})


@pytest.mark.parametrize("lowest, outcome", [(0.999999, True), (0.99, False)])
def test_the_engine_check(lowest, outcome):
    (row,) = check_table(claims10.checks({"deconvnet": 1.0, "guided": lowest, "gradient": 1.0}))
    assert row.claim == claims10.ENGINE and row.holds is outcome
