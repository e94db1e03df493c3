"""Chapter 9's verdicts: §5.2's transfer claims (Table 7 and the few-shot curves).

Two readings of the paper, each on two targets (digits; Fashion-MNIST's five unseen classes):
pretrained features + a new softmax beat the same network trained from scratch "by a wide margin"
with few images (Tables 4-5 and Fig. 9 of the ECCV text, Fig. 7 of the arXiv text), and Table 7's
accuracy "rises steadily" from layer to layer. The folds are the samples: a fold draws one
training set per shot count, and everything compared within a fold sees the same images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import numpy as np

from ..probes import FewShotCurve, LayerTrend, fold_margins, layer_trend
from ..results import Verdict
from ..verdicts import Decision, combine, decide, standard_error

__all__ = ["TRANSFER", "TRANSFER_FASHION", "RISES", "RISES_FASHION", "CLAIMS", "WIDE_MARGIN", "WIDE_MARGIN_WHY",
           "margin_verdict", "rises_verdict", "claims"]

TRANSFER = "Pretrained features + softmax beat training from scratch by a wide margin with few images (digits)"
TRANSFER_FASHION = ("Pretrained features + softmax beat training from scratch by a wide margin with few images "
                    "(fashion 5→5)")
RISES = "Table 7: accuracy rises steadily as one ascends the layers (digits)"
RISES_FASHION = "Table 7: accuracy rises steadily as one ascends the layers (fashion 5→5)"

#: Per target of chapter 9, its (margin, Table 7) claim texts.
CLAIMS = {"digits": (TRANSFER, RISES), "fashion 5→5": (TRANSFER_FASHION, RISES_FASHION)}

#: How the rows name :data:`zfkit.probes.CLASSIFIERS`.
NAMES = {"svm": "SVM", "softmax": "softmax"}

#: The points of per-class accuracy that make "a wide margin" (ours, as the paper gives no number).
WIDE_MARGIN = 10.0
WIDE_MARGIN_WHY = ("the paper gives no number; its pretrained net beats the scratch net by 35-61 points (Tables 4-5) "
                   "and it calls 19 points over the state of the art 'a significant margin', 2.2 points not: 10 is "
                   "half the smallest margin it calls significant")


def margin_verdict(margins: Sequence[float], shots: Sequence[int], *, claim: str = TRANSFER, features: str = "fc7",
                   detail: str = "", threshold: float = WIDE_MARGIN, why: str = WIDE_MARGIN_WHY) -> Verdict:
    """"A wide margin" on one target: the per-fold margins (pretrained minus scratch, in points,
    averaged over the shot counts: :func:`zfkit.probes.fold_margins`) above ``threshold``, beyond
    Student's t for the folds times their standard error.

    ``features`` names what the softmax read (e.g. "Lite0 pool") and ``detail`` is appended to the
    measurement, so that chapter 11 judges the same sentence on its own net.
    """
    margins = np.asarray(margins, dtype=float)
    if margins.ndim != 1 or len(margins) < 2:
        raise ValueError(f"margins must be one number per fold, at least 2 folds; got shape {margins.shape}")
    if not shots:
        raise ValueError("shots must name the shot counts the margins average over, e.g. (1, 2, 5, 10, 20, 30)")
    mean, se = float(margins.mean()), standard_error(margins)
    measured = f"{features}: {mean:+.1f} ± {se:.1f} points on average over {shots[0]}-{shots[-1]} images/class"
    return Verdict.decided(
        claim, measured + detail,
        decide(mean, threshold, se, samples=len(margins)),
        noise=f"± {se:.1f} points: standard error over {len(margins)} folds (both nets train on a fold's same images)",
        why=why, unit="folds")


def _rises(trend: LayerTrend, folds: int) -> Decision:
    """One classifier's Table 7 column, in points: the trend is up beyond its noise and no step falls
    beyond its noise. A step within its noise passes (the paper's own Table 7 has one: Caltech-101
    SVM 86.2 ± 0.8 at layer 5, 85.5 ± 0.4 at layer 7); the first step that falls decides against."""
    slope = decide(100 * trend.slope, 0.0, 100 * trend.slope_noise, samples=folds)
    steps = [decide(100 * s, 0.0, 100 * n, samples=folds) for s, n in zip(trend.steps, trend.step_noise)]
    falling = [d for d in steps if d.holds is False]
    return slope if slope.holds is False or not falling else falling[0]


def rises_verdict(rows: Sequence[dict], folds: int, claim: str = RISES) -> Verdict:
    """Table 7's "steady improvement as we ascend", for every classifier of :func:`zfkit.probes.layer_probes`'
    ``rows`` (measured on ``folds`` folds): reproduced only if every classifier rises."""
    classifiers = list(dict.fromkeys(r["classifier"] for r in rows))
    if not classifiers:
        raise ValueError("rows must be zfkit.probes.layer_probes rows (layer, classifier, mean, std)")
    trends = {c: layer_trend(rows, c, folds) for c in classifiers}
    first, last = next(iter(trends.values())).layers[0], next(iter(trends.values())).layers[-1]
    measured = "; ".join(f"{NAMES.get(c, c)}: {100 * t.slope:+.2f} ± {100 * t.slope_noise:.2f} points per layer, "
                         f"{t.falls} of {len(t.steps)} steps fall beyond noise, {first} {100 * t.means[0]:.1f} → "
                         f"{last} {100 * t.means[-1]:.1f}" for c, t in trends.items())
    noise = ", ".join(f"± {100 * t.slope_noise:.2f} ({NAMES.get(c, c)})" for c, t in trends.items())
    return Verdict.decided(
        claim, measured, combine(*(_rises(t, folds) for t in trends.values())),
        noise=f"{noise} points per layer on the trend: each layer's standard error over {folds} folds, the layers "
              "taken as independent (conservative: they share the folds)",
        threshold_source="paper",
        why="'a steady improvement as we ascend': the trend over the layers above 0 by any amount and, our reading "
            "of 'steady', no step down beyond its noise (the paper's own Table 7 has one step down within noise)",
        unit="folds")


def claims(curves: Mapping[str, FewShotCurve], best: Mapping[str, FewShotCurve], table7: Mapping[str, Sequence[dict]],
           table7_folds: int) -> list[Verdict]:
    """Chapter 9's rows: per target, "a wide margin" on fc7 (the best layer's margin beside it), then
    per target Table 7's rise. ``curves`` carry the scratch baseline; ``best`` are the curves on each
    target's best layer of Table 7 (same shots and folds); ``table7`` its rows, on ``table7_folds``."""
    unknown = sorted(set(curves) - set(CLAIMS))
    if unknown or set(best) != set(curves) or set(table7) != set(curves):
        raise ValueError(f"curves, best and table7 must cover the same targets, each one of {', '.join(CLAIMS)}; "
                         f"got {sorted(curves)}, {sorted(best)} and {sorted(table7)}")
    rows = []
    for name, curve in curves.items():
        first = curve.margin()[curve.shots[0]]
        other = fold_margins(best[name], baseline=curve)
        detail = (f" ({curve.shots[0]}/class {first:+.1f}); best layer {best[name].layer}: {other.mean():+.1f} ± "
                  f"{standard_error(other):.1f}")
        rows.append(margin_verdict(fold_margins(curve), curve.shots, claim=CLAIMS[name][0], features=curve.layer,
                                   detail=detail))
    rows += [rises_verdict(table7[name], table7_folds, CLAIMS[name][1]) for name in curves]
    return rows
