"""Chapter 12's checks: what the distilled max-pooling student (``zfnet-scenes``) was built to achieve.

These are our targets, not the paper's claims (issue #23 set them): the student should agree with
its teacher far above chance, on held-out scenes and on real photos, and its deconvnet projections
should concentrate on the object more than the same network's untrained projections do. Each row is
decided with its noise (binomial over the images, or the standard error of a paired difference).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..results import Verdict
from ..verdicts import decide, share_noise, standard_error

__all__ = ["CHANCE_TOP1", "CHANCE_TOP5", "FAR_ABOVE", "checks"]

#: The agreement two unrelated classifiers over ImageNet's 1000 classes reach by chance (top-1, top-5 overlap).
CHANCE_TOP1, CHANCE_TOP5 = 0.001, 0.005
#: What "far above chance" means here, ten times chance (ours; issue #23 gives no number).
FAR_ABOVE = 10


def _agrees(what: str, score: float, n: int, chance: float, measure: str) -> Verdict:
    noise = share_noise(n, min(max(score, 1 / n), 1 - 1 / n))
    return Verdict.decided(f"The student agrees with Lite0 far above chance on {what}",
                           f"{measure} {score:.1%} over {n} {what} (chance {chance:.1%})",
                           decide(score, FAR_ABOVE * chance, noise, samples=n), unit=what,
                           noise=f"binomial over {n} {what}; ± {noise:.3g}",
                           why=f"{FAR_ABOVE} times chance: our reading of 'far above chance'")


def _concentrates(layer: str, trained: Sequence[float], control: Sequence[float]) -> Verdict:
    diff = np.asarray(trained, dtype=float) - np.asarray(control, dtype=float)
    diff = diff[np.isfinite(diff)]
    mean, se = float(diff.mean()), standard_error(diff)
    return Verdict.decided(f"The student's {layer} projections concentrate on the object more than the untrained net's",
                           f"energy on the mask / mask area, trained minus untrained: {mean:+.2f} ± {se:.2f} over "
                           f"{len(diff)} scenes (trained {np.nanmean(trained):.2f}, untrained {np.nanmean(control):.2f})",
                           decide(mean, 0.0, se, samples=len(diff)), unit="scenes",
                           noise=f"standard error of the paired difference over {len(diff)} scenes; ± {se:.3g}",
                           why="any more concentration than the untrained control: the deconvnet redraws the image's "
                               "edges even with random weights (switches), so the control is the reference")


def checks(scenes: Mapping[str, float], photos: Mapping[str, float],
           legibility: Mapping[str, tuple[Sequence[float], Sequence[float]]]) -> list[Verdict]:
    """The student's rows: ``scenes`` and ``photos`` are :func:`zfkit.distill.agreement` dicts (held-out
    scenes: top-1; real photos: top-5 overlap), ``legibility`` maps a layer to the per-scene
    :func:`zfkit.distill.legibility_scores` of the trained student and of its untrained control."""
    if "top1" not in scenes or "top5_overlap" not in photos:
        raise ValueError("scenes and photos must be zfkit.distill.agreement(...) dicts (top1, top5_overlap, n)")
    return [
        _agrees("held-out scenes", scenes["top1"], int(scenes["n"]), CHANCE_TOP1, "top-1 agreement"),
        _agrees("real photos", photos["top5_overlap"], int(photos["n"]), CHANCE_TOP5, "top-5 overlap"),
        *(_concentrates(layer, *pair) for layer, pair in legibility.items()),
    ]
