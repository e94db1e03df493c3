"""Chapter 3's verdicts: Fig. 2's caption, judged on the top-9 patches of each feature map.

Both claims are judged against an untrained control (the same network, weights redrawn): a random
filter also picks out patches that resemble each other, and a unit that sees most of the image may
single out one shape of garment by size alone, so only what the trained network shows beyond the
control counts as learned. The measurements are one number per feature map
(:func:`zfkit.gallery.map_measures`); the spread over a layer's maps gives each mean its noise.
The ImageNet chapter judges the same sentences on its own networks with :func:`claims`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .. import verdicts
from ..gallery import control_contrast
from ..results import Verdict
from ..verdicts import Decision

GROUPING = "Fig. 2 (i): strong grouping within each feature map"
INVARIANCE = "Fig. 2 (ii): greater invariance at higher layers"
ENGINE = "The deconvnet engine equals autograd with relu(grad) at each ReLU (§2.1's backward path)"

#: Lowest cosine between the engine's projections and the autograd oracle's that passes the check.
ORACLE_COSINE = 0.9999

PerMap = Mapping[str, Mapping[str, Sequence[float]]]  # layer -> {"grouping": per map, "classes": per map}

__all__ = ["GROUPING", "INVARIANCE", "ENGINE", "ORACLE_COSINE", "claims", "checks"]


def _values(per_map: PerMap, layer: str, key: str, net: str) -> np.ndarray:
    if layer not in per_map or key not in per_map[layer]:
        raise ValueError(f"the {net} measurements have no {key!r} for layer {layer!r}; pass "
                         "zfkit.gallery.map_measures(...) of every judged layer")
    return np.asarray(per_map[layer][key], dtype=float)


def _short_layers(groups: Mapping[str, np.ndarray]) -> str:
    """'' when every group holds at least two maps (a noise needs two), else which do not and how many they hold."""
    short = [f"{name} has {len(values)}" for name, values in groups.items() if len(values) < 2]
    return ", ".join(short)


def _difference(trained: np.ndarray, untrained: np.ndarray) -> Decision:
    """Trained mean minus untrained mean beyond 0, with the Welch noise of two independent sets of maps."""
    return verdicts.decide(trained.mean() - untrained.mean(), 0.0, verdicts.mean_difference_noise(trained, untrained),
                           samples=min(len(trained), len(untrained)))


def _spread(parts) -> str:
    """The noise of a claim in parts: the range of the parts' noises (each shown with its layer's measurement)."""
    noises = [part.noise for part in parts if part.noise is not None]
    if not noises:
        return ""
    return (f"± {min(noises):.3f} to ± {max(noises):.3f} over the layers: standard errors over maps, trained and "
            "untrained in quadrature")


def _grouping(trained: PerMap, untrained: PerMap, layers: Sequence[str], control: str) -> Verdict:
    parts, shown = {}, []
    for layer in layers:
        t, u = _values(trained, layer, "grouping", "trained"), _values(untrained, layer, "grouping", "untrained")
        short = _short_layers({f"{layer} trained": t, f"{layer} untrained": u})
        if short:
            parts[layer] = verdicts.requires(False, None, "a noise over maps needs two active maps (nine positive "
                                             f"activations in the search set) per layer and net: {short} active")
        else:
            parts[layer] = _difference(t, u)
            shown.append(f"{layer} {parts[layer].value:+.3f} ± {parts[layer].noise:.3f} ({len(t)}/{len(u)} maps)")
    decision = verdicts.combine(*parts.values())
    decider = next(layer for layer, part in parts.items() if part is decision)
    return Verdict.decided(
        GROUPING, "grouping, trained − untrained: " + (", ".join(shown) or "no layer measurable"), decision,
        noise=_spread(parts.values()),
        note=f"grouping: within-map minus across-map cosine of the top-9 patches; control: {control}; each of "
             f"{', '.join(layers)} must show it; decided by {decider}",
        threshold_source="ours", unit="maps per layer and net",
        why="any grouping beyond the untrained control: the paper gives no size for 'strong', and the control, "
            "not zero, is the reference because random filters group similar patches too")


def _invariance(trained: PerMap, untrained: PerMap, low: str, high: str, control: str, counted: str) -> Verdict:
    groups = {f"{low} trained": _values(trained, low, "classes", "trained"),
              f"{high} trained": _values(trained, high, "classes", "trained"),
              f"{low} untrained": _values(untrained, low, "classes", "untrained"),
              f"{high} untrained": _values(untrained, high, "classes", "untrained")}
    short = _short_layers(groups)
    means = [f"{g.mean():.2f}" if len(g) else "–" for g in groups.values()]
    measured = (f"distinct {counted} in top-9, {low} → {high}: trained {means[0]} → {means[1]}, "
                f"untrained {means[2]} → {means[3]}")
    if short:
        decision = verdicts.requires(False, None, f"a noise over maps needs two active maps in each of {low} and "
                                                  f"{high}, trained and untrained: {short} active")
    else:
        drop, noise = control_contrast(*groups.values())
        decision = verdicts.decide(drop, 0.0, noise, samples=min(len(g) for g in groups.values()))
        measured += f"; trained drop minus untrained drop {drop:+.2f}"
    return Verdict.decided(
        INVARIANCE, measured, decision,
        noise="" if short else f"± {decision.noise:.2f}: the four standard errors over maps in quadrature "
                               f"({', '.join(f'{name} {len(g)}' for name, g in groups.items())} maps)",
        note=f"distinct {counted} among a map's top-9 as the countable side of invariance; control: {control}",
        threshold_source="ours", unit="maps per layer and net",
        why=f"any drop from {low} to {high} beyond the control's drop: the paper gives no size for 'greater'")


def claims(trained: PerMap, untrained: PerMap, *, low: str = "conv2", high: str = "conv5",
           layers: Sequence[str] | None = None, control: str = "the same network untrained (He init)",
           counted: str = "classes") -> list[Verdict]:
    """Fig. 2 (i) grouping and (ii) invariance, from per-map measures of the trained net and its control.

    ``trained`` and ``untrained`` map layer names to ``{"grouping": ..., "classes": ...}``, one value
    per active map (:func:`zfkit.gallery.map_measures`). (i) holds when every layer of ``layers``
    (default: those in both, in ``trained``'s order) groups beyond the control, a claim in parts
    (:func:`zfkit.verdicts.combine`); (ii) when the count of distinct ``counted`` (classes, photos)
    among a map's top-9 drops from ``low`` to ``high`` by more than it does in the control. A layer
    with fewer than two active maps has no noise: its claim is not testable.
    """
    layers = list(layers) if layers is not None else [layer for layer in trained if layer in untrained]
    if not layers:
        raise ValueError("claims needs at least one layer measured in both nets; pass layers=[...] or the "
                         "map_measures of the trained network and its untrained control")
    return [_grouping(trained, untrained, layers, control),
            _invariance(trained, untrained, low, high, control, counted)]


def checks(agreement: Mapping[str, float], *, maps: int, images: int) -> list[Verdict]:
    """Our check that the engine's projections equal the autograd oracle's (:func:`zfkit.oracle.agreement`).

    ``agreement`` holds the lowest cosine per layer over ``maps`` maps and ``images`` images. The
    comparison is deterministic: the only noise is float32 rounding.
    """
    if not agreement:
        raise ValueError("checks needs the oracle's agreement of at least one layer: {layer: lowest cosine}")
    low = min(agreement.values())
    return [Verdict.decided(
        ENGINE, f"lowest cosine over {len(agreement)} layers, {maps} maps, {images} images: {low:.6f}",
        verdicts.decide(low, ORACLE_COSINE, 0.0),
        noise="none but float32 rounding (about 1e-7 in cosine); the comparison is deterministic",
        threshold_source="ours",
        why="1e-4 is a thousand times float32 rounding, while an error of 1.4 % of a projection's norm (at "
            "right angles to it: cosine 1 − 0.014²/2) already fails")]
