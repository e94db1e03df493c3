"""Chapter 4's verdicts: Fig. 4's reading of how features evolve during training.

The measurements come from :class:`zfkit.gallery.Evolution` over training snapshots whose first is
epoch 0, the untrained network training started from: per map, the cosine of each snapshot's
projection to the final one (:meth:`~zfkit.gallery.Evolution.similarity_to_final`) and the epoch
from which its strongest image stops changing (:meth:`~zfkit.gallery.Evolution.settled_epoch`).
Epoch 0 is what makes "converged" mean something: a layer that already looked like its final self
before training has nothing to converge to. The spread over a layer's maps gives each mean its noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from .. import verdicts
from ..results import Verdict
from ..verdicts import Decision

LOWER_EARLY = "Fig. 4: lower layers converge within a few epochs"
UPPER_LATE = "Fig. 4: upper layers develop only after many epochs"
UPPER_CHANGE = "Fig. 4: the upper layers' projections change more during training"

#: Cosine to the final projection from which a map counts as converged (ours, as the paper judges by eye).
CONVERGED = 0.9

__all__ = ["LOWER_EARLY", "UPPER_LATE", "UPPER_CHANGE", "CONVERGED", "claims"]

_UNIT = "maps per layer"


def _check(similarity: Mapping, settled: Mapping, epochs: Sequence[int], early: int, layers: Sequence[str]) -> None:
    if not epochs or epochs[0] != 0:
        raise ValueError(f"the first snapshot must be epoch 0, the untrained network training started from (got epochs "
                         f"{list(epochs)}); add zoo.prepare(name, profile).model as snapshot 0")
    if early not in epochs[1:]:
        raise ValueError(f"early={early!r} must be one of the trained snapshots' epochs {list(epochs[1:])}")
    for layer in layers:
        if layer not in similarity or layer not in settled:
            raise ValueError(f"no measurements for layer {layer!r}; pass similarity and settled of every judged layer")
        shape = np.shape(similarity[layer])
        if len(shape) != 2 or shape[0] != len(epochs) or len(settled[layer]) != shape[1]:
            raise ValueError(f"{layer}: similarity must be (snapshots={len(epochs)}, maps) and settled one epoch per "
                             f"map, got shapes {shape} and {len(settled[layer])}")


def _too_few(counts: Mapping[str, int]) -> Decision | None:
    """Not testable when a layer has fewer than two measured maps (a noise needs two), else None."""
    short = ", ".join(f"{layer} has {n}" for layer, n in counts.items() if n < 2)
    if not short:
        return None
    return verdicts.requires(False, None, f"a noise over maps needs two active maps per layer: {short}")


def _lower_early(similarity: np.ndarray, settled: Sequence[int], epochs: Sequence[int], early: int,
                 low: str) -> Verdict:
    n = similarity.shape[1]
    decision, measured, noise = _too_few({low: n}), f"{low}: {n} measured map(s)", ""
    if decision is None:
        start, start_noise = float(similarity[0].mean()), verdicts.standard_error(similarity[0])
        moved = verdicts.decide(start, CONVERGED, start_noise, direction="<", samples=n).holds is True
        at = similarity[epochs.index(early)]
        decision = verdicts.requires(
            moved, verdicts.decide(at.mean(), CONVERGED, verdicts.standard_error(at), samples=n),
            f"{low} must start unlike its final self for 'converges' to mean anything: its untrained projections "
            f"(epoch 0) already have cosine {start:.2f} ± {start_noise:.3f} to the final, not clearly below "
            f"{CONVERGED}")
        measured = (f"{low} projections at epoch {early} of {epochs[-1]}: cosine {at.mean():.2f} to the final, from "
                    f"{start:.2f} ± {start_noise:.3f} at epoch 0 (untrained); the winning image itself settles at "
                    f"epoch {np.mean(settled):.1f} on average")
        noise = f"± {verdicts.standard_error(at):.3f}: standard error over {n} maps at epoch {early}"
    return Verdict.decided(
        LOWER_EARLY, measured, decision, noise=noise,
        note="judged by the feature's appearance (cosine to the final projection), not by its winning image: "
             "among many similar patches the single winner keeps changing",
        threshold_source="ours", unit=_UNIT,
        why="the paper judges Fig. 4 by eye; at cosine 0.9 what a projection does not share with the final one is "
            f"under {math.sqrt(1 - CONVERGED ** 2):.2f} of its norm (sin θ), the same pattern retouched, and the "
            "untrained start must lie clearly below it")


def _compare(claim: str, a: np.ndarray, b: np.ndarray, names: tuple[str, str], describe: Callable[[float, float], str],
             why: str) -> Verdict:
    """mean(a) − mean(b) beyond 0, with the Welch noise of two independent sets of maps."""
    decision, noise = _too_few(dict(zip(names, (len(a), len(b))))), ""
    measured = f"{names[0]} and {names[1]}: too few maps"
    if decision is None:
        decision = verdicts.decide(a.mean() - b.mean(), 0.0, verdicts.mean_difference_noise(a, b),
                                   samples=min(len(a), len(b)))
        measured = describe(float(a.mean()), float(b.mean()))
        noise = f"± {decision.noise:.3f}: standard errors over maps in quadrature (Welch; {len(a)} and {len(b)} maps)"
    return Verdict.decided(claim, measured, decision, noise=noise, threshold_source="ours", why=why, unit=_UNIT)


def claims(similarity: Mapping[str, np.ndarray], settled: Mapping[str, Sequence[int]], epochs: Sequence[int], *,
           early: int, low: str = "conv1", high: str = "conv5") -> list[Verdict]:
    """Fig. 4's three claims from per-map measurements over snapshots ``epochs`` (the first must be 0).

    ``similarity``: layer -> (snapshots, maps) cosine of each snapshot's projection to the final one;
    ``settled``: layer -> per map, the epoch from which its strongest image no longer changes.
    (1) ``low`` is within cosine :data:`CONVERGED` of its final projections at epoch ``early``
    (after starting clearly below it at epoch 0, else not testable); (2) ``high`` settles later
    than ``low``; (3) ``high``'s projections move further from epoch 0 to the end than ``low``'s.
    """
    epochs = [int(e) for e in epochs]
    _check(similarity, settled, epochs, early, (low, high))
    sim = {layer: np.asarray(similarity[layer], dtype=float) for layer in (low, high)}
    when = {layer: np.asarray(settled[layer], dtype=float) for layer in (low, high)}
    return [
        _lower_early(sim[low], settled[low], epochs, early, low),
        _compare(UPPER_LATE, when[high], when[low], (high, low),
                 lambda a, b: f"mean settling epoch {high} {a:.1f} vs {low} {b:.1f}: {a - b:+.1f}",
                 "the paper gives a direction (upper layers later: epochs 40–50 of its 70); any delay counts"),
        _compare(UPPER_CHANGE, sim[low][0], sim[high][0], (low, high),
                 lambda a, b: f"cosine of the untrained start (epoch 0) to the final projection: {low} {a:.2f}, "
                              f"{high} {b:.2f}: difference {a - b:+.2f}",
                 "the paper gives a direction (more change higher up); any difference counts"),
    ]
