"""Chapter 10's verdicts: later papers' sanity checks of the deconvnet and its relatives.

None of these are Zeiler & Fergus's claims: each row's ``source`` is the later paper that makes it
(Springenberg 2014, Adebayo 2018, Nie 2018, Sixt 2020). Those papers judge by eye or plot the
similarity curves without a cut-off, so every threshold here is ours, and each row says why that
value. Every measurement is a mean over images (or feature maps) with its standard error, decided
beyond Student's t for that many (:func:`zfkit.verdicts.decide`).

:func:`claims` takes a randomisation :class:`zfkit.sanity.Sweep` of class logits (the three
randomisation rows) and, where the chapter measured them, the rule-against-rule, label, class and
image-recovery measurements; rows whose measurements are not passed are left out, so the ImageNet
chapter judges its photos with the same function (``claims(sweep, classifier, what="photos")``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..results import Verdict
from ..sanity import Sweep, mean_with_noise, paired_difference
from ..verdicts import Decision, combine, decide, exceeds, requires

__all__ = ["SANITY_CLEANER", "SANITY_GUIDED", "SANITY_GRADIENT", "SANITY_LABELS", "SANITY_CLASS_GUIDED",
           "SANITY_CLASS_DECONV", "SANITY_RECOVERY", "SANITY_DECONV", "ENGINE", "ALIKE", "CHANGED_SSIM",
           "CHANGED_SPEARMAN", "LABEL_GAP", "MEMORISED", "claims", "checks"]

SANITY_CLEANER = "Springenberg 2014: guided backprop gives cleaner pictures than the deconvnet, especially higher up"
SANITY_GUIDED = "Adebayo 2018: guided backprop barely changes when the top layers are randomised"
SANITY_GRADIENT = "Adebayo 2018: the gradient passes: its explanation changes as soon as the top layer is randomised"
SANITY_LABELS = "Adebayo 2018: guided backprop looks alike for a model trained on shuffled labels; the gradient does not"
SANITY_CLASS_GUIDED = "Nie 2018: guided backprop barely changes with the class explained"
SANITY_CLASS_DECONV = "Nie 2018: the deconvnet barely changes with the class explained"
SANITY_RECOVERY = "Nie 2018: guided backprop and the deconvnet do partial image recovery, trained or not"
SANITY_DECONV = "Sixt 2020: the deconvnet ignores the parameters of later layers"
ENGINE = ("The engine equals autograd with the ReLU's backward swapped, for each rule (the one backward pass "
          "of Springenberg 2014)")

#: SSIM above which two explanations "barely change" (ours, as the papers give no number).
ALIKE = 0.9
#: SSIM and signed Spearman below which an explanation "changes" (ours).
CHANGED_SSIM, CHANGED_SPEARMAN = 0.6, 0.2
#: SSIM by which guided backprop must exceed the gradient for "alike / not alike" (ours).
LABEL_GAP = 0.2
#: Error on its own shuffled labels below which the label control memorised them (ours; chance is 0.9).
MEMORISED = 0.5
#: Lowest cosine to the autograd oracle for the engine check; float rounding moves it by about 1e-7.
ORACLE = 0.9999

NO_NUMBER = "the paper gives no number"


def _mean(values) -> tuple[float, float, int]:
    """Mean, standard error and count of the defined (non-NaN) values."""
    values = np.asarray(values, dtype=float)
    mean, se = mean_with_noise(values)
    return mean, se, int(np.isfinite(values).sum())


def _row(claim: str, measured: str, decision: Decision, source: str, why: str, what: str, note: str = "",
         noise: str = "") -> Verdict:
    """A row whose noise is the standard error over ``decision.samples`` ``what`` (images, maps)."""
    noise = noise or f"± {decision.noise:.3f}, standard error over {decision.samples} {what}"
    return Verdict.decided(claim, measured, decision, noise=noise, note=note, source=source, threshold_source="ours",
                           why=why, unit=what)


def _alike_why(floor: float, word: str = "barely changes") -> str:
    return (f"{NO_NUMBER}; '{word}' read as SSIM within {1 - ALIKE:.1f} of identical (1), far above what "
            f"explanations of two different images share ({floor:.2f})")


def _cascade_rows(cascade: Sweep, classifier: str, first: str, what: str) -> list[Verdict]:
    """Adebayo's and Sixt's randomisation claims: guided, gradient, deconvnet (in that order)."""
    steps, last = cascade.steps, cascade.steps[-1]
    if classifier not in steps or first not in steps:
        raise ValueError(f"classifier {classifier!r} and first {first!r} must be steps of the sweep: {', '.join(steps)}")
    span = classifier if classifier == first else f"{first}–{classifier}"
    scores = lambda step, rule, metric="ssim": _mean(cascade.scores[rule][metric][steps.index(step)])  # noqa: E731
    later = steps[steps.index(classifier) + 1] if steps.index(classifier) + 1 < len(steps) - 1 else None
    guided = scores(classifier, "guided")
    after = f", after {later} too {cascade.at(later, 'guided', 'ssim'):.2f}" if later else ""
    rows = [_row(SANITY_GUIDED, f"guided SSIM after {span} randomised {guided[0]:.2f} ± {guided[1]:.2f}{after}, all "
                                f"layers {cascade.at(last, 'guided', 'ssim'):.2f} (floor {cascade.floor['guided']['ssim']:.2f})",
                 decide(guided[0], ALIKE, guided[1], samples=guided[2]), "Adebayo 2018",
                 _alike_why(cascade.floor["guided"]["ssim"]), what)]
    ssim, rank = scores(first, "gradient"), scores(first, "gradient", "spearman")
    changed = combine(decide(ssim[0], CHANGED_SSIM, ssim[1], direction="<", samples=ssim[2]),
                      decide(rank[0], CHANGED_SPEARMAN, rank[1], direction="<", samples=rank[2]))
    rows.append(_row(SANITY_GRADIENT, f"gradient after {first} alone: SSIM {ssim[0]:.2f} ± {ssim[1]:.2f}, signed Spearman "
                                      f"{rank[0]:.2f} ± {rank[1]:.2f} (floor {cascade.floor['gradient']['spearman']:.2f})",
                     changed, "Adebayo 2018",
                     f"{NO_NUMBER}; 'changes' read as SSIM below {CHANGED_SSIM} (well away from identical) and a signed "
                     f"rank correlation below {CHANGED_SPEARMAN} (little rank agreement left)", what))
    deconv = scores(classifier, "deconvnet")
    rows.append(_row(SANITY_DECONV, f"deconvnet SSIM with {first} / {span} randomised: "
                                    f"{cascade.at(first, 'deconvnet', 'ssim'):.2f} / {deconv[0]:.2f} ± {deconv[1]:.2f}",
                     decide(deconv[0], ALIKE, deconv[1], samples=deconv[2]), "Sixt 2020",
                     _alike_why(cascade.floor["deconvnet"]["ssim"], "ignores"), what,
                     "its classifier signal is image-independent but not weight-independent"))
    return rows


def _cleaner(garment: Mapping[str, Mapping[str, Sequence[float]]], group: int) -> Verdict:
    """Springenberg's "cleaner": the share of the picture on the garment, guided minus deconvnet, top layer, paired."""
    low, top = list(garment)[0], list(garment)[-1]
    share = lambda layer, rule: float(np.mean(garment[layer][rule]))  # noqa: E731
    gain, se = paired_difference(garment[top]["guided"], garment[top]["deconvnet"], group)
    maps = len(np.asarray(garment[top]["guided"])) // group
    return _row(SANITY_CLEANER, f"share of the projection on the garment, {low} / {top}: deconvnet "
                                f"{share(low, 'deconvnet'):.2f} / {share(top, 'deconvnet'):.2f}, guided "
                                f"{share(low, 'guided'):.2f} / {share(top, 'guided'):.2f}; {top} guided − deconvnet "
                                f"{gain:+.3f} ± {se:.3f}",
                decide(gain, 0, se, samples=maps), "Springenberg 2014",
                "the paper judges 'cleaner' by eye; the share on the garment is our stand-in, and any gain "
                "beyond its noise counts", f"{top} maps", "a stand-in for 'clean'; paired over the same maps and images")


def _labels(pairs: Mapping[str, Mapping[str, Sequence[float]]], train_error: float, what: str) -> Verdict:
    """Adebayo's label test: guided's SSIM (real vs shuffled-label model) minus the gradient's, paired."""
    guided, gradient = np.asarray(pairs["guided"]["ssim"], float), np.asarray(pairs["gradient"]["ssim"], float)
    gap, se = paired_difference(guided, gradient)
    failed = (f"a control that memorised its shuffled labels (error on them below {MEMORISED}; chance 0.9): this one's "
              f"is {train_error:.2f}, so it compares with a near-untrained network, the parameter test again")
    decision = requires(train_error < MEMORISED, decide(gap, LABEL_GAP, se, samples=len(guided)), failed)
    return _row(SANITY_LABELS, f"SSIM real vs shuffled-label model: guided {np.nanmean(guided):.2f}, gradient "
                               f"{np.nanmean(gradient):.2f}, difference {gap:.2f} ± {se:.2f}; the shuffled model's "
                               f"training error {train_error:.2f}",
                decision, "Adebayo 2018",
                f"{NO_NUMBER}; 'alike' against 'not alike' read as guided's SSIM exceeding the gradient's by "
                f"{LABEL_GAP}, a fifth of the scale", what, "paired over the same images",
                noise=f"± {se:.3f}, standard error over {len(guided)} {what}, paired")


def _class(pairs: Mapping[str, Mapping[str, Sequence[float]]], rule: str, claim: str, floor: float, what: str) -> Verdict:
    """Nie's class claim for ``rule``: SSIM of the true class's explanation with the runner-up's."""
    mean, se, n = _mean(pairs[rule]["ssim"])
    gradient = f", gradient {np.nanmean(pairs['gradient']['ssim']):.2f}" if rule == "guided" and "gradient" in pairs else ""
    return _row(claim, f"SSIM true vs runner-up class: {rule} {mean:.2f} ± {se:.2f}{gradient}",
                decide(mean, ALIKE, se, samples=n), "Nie 2018", _alike_why(floor), what)


def _recovery(pairs: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]], what: str) -> Verdict:
    """Nie's image recovery: absolute Spearman with the input image minus that with another image, per rule and net."""
    margins = {f"{rule}, {net}": paired_difference(pairs[rule][net]["image"], pairs[rule][net]["other image"])
               for rule in ("deconvnet", "guided") for net in ("trained", "random")}
    n = len(np.asarray(pairs["guided"]["trained"]["image"]))
    decision = combine(*(decide(m, 0, se, samples=n) for m, se in margins.values()))
    return _row(SANITY_RECOVERY, "Spearman |.| with the input image minus that with another image: "
                + ", ".join(f"{k} {m:+.3f} ± {se:.3f}" for k, (m, se) in margins.items()),
                decision, "Nie 2018",
                "the paper shows recovered pictures, no number; garments share a centred layout, so recovery "
                "counts only beyond another image's correlation, every margin above 0", what,
                "the deciding margin's noise shown; paired over the same images")


def claims(cascade: Sweep, classifier: str, *, first: str | None = None, what: str = "test images",
           garment: Mapping[str, Mapping[str, Sequence[float]]] | None = None, group: int = 9,
           shuffled: Mapping[str, Mapping[str, Sequence[float]]] | None = None, shuffled_train_error: float | None = None,
           classes: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
           recovery: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]] | None = None) -> list[Verdict]:
    """The later papers' claims on a cascading randomisation ``cascade`` of class logits, and what else was measured.

    ``classifier`` is the cascade's step with the whole classifier re-initialised, ``first`` its first
    step (default ``cascade.steps[0]``). Optional measurements, each adding its rows:
    ``garment`` (layer -> rule -> per (image, unit) share on the garment, ``group`` pairs per map),
    ``shuffled`` with ``shuffled_train_error`` (rule -> metric -> per-image similarity to the
    shuffled-label model, and that model's error on its shuffled labels), ``classes`` (rule -> metric
    -> per-image similarity of the true and runner-up classes' explanations), ``recovery`` (rule ->
    net -> reference -> per-image absolute Spearman: :func:`zfkit.sanity.recovery`).
    """
    if (shuffled is None) != (shuffled_train_error is None):
        raise ValueError("pass shuffled and shuffled_train_error together: the label test needs its control's error")
    guided, gradient, deconv = _cascade_rows(cascade, classifier, first or cascade.steps[0], what)
    rows = [_cleaner(garment, group)] if garment is not None else []
    rows += [guided, gradient]
    if shuffled is not None:
        rows.append(_labels(shuffled, shuffled_train_error, what))
    if classes is not None:
        rows += [_class(classes, rule, claim, cascade.floor[rule]["ssim"], what)
                 for rule, claim in (("guided", SANITY_CLASS_GUIDED), ("deconvnet", SANITY_CLASS_DECONV))]
    if recovery is not None:
        rows.append(_recovery(recovery, what))
    return rows + [deconv]


def checks(oracle_min: Mapping[str, float]) -> list[Verdict]:
    """Our own check: the engine agrees with autograd (lowest cosine per rule) for every rule."""
    return [Verdict(ENGINE, "lowest cosine to the oracle: " + ", ".join(f"{r} {v:.6f}" for r, v in oracle_min.items()),
                    exceeds(min(oracle_min.values()), ORACLE, 0),
                    f"threshold {ORACLE}; float rounding moves it by about 1e-7")]
