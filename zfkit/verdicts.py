"""When does a measurement reproduce a claim, refute it, or leave it open?

Every chapter closes with verdicts, and a verdict is only worth reading if it could have gone the
other way and would not flip on another machine. So each rule here takes the measured effect
*and its noise* (a standard deviation measured over seeds, images, folds or reruns) and decides
only when the effect clears the noise by ``K`` standard deviations:

- ``True`` ("reproduced"): the effect lies beyond ``K`` noise in the claim's direction;
- ``False`` ("not reproduced"): it lies beyond ``K`` noise the other way;
- ``None`` ("inconclusive"): it is within ``K`` noise of the claim's threshold.

With few samples (5 seeds, 5 folds) the multiple grows to Student's t quantile (:func:`k_for`).
Every rule returns that ``bool | None``, which :class:`zfkit.results.Verdict` turns into words.

Float rounding across CPUs (another oneDNN kernel, another thread count) moves a measurement by far
less than the seed or sampling noise, so a verdict decided this way is the same on every machine.
Exact facts (shapes, parameter counts: integer arithmetic) need no noise: :func:`equals`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["K", "k_for", "exceeds", "below", "equals", "all_of", "when", "mean_difference_noise",
           "standard_error", "bootstrap_noise", "share_noise"]

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


def all_of(*outcomes: bool | None) -> bool | None:
    """A claim made of parts: refuted if any part is, reproduced only if every part is."""
    if any(o is False for o in outcomes):
        return False
    return True if all(o is True for o in outcomes) else None


def when(condition: bool, outcome: bool | None) -> bool | None:
    """``outcome`` if the test's precondition holds (a trained model, a working control), else inconclusive."""
    return outcome if condition else None


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


def share_noise(cases: int, share: float = 0.5) -> float:
    """Binomial standard deviation of a share measured on ``cases`` independent cases (at ``share``)."""
    if cases < 1:
        raise ValueError(f"cases must be a positive count, got {cases!r}")
    return math.sqrt(share * (1 - share) / cases)
