"""When does a measurement reproduce a claim, refute it, or leave it open?

Every chapter closes with verdicts, and a verdict is only worth reading if it could have gone the
other way and would not flip on another machine. So each rule here takes the measured effect
*and its noise* (a standard deviation measured over seeds, images, folds or reruns) and decides
only when the effect clears the noise by ``K`` standard deviations:

- ``True`` ("reproduced"): the effect lies beyond ``K`` noise in the claim's direction;
- ``False`` ("not reproduced"): it lies beyond ``K`` noise the other way;
- ``None`` ("inconclusive"): it is within ``K`` noise of the claim's threshold;
- :data:`NOT_TESTABLE` ("not testable"): the claim's precondition fails in our setting (the regime
  is never reached, the objects the claim is about are absent), so no measurement could decide it
  (:func:`requires`).

With few samples (5 seeds, 5 folds) the multiple grows to Student's t quantile (:func:`k_for`).
The plain rules return ``bool | None``; :func:`decide` wraps one into a :class:`Decision` that also
says how close it came to flipping (``flips_at``) and, when inconclusive, what budget its measured
noise says would decide it (``needed``). :class:`zfkit.results.Verdict` turns either into words.

Float rounding across CPUs (another oneDNN kernel, another thread count) moves a measurement by far
less than the seed or sampling noise, so a verdict decided this way is the same on every machine.
Exact facts (shapes, parameter counts: integer arithmetic) need no noise: :func:`equals`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["K", "NOT_TESTABLE", "NotTestable", "Outcome", "Decision", "k_for", "exceeds", "below", "equals", "all_of", "when",
           "decide", "combine", "requires", "samples_needed", "mean_difference_noise", "standard_error",
           "bootstrap_noise", "paired_bootstrap_noise", "share_noise"]


class NotTestable:
    """The fourth outcome: the claim's precondition fails here, so nothing measured could decide it."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NOT_TESTABLE"

    def __reduce__(self):
        return (NotTestable, ())


#: The outcome of a claim whose precondition does not hold in our setting (see :func:`requires`).
NOT_TESTABLE = NotTestable()

#: What a rule may return (reproduced, not reproduced, inconclusive, not testable).
Outcome = bool | None | NotTestable

#: Noise multiples an effect must clear (about a 95 % two-sided interval for a normal estimate).
K = 2.0

def k_for(samples: int) -> float:
    """The noise multiple for a noise estimated from only ``samples`` values (seeds, folds).

    A standard deviation measured on 5 seeds is itself uncertain: Student's t with ``samples - 1``
    degrees of freedom widens the 95 % interval from 2 to 2.78 noise. Without it, a verdict that
    clears 2 noise by a hair on one CPU falls short of it on another. Never below :data:`K`.
    """
    from scipy.stats import t

    if samples < 2:
        raise ValueError(f"a noise needs at least 2 samples, got {samples!r}; add seeds, folds or images")
    return max(K, float(t.ppf(0.975, samples - 1)))


def _noise(noise: float) -> float:
    noise = float(noise)
    if not math.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite standard deviation >= 0, got {noise!r}; measure it over seeds, "
                         "images or folds (zfkit.verdicts.standard_error, bootstrap_noise, share_noise)")
    return noise


def exceeds(value: float, threshold: float, noise: float, k: float = K) -> bool | None:
    """The claim "``value`` > ``threshold``": decided only beyond ``k`` x ``noise`` of the threshold."""
    value, threshold, noise = float(value), float(threshold), _noise(noise)
    if not (math.isfinite(value) and math.isfinite(threshold)):
        raise ValueError(f"value and threshold must be finite numbers, got {value!r} and {threshold!r}")
    if value - k * noise > threshold:
        return True
    if value + k * noise < threshold or (noise == 0 and value == threshold):
        return False
    return None


def below(value: float, threshold: float, noise: float, k: float = K) -> bool | None:
    """The claim "``value`` < ``threshold``": :func:`exceeds` mirrored."""
    return exceeds(-float(value), -float(threshold), noise, k)


def equals(measured, expected) -> bool:
    """An exact fact (a shape, a count): no noise, reproduced or not."""
    return measured == expected


def all_of(*outcomes: Outcome) -> Outcome:
    """A claim made of parts: not testable if any part is, refuted if any part is, reproduced only if every part is."""
    if any(o is NOT_TESTABLE for o in outcomes):
        return NOT_TESTABLE
    if any(o is False for o in outcomes):
        return False
    return True if all(o is True for o in outcomes) else None


def when(condition: bool, outcome: bool | None) -> bool | None:
    """``outcome`` if the test's precondition holds (a trained model, a working control), else inconclusive."""
    return outcome if condition else None


@dataclass(frozen=True)
class Decision:
    """A rule's outcome with what decided it, for the results JSON and the reader.

    ``value`` was compared with ``threshold`` (``direction`` ">" or "<") against ``k`` x ``noise``.
    ``flips_at`` is the threshold at which the outcome would change: the edge of ``value ± k·noise``
    nearest the threshold. ``needed`` (inconclusive only) is the number of ``samples`` (seeds, folds,
    images) at which the measured effect would clear its noise, assuming the noise shrinks as
    1/sqrt(samples); None when no budget can (the effect sits on the threshold). ``precondition``
    names, for a not-testable claim, what failed and the measurement that shows it.
    """

    holds: Outcome
    value: float | None = None
    threshold: float | None = None
    noise: float | None = None
    k: float | None = None
    direction: str = ">"
    samples: int | None = None
    flips_at: float | None = None
    needed: int | None = None
    precondition: str = ""


def samples_needed(gap: float, noise: float, samples: int, limit: int = 10**7) -> int | None:
    """The fewest samples at which an effect ``gap`` away from its threshold clears Student's t x noise.

    ``noise`` was measured on ``samples`` samples and shrinks as 1/sqrt(n). None if no n up to
    ``limit`` does it (a zero gap, or one far inside the noise).
    """
    gap, noise = abs(float(gap)), _noise(noise)
    if samples < 2:
        raise ValueError(f"samples must be at least 2 (the noise was measured on them), got {samples!r}")
    if gap == 0:
        return None
    if noise == 0:
        return samples
    clears = lambda n: k_for(n) * noise * math.sqrt(samples / n) < gap  # noqa: E731 - falls monotonically in n
    bound = samples * (K * noise / gap) ** 2  # K < Student's t: no n below this clears
    if bound > limit:
        return None
    low = high = max(samples, math.ceil(bound))
    while not clears(high):
        if high >= limit:
            return None
        low, high = high + 1, min(2 * high, limit)
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if clears(mid) else (mid + 1, high)
    return high


def decide(value: float, threshold: float, noise: float, *, direction: str = ">", samples: int | None = None,
           k: float | None = None) -> Decision:
    """The claim "``value`` > ``threshold``" (``direction=">"``) or "< threshold", as a :class:`Decision`.

    ``k`` defaults to Student's t for ``samples`` (:func:`k_for`), or :data:`K` when the noise comes
    from many samples (pass ``samples`` anyway: it is what ``needed`` counts).
    """
    if direction not in (">", "<"):
        raise ValueError(f"direction must be '>' or '<', got {direction!r}")
    k = float(k if k is not None else (k_for(samples) if samples else K))
    rule = exceeds if direction == ">" else below
    holds = rule(value, threshold, noise, k)
    value, threshold, noise = float(value), float(threshold), float(noise)
    edges = (value - k * noise, value + k * noise)
    flips_at = min(edges, key=lambda edge: abs(edge - threshold))
    needed = samples_needed(value - threshold, noise, samples) if holds is None and samples else None
    return Decision(holds, value, threshold, noise, k, direction, samples, flips_at, needed)


def combine(*decisions: Decision) -> Decision:
    """A claim made of parts (:func:`all_of`), reported by the part that decides it.

    Not testable: the first untestable part. Not reproduced: the first refuted part. Inconclusive:
    the undecided part needing the largest budget (all undecided parts must clear). Reproduced: the
    part closest to flipping (least margin in noise units).
    """
    if not decisions or not all(isinstance(d, Decision) for d in decisions):
        raise ValueError("combine takes one or more zfkit.verdicts.Decision (from decide or requires)")
    holds = all_of(*(d.holds for d in decisions))
    if holds is NOT_TESTABLE or holds is False:
        return next(d for d in decisions if d.holds is holds)
    if holds is None:
        undecided = [d for d in decisions if d.holds is None]
        deciding = max(undecided, key=lambda d: math.inf if d.needed is None else d.needed)
        return deciding
    margin = lambda d: math.inf if d.value is None else abs(d.value - d.threshold) / max(d.k * d.noise, 1e-300)  # noqa: E731
    return min(decisions, key=margin)


def requires(condition: bool, decision: Decision | Outcome, precondition: str) -> Decision | Outcome:
    """``decision`` when the claim's precondition holds here; else not testable, naming ``precondition``.

    ``precondition`` says what the claim needs and the measurement that shows it failed, e.g.
    "no dead filter in either net (0 and 0 over 5 seeds): the claim compares how many die".
    """
    if condition:
        return decision
    if not precondition:
        raise ValueError("a not-testable claim must name its failed precondition and the measurement that shows it")
    return Decision(NOT_TESTABLE, precondition=precondition)


def standard_error(samples: Sequence[float]) -> float:
    """Standard error of the mean of independent ``samples`` (seeds, folds, images): std / sqrt(n)."""
    x = np.asarray(samples, dtype=float)
    if x.ndim != 1 or len(x) < 2:
        raise ValueError(f"need at least 2 samples to measure noise, got {len(x.ravel())}; add seeds, folds or images")
    return float(x.std(ddof=1) / math.sqrt(len(x)))


def mean_difference_noise(a: Sequence[float], b: Sequence[float]) -> float:
    """Standard error of ``mean(a) - mean(b)`` for independent samples (Welch)."""
    return math.hypot(standard_error(a), standard_error(b))


def bootstrap_noise(samples: Sequence, statistic: Callable[[np.ndarray], float] = np.mean, draws: int = 1000,
                    seed: int = 0) -> float:
    """Standard deviation of ``statistic`` over resamples of ``samples`` (along the first axis).

    For statistics without a closed-form error (a ratio of means, a share of a sum); seeded, so the
    same samples give the same noise.
    """
    x = np.asarray(samples, dtype=float)
    if len(x) < 2:
        raise ValueError(f"need at least 2 samples to bootstrap, got {len(x)}")
    rng = np.random.default_rng(seed)
    values = [statistic(x[rng.integers(0, len(x), len(x))]) for _ in range(draws)]
    return float(np.std(values, ddof=1))


def paired_bootstrap_noise(a: Sequence[float], b: Sequence[float], draws: int = 1000, seed: int = 0) -> float:
    """Standard deviation of ``mean(a) - mean(b)`` over resamples of the *pairs* (a_i, b_i).

    For two measurements on the same cases (an ensemble and its members on the same test images):
    what the cases share cancels, so the noise is the pairs' spread, not each side's.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples must be two 1-d sequences of one length, got shapes {a.shape} and {b.shape}")
    return bootstrap_noise(a - b, np.mean, draws=draws, seed=seed)


def share_noise(cases: int, share: float = 0.5) -> float:
    """Binomial standard deviation of a share measured on ``cases`` independent cases (at ``share``)."""
    if cases < 1:
        raise ValueError(f"cases must be a positive count, got {cases!r}")
    return math.sqrt(share * (1 - share) / cases)
