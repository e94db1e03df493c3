"""Chapter 8's verdicts: Table 3's four conclusions (§5.1), judged on rows trained with several seeds.

Each claim is a difference of Table 3 rows, decided against the seed noise of that difference. A
row is a dict as :func:`zfkit.ablation.with_seeds` (the book's quick runs) and
:func:`zfkit.studies.table3_rows` (the converged study) give it: ``name``, ``parameters``, the seed
means ``test_top1`` / ``train_top1`` (errors in %), the per-seed ``test_top1_seeds`` /
``train_top1_seeds`` (optional for a single run) and ``converged``. Table 3's rows were trained to
convergence, and its conclusions are about what each architecture *can reach*; a claim whose rows
have not converged is therefore not testable (rows in early training measure how fast a net
learns, which removing layers speeds up), whatever their differences show.

Seed noise: a row with two or more seeds brings its own spread; a single run borrows its base
architecture's (AlexNet-mini's or ZFNet-mini's baseline row), the one assumption the book's quick
runs need. The spreads a difference involves are pooled, and the difference is decided beyond
Student's t for the pooled degrees of freedom (:func:`zfkit.verdicts.k_for`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from .. import verdicts
from ..ablation import EARLY, ROWS, SMALL, Table, compare
from ..results import Verdict
from ..verdicts import Decision

__all__ = ["DEPTH", "FC", "FC_WIDTH", "CONV_WIDE", "OVERFIT", "claims"]

DEPTH = "Depth matters: removing conv3+4 and fc6+7 together costs more than removing either pair"
FC = "fc6+fc7 hold most parameters, but removing them costs little accuracy"
FC_WIDTH = "Changing fc6/fc7's width makes little difference"
CONV_WIDE = "Wider conv3-5 (512-1024-512) lowers the error"
OVERFIT = "Widening conv3-5 and fc6/fc7 together over-fits (larger train/test gap, no better test error)"

ORDERING = "the claim is an ordering of two rows: any difference beyond the seed noise counts"
SLIGHT = (f"{SMALL:.0%} of the baseline's error is our reading of 'slight' / 'little difference'; Table 3 "
          "calls +4.3 and +4.9 points on 40.5 (11-12 %) slight and +30.8 (76 %) dramatic")
UNIT = "seeds per arm"


def _base(name: str) -> str:
    """The baseline row whose seed spread a single run of ``name`` borrows."""
    return f"{name.split('-')[0]}-mini-short"


def _seeds(row: Mapping, key: str) -> np.ndarray:
    """Per-seed values of ``key``: ``"test_top1"`` or ``"gap"`` (test minus train error, seed by seed)."""
    test = np.asarray(row.get("test_top1_seeds", [row["test_top1"]]), dtype=float)
    if key == "test_top1":
        return test
    train = np.asarray(row.get("train_top1_seeds", [row["train_top1"]]), dtype=float)
    if train.shape != test.shape:
        raise ValueError(f"row {row['name']!r} has {len(test)} test errors but {len(train)} train errors; score each "
                         "seed on its training images (zfkit.ablation.seed_spread(..., train=True))")
    return test - train


@dataclass(frozen=True)
class _Noise:
    """The seed noise of a difference of row means, and what it was measured on."""

    value: float  # standard error of the difference
    dof: int  # degrees of freedom of the pooled seed spread
    seeds: tuple[int, ...]  # seeds per arm
    text: str

    @property
    def equal_seeds(self) -> float:
        """Seeds per arm that would give the same noise if every arm had as many."""
        return len(self.seeds) / sum(1 / n for n in self.seeds)


def _noise(rows: Mapping[str, Mapping], arms: Sequence[str], key: str = "test_top1") -> _Noise:
    """Noise of a difference between the means of ``arms``: pooled seed spread x sqrt(sum of 1/seeds)."""
    counts = tuple(len(_seeds(rows[a], key)) for a in arms)
    sources = sorted({a if n >= 2 else _base(a) for a, n in zip(arms, counts)})
    spread = {s: _seeds(rows[s], key) for s in sources}
    few = [s for s, v in spread.items() if len(v) < 2]
    if few:
        raise ValueError(f"{', '.join(few)} has a single seed: the seed noise needs at least 2 seeds of each baseline "
                         "(zfkit.ablation.seed_spread)")
    dof = sum(len(v) - 1 for v in spread.values())
    std = math.sqrt(sum((len(v) - 1) * v.var(ddof=1) for v in spread.values()) / dof)
    value = std * math.sqrt(sum(1 / n for n in counts))
    what = "train/test gap" if key == "gap" else "test error"
    text = (f"± {value:.2f} points: {what} seed std {std:.2f} pooled over {', '.join(sources)} "
            f"({dof + len(sources)} seeds), arms of {' and '.join(map(str, counts))} seeds")
    return _Noise(value, dof, counts, text)


def _decide(value: float, threshold: float, noise: _Noise, direction: str = ">") -> Decision:
    """:func:`zfkit.verdicts.decide` beyond Student's t for the pooled spread; ``needed`` in seeds per arm."""
    k = verdicts.k_for(noise.dof + 1)
    decision = verdicts.decide(value, threshold, noise.value, direction=direction, samples=max(2, min(noise.seeds)), k=k)
    if decision.holds is not None:
        return decision
    at_two = noise.value * math.sqrt(noise.equal_seeds / 2)  # the noise with 2 seeds in every arm
    return replace(decision, samples=min(noise.seeds), needed=verdicts.samples_needed(value - threshold, at_two, 2))


def _regime(rows: Mapping[str, Mapping], names: Sequence[str], early: Mapping | None) -> str:
    """The failed precondition (rows not converged) with its measurement, or "" when every row converged."""
    behind = [n for n in names if not rows[n]["converged"]]
    if not behind:
        return ""
    who = ("none of this claim's rows has" if len(behind) == len(names) else
           f"{', '.join(behind)} {'has' if len(behind) == 1 else 'have'} not")
    if early is None:
        return f"Table 3 compares converged nets, and {who} converged: the validation error was still falling " \
               "(zfkit.studies.plateaued)"
    return (f"Table 3 compares converged nets, and {who} converged: on their budget ZFNet-mini's error is "
            f"{early['ratio']:.1f} ± {early['noise']:.2f}x its fully trained error (converged means below {EARLY}x "
            "beyond that noise), so they measure how fast each net learns, not what it can reach")


def _rows(rows: Sequence[Mapping]) -> dict[str, Mapping]:
    by_name = {r["name"]: r for r in rows}
    missing = [r.name for r in ROWS if r.name not in by_name]
    if missing:
        raise ValueError(f"claims needs every Table 3 row; missing {', '.join(missing)} (zfkit.ablation.with_seeds or "
                         "zfkit.studies.table3_rows give them all)")
    unflagged = [n for n, r in by_name.items() if "converged" not in r]
    if unflagged:
        raise ValueError(f"rows {', '.join(unflagged)} carry no 'converged' flag; set it (zfkit.ablation.with_seeds "
                         "or zfkit.studies.table3_rows)")
    return by_name


def claims(rows: Sequence[Mapping], early: Mapping | None = None) -> list[Verdict]:
    """Table 3's conclusions on the measured ``rows`` (one dict per ``zfkit.ablation.ROWS`` entry).

    ``early`` is :func:`zfkit.ablation.early_training` of the rows' budget, the measurement a
    not-testable row quotes when rows have not converged (without it, the rows' own plateau test).
    """
    rows = _rows(rows)
    c = compare(Table(rows.values()))
    delta = c.delta_vs_alexnet
    alex, zf = "alexnet-mini-short", "zfnet-mini-short"
    slight = {name: SMALL * rows[name]["test_top1"] for name in (alex, zf)}

    def row(claim: str, measured: str, decision: Decision, noise: _Noise, names: Sequence[str], why: str,
            source: str, note: str = "") -> Verdict:
        failed = _regime(rows, names, early)  # not testable when any of the claim's rows has not converged
        return Verdict.decided(claim, measured, verdicts.requires(not failed, decision, failed), noise=noise.text,
                               note=note, threshold_source=source, why=why, unit=UNIT)

    worse = max(("alexnet-mini-no-conv34", "alexnet-mini-no-fc67"), key=delta.get)
    depth, all_four = delta["alexnet-mini-no-conv34-fc67"] - delta[worse], "alexnet-mini-no-conv34-fc67"
    noise = _noise(rows, [all_four, worse])
    out = [row(DEPTH, f"Δ error vs AlexNet-mini: conv3+4 {delta['alexnet-mini-no-conv34']:+.1f}, fc6+7 "
                      f"{delta['alexnet-mini-no-fc67']:+.1f}, all four {delta[all_four]:+.1f} points",
               _decide(depth, 0, noise), noise, [alex, "alexnet-mini-no-conv34", "alexnet-mini-no-fc67", all_four],
               ORDERING, "paper", f"all four minus the worse pair ({worse}): {depth:+.1f}")]

    no_fc, noise = delta["alexnet-mini-no-fc67"], _noise(rows, ["alexnet-mini-no-fc67", alex])
    share = verdicts.decide(c.fc_parameter_share, 0.5, 0.0)  # a count of parameters: exact
    fc = verdicts.combine(share, _decide(no_fc, slight[alex], noise, "<"))
    why, source = ("'most' is over half of the parameters", "paper") if fc is share else (SLIGHT, "ours")
    out.append(row(FC, f"{c.fc_parameter_share:.0%} of the parameters; Δ error {no_fc:+.1f} points "
                       f"(slight: under {slight[alex]:.1f})", fc, noise, [alex, "alexnet-mini-no-fc67"], why, source))

    widths = c.fc_width_deltas
    noises = {name: _noise(rows, [name, _base(name)]) for name in widths}
    parts = {name: _decide(abs(d), slight[_base(name)], noises[name], "<") for name, d in widths.items()}
    width = verdicts.combine(*parts.values())
    deciding = next(name for name, d in parts.items() if d is width)
    out.append(row(FC_WIDTH, f"Δ error {', '.join(f'{d:+.1f}' for d in widths.values())} points (AlexNet-mini "
                             "half/double, ZFNet-mini half/double)", width, noises[deciding], [alex, zf, *widths],
                   SLIGHT, "ours", f"deciding row: {deciding}"))

    noise = _noise(rows, ["zfnet-mini-conv-wide", zf])
    out.append(row(CONV_WIDE, f"{c.conv_wide_gain:+.1f} points vs ZFNet-mini", _decide(c.conv_wide_gain, 0, noise),
                   noise, [zf, "zfnet-mini-conv-wide"], ORDERING, "paper"))

    both, pair = c.conv_fc_wide_vs_conv_wide, ["zfnet-mini-conv-fc-wide", "zfnet-mini-conv-wide"]
    gap_noise, test_noise = _noise(rows, pair, "gap"), _noise(rows, pair)
    gap = _decide(both["gap"], 0, gap_noise)
    fits = verdicts.combine(gap, _decide(both["test"], -slight[zf], test_noise))
    noise, why, source = ((gap_noise, ORDERING, "paper") if fits is gap else
                          (test_noise, SLIGHT + "; 'no better' allows a slight gain", "ours"))
    out.append(row(OVERFIT, f"gap {both['gap']:+.1f}, test error {both['test']:+.1f} points vs conv-wide alone", fits,
                   noise, [zf, *pair], why, source))
    return out
