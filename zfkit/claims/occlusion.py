"""Chapter 6's verdicts: §4.2's occlusion claims (Fig. 7).

:func:`claims` judges the survey's numbers (the notebook's ``survey`` dict: the largest drops of
p(correct), the localisation excess, the IoUs with the image's own and another image's projection,
each with its noise over the surveyed images) and the share of the images' ink that lies off the
object, which decides whether "object, not context" can be asked at all.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..results import Verdict
from ..verdicts import decide, requires

__all__ = ["DROPS", "LOCALISES", "OVERLAP", "MIN_ACCURACY", "HALF", "CONTEXT", "claims"]

DROPS = "The probability of the correct class drops significantly when the object is occluded"
LOCALISES = "The model is localizing the object within the scene (not using the context)"
OVERLAP = "Covering the structure the projection shows makes the map's activity drop"

#: Test accuracy a model needs before claims about its output can be judged.
MIN_ACCURACY = 0.5
#: Share of p(correct) the worst square must remove for a "significant" drop (ours, as the paper gives no size).
HALF = 0.5
#: Share of an image's ink off the object below which there is no context to use (ours); a cut-out on
#: an empty background keeps only its faint edge there, a photo most of its ink.
CONTEXT = 0.05

_KEYS = ("n", "median_largest_drop", "median_largest_drop_noise", "images_hurt", "worst_on_object", "on_object_share",
         "localisation_excess", "localisation_se", "iou_own", "iou_other_image", "iou_chance", "difference",
         "difference_se", "context_share")


def claims(survey: Mapping[str, float], *, accuracy: float | None = None) -> list[Verdict]:
    """§4.2's three claims judged on the chapter's ``survey`` of occlusion sweeps.

    ``survey`` holds the surveyed image count ``n``, the median largest drop of p(correct) and its
    bootstrap noise, the localisation excess and its standard error over the ``images_hurt`` images
    whose p(correct) falls somewhere, the IoU difference (own projection minus another image's) and
    its standard error, and ``context_share`` (:func:`zfkit.occlusion.context_share`, averaged).
    ``accuracy`` is the model's test accuracy: below :data:`MIN_ACCURACY` the two claims about the
    output are not testable (None: a model known to be trained).
    """
    missing = [key for key in _KEYS if key not in survey]
    if missing:
        raise ValueError(f"survey lacks {', '.join(missing)}; pass the chapter's survey numbers")
    n, hurt = survey["n"], survey["images_hurt"]
    if n < 2 or hurt < 2:
        raise ValueError(f"the survey needs at least 2 images, and 2 whose p(correct) drops somewhere; got {n} and "
                         f"{hurt}: survey more images")
    if accuracy is not None and not 0 <= accuracy <= 1:
        raise ValueError(f"accuracy must be a share in [0, 1] (the model's test accuracy), got {accuracy!r}")
    trained = accuracy is None or accuracy >= MIN_ACCURACY
    untrained = "" if trained else f"a trained model (test accuracy >= {MIN_ACCURACY:.0%}): this one reaches {accuracy:.1%}"
    return [_drops(survey, trained, untrained), _localises(survey, trained, untrained), _overlap(survey)]


def _drops(s: Mapping[str, float], trained: bool, untrained: str) -> Verdict:
    median, noise, n = s["median_largest_drop"], s["median_largest_drop_noise"], s["n"]
    decision = requires(trained, decide(median, HALF, noise, samples=n), untrained)
    return Verdict.decided(
        DROPS, f"median largest drop of p(correct) {median:.0%} ± {noise:.0%} over {n} images", decision,
        noise=f"± {noise:.2g} on the median (bootstrap over {n} images)", threshold_source="ours",
        why="the paper gives no size for 'significantly'; we read it as the worst square removing at least half of "
            "p(correct) in the median image, so a confidently classified image (p near 1) falls to 0.5 or below, where "
            "another class can take over", unit="images")


def _localises(s: Mapping[str, float], trained: bool, untrained: str) -> Verdict:
    excess, se, hurt, context = s["localisation_excess"], s["localisation_se"], s["images_hurt"], s["context_share"]
    decision = decide(excess, 0.0, se, samples=hurt)
    no_context = (f"context to set the object against (ours: at least {CONTEXT:.0%} of an image's ink off the object; "
                  f"a photo has most of it there): the {s['n']} surveyed images keep {context:.2%} of their ink off the "
                  "object's silhouette on average, so a square off the object covers empty background")
    decision = requires(context >= CONTEXT, requires(trained, decision, untrained), no_context)
    return Verdict.decided(
        LOCALISES, f"most damaging square on the object in {s['worst_on_object']:.0%} of {hurt} images, where "
                   f"{s['on_object_share']:.0%} of positions lie on it: excess {excess:+.2f} ± {se:.2f}; "
                   f"{context:.2%} of the ink off the object", decision,
        noise=f"± {se:.2g} on the excess (standard error over the {hurt} images whose p(correct) drops somewhere)",
        threshold_source="ours",
        why="a square placed at random lies on the object as often as the share of positions that do; localising the "
            "object means the most damaging square lies on it more often (an excess above 0)", unit="images")


def _overlap(s: Mapping[str, float]) -> Verdict:
    diff, se, n = s["difference"], s["difference_se"], s["n"]
    return Verdict.decided(
        OVERLAP, f"IoU {s['iou_own']:.2f} with the image's own projection, {s['iou_other_image']:.2f} with another "
                 f"image's (chance {s['iou_chance']:.2f}); difference {diff:+.2f} ± {se:.2f}",
        decide(diff, 0.0, se, samples=n), noise=f"± {se:.2g} on the IoU difference (standard error over {n} images)",
        note="the validation of the deconvnet's visualizations (§4.2)", threshold_source="ours",
        why="another image's projection (our control) keeps the layout shared by centred objects, so the image's "
            "own projection must overlap the activity drop more than it does (a difference above 0)", unit="images")
