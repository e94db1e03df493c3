"""Chapter 7's verdicts: §4.3's correspondence claims (Table 1), judged on Table 1 for many image sets.

Each (class, image set) gives one Table 1 (:func:`zfkit.correspondence.part_table`) for the trained
network and one for an untrained twin on the same images and masks. The tables are the samples:
the parts of one table share its images and its random row, so budget is counted in image sets.
Gaps are relative to the random row ((random Δ - mean part Δ) / random Δ), so conv5 and fc7, whose
features differ in number and sparsity, compare on one scale (the paper's Table 1: 0.33 at layer
5, 0.06 at layer 7).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..correspondence import PartTable, below_share, part_summary, relative_gaps
from ..results import Verdict
from ..verdicts import Decision, decide, requires, standard_error

__all__ = ["LOWER", "CORRESPONDENCE", "MORE_SIMILAR", "Measurements", "measure", "claims"]

LOWER = "Layer 5: masked parts score lower than random parts of the object (Table 1)"
CORRESPONDENCE = "... which shows the model establishes some degree of correspondence"
MORE_SIMILAR = "Layer 7: part and random scores are more similar than at layer 5"

UNIT = "image sets"
#: ZFNet-mini's layers standing for the paper's layers 5 and 7 (their rectified outputs).
LAYER5, LAYER7 = "conv5", "fc7"


@dataclass(frozen=True)
class Measurements:
    """The chapter's numbers behind its verdicts; the gap arrays hold one value per table, paired by
    (class, image set) across networks and layers."""

    below: int  # trained net, layer 5: (table, part) cases whose Δ lies below the table's random Δ
    cases: int
    share_noise: float  # noise of below / cases: zfkit.correspondence.below_share
    trained5: np.ndarray  # relative gap per table: trained net, layer 5
    trained7: np.ndarray  # trained net, layer 7
    untrained5: np.ndarray  # untrained net, layer 5

    def __post_init__(self):
        sizes = [len(np.asarray(g)) for g in (self.trained5, self.trained7, self.untrained5)]
        if len(set(sizes)) != 1 or min(sizes) < 2:
            raise ValueError(f"the relative gaps must pair table for table, with at least 2 tables to measure noise; "
                             f"got lengths {sizes}")
        if not 0 <= self.below <= self.cases or self.cases < 1:
            raise ValueError(f"below must count cases out of cases >= 1, got {self.below} of {self.cases}")

    @property
    def tables(self) -> int:
        return len(self.trained5)

    @property
    def share(self) -> float:
        return self.below / self.cases


def measure(trained: Sequence[PartTable], untrained: Sequence[PartTable]) -> Measurements:
    """:class:`Measurements` from the trained and untrained networks' tables, paired in one order."""
    if [t.class_name for t in trained] != [t.class_name for t in untrained]:
        raise ValueError("the trained and untrained tables must pair up: same classes in the same order")
    summary = part_summary(trained, LAYER5)
    return Measurements(summary.below, summary.cases, below_share(trained, LAYER5)[1], relative_gaps(trained, LAYER5),
                        relative_gaps(trained, LAYER7), relative_gaps(untrained, LAYER5))


def _paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    return float(diff.mean()), standard_error(diff)


def claims(m: Measurements) -> list[Verdict]:
    """Table 1's three readings, each decided beyond Student's t for the number of tables times its noise."""
    n = m.tables
    over = f"over {n} {UNIT} (one Table 1 each)"
    learned, learned_noise = _paired(m.trained5, m.untrained5)
    shift, shift_noise = _paired(m.trained7, m.trained5)
    gap5, gap5_noise = float(np.mean(m.trained5)), standard_error(m.trained5)
    untrained5, gap7 = float(np.mean(m.untrained5)), float(np.mean(m.trained7))
    return [
        Verdict.decided(
            LOWER, f"part below random in {m.below} of {m.cases} cases: share {m.share:.2f} ± {m.share_noise:.2f}; "
                   f"mean relative gap {gap5:+.3f} (paper +0.33)",
            decide(m.share, 0.5, m.share_noise, samples=n),
            noise=f"± {m.share_noise:.2f}: the larger of the binomial noise of {m.cases} cases and a bootstrap {over}",
            why="a coin: parts no better than random placements lie below the random row in half the cases",
            unit=UNIT),
        Verdict.decided(
            CORRESPONDENCE, f"relative gap at conv5: trained {gap5:+.3f}, untrained {untrained5:+.3f}; "
                            f"difference {learned:+.3f} ± {learned_noise:.3f}",
            decide(learned, 0.0, learned_noise, samples=n),
            noise=f"± {learned_noise:.3f}: standard error of the paired difference {over}",
            note="control not in the paper: an untrained ZFNet-mini on the same images and masks",
            why="0: no larger gap than the untrained network's, which shows what the parts' place on the garment gives "
                "without learning",
            unit=UNIT),
        Verdict.decided(
            MORE_SIMILAR, f"mean relative gap fc7 {gap7:+.3f} vs conv5 {gap5:+.3f} "
                          f"(paper +0.06 vs +0.33); difference {shift:+.3f} ± {shift_noise:.3f}",
            _layer5_gap(gap5, gap5_noise, n, decide(shift, 0.0, shift_noise, direction="<", samples=n)),
            noise=f"± {shift_noise:.3f}: standard error of the paired difference {over}",
            note="the paper's explanation: layer 7 discriminates between breeds",
            threshold_source="paper", why="'more similar': the gap shrinks from layer 5 to layer 7, by any amount",
            unit=UNIT),
    ]


def _layer5_gap(gap: float, noise: float, tables: int, decision: Decision) -> Decision:
    """Layer 7 can only be "more similar" than layer 5 if parts and random differ at layer 5: not
    testable when the trained net's layer-5 gap is at or below 0 beyond its noise."""
    absent = decide(gap, 0.0, noise, samples=tables).holds is False
    return requires(not absent, decision,
                    f"parts score lower than random at layer 5, the difference layer 7 would shrink: the trained "
                    f"net's relative gap at conv5 is {gap:+.3f} ± {noise:.3f} over {tables} {UNIT}, at or below 0")
