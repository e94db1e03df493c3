"""Chapter 11's verdicts: the paper's claims judged on EfficientNet-Lite0, real photos and scenes.

Each builder hands its measurements to the rule of the Fashion-MNIST chapter that judged the same
claim first (chapter 3 for Fig. 2, 5 for Fig. 5, 6 for Fig. 7, 9 for §5.2, 10 for the
randomisation test), with the same claim text, so :func:`compare_with_fashion` can set the two
settings side by side; :data:`zfkit.claims.lite0.REASONS` says, per claim, what differs between them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .. import verdicts
from ..results import Verdict
from . import deconvnet, invariance, sanity, transfer
from .deconvnet import GROUPING, INVARIANCE
from .invariance import INV_LAYERS, INV_LINEAR, INV_ROTATE, INV_STABLE, INV_SYMMETRY
from .occlusion import DROPS, LOCALISES, OVERLAP
from .sanity import SANITY_DECONV, SANITY_GRADIENT, SANITY_GUIDED
from .transfer import TRANSFER

__all__ = ["FIRST", "PENULTIMATE", "recognised", "hierarchy_claims", "occlusion_claims", "invariance_claims",
           "transfer_claim", "sanity_claims", "checks", "REASONS", "fashion_verdicts", "compare_with_fashion",
           "comparison_markdown"]

#: The analogues of the paper's layer 1 (the rectified first convolution) and layer 7 (the
#: penultimate feature vector, the 1280 pooled features the classifier reads) for Fig. 5.
FIRST, PENULTIMATE = "stem", "pool"


def recognised(hits: Sequence[bool]) -> tuple[float, float, bool | None]:
    """Our check that the model sees what the photos show: the share of photos with a correct class
    in the top 5 exceeds one half, beyond twice its binomial noise. Returns (share, noise, outcome)."""
    hits = [bool(h) for h in hits]
    if not hits:
        raise ValueError("recognised needs at least one photo")
    share, noise = sum(hits) / len(hits), verdicts.share_noise(len(hits))
    return share, noise, verdicts.exceeds(share, 0.5, noise)


def hierarchy_claims(trained: Mapping, control: Mapping, low: str, high: str) -> list[Verdict]:
    """Fig. 2's caption judged by chapter 3's rules (:func:`zfkit.claims.deconvnet.claims`), from
    :func:`zfkit.imagenet.map_measures` of the trained network and of its untrained control; photos are counted."""
    return deconvnet.claims(trained, control, low=low, high=high, control="Lite0 untrained", counted="photos")


def occlusion_claims(object_losses: Sequence[float], contrast: tuple[float, float, int, bool | None],
                     overlap: Sequence[float], draws: int = 1000, unit: str = "scenes") -> list[Verdict]:
    """§4.2's claims on real objects in real scenes (:mod:`zfkit.object_occlusion`):

    - the median share of p(correct) lost with the object covered (its exact outline in grey)
      removes at least half of it (as in chapter 6; bootstrap noise over the images);
    - covering the object costs more than covering the same area of background
      (:func:`zfkit.object_occlusion.object_contrast`'s mean, standard error and count);
    - the activity-drop region of a square sweep overlaps the map's own projection more than another
      image's (``overlap``: one IoU difference per swept image).
    """
    drops = np.asarray(object_losses, dtype=float)
    overlap = np.asarray(overlap, dtype=float)
    n, mean, se, paired = len(drops), *contrast[:3]
    median, median_noise = float(np.median(drops)), verdicts.bootstrap_noise(drops, np.median, draws=draws)
    o_mean, o_se = float(overlap.mean()), verdicts.standard_error(overlap)
    return [
        Verdict.decided(DROPS, f"median share of p(correct) lost with the object covered: {median:.0%} ± "
                               f"{median_noise:.0%} over {n} {unit}",
                        verdicts.decide(median, 0.5, median_noise, samples=n), unit=unit, threshold_source="ours",
                        noise=f"bootstrap of the median over {n} {unit} ({draws} resamples); ± {median_noise:.3g}",
                        why="half of p(correct) lost: our reading of 'drops significantly' (the paper gives no "
                            "number), as in chapter 6"),
        Verdict.decided(LOCALISES, f"p(correct) lost covering the object minus covering the same area of background: "
                                   f"{mean:+.0%} ± {se:.0%} over {paired} {unit}",
                        verdicts.decide(mean, 0, se, samples=paired), unit=unit, threshold_source="ours",
                        noise=f"standard error of the paired difference over {paired} {unit}; ± {se:.3g}",
                        why="any more lost on the object than on the background (the paper gives no size)",
                        note="the same grey shape moved onto the background is the reference: hiding part of a "
                             "picture may hurt anywhere"),
        Verdict.decided(OVERLAP, f"IoU with the image's own projection minus another image's: {o_mean:+.2f} ± {o_se:.2f}",
                        verdicts.decide(o_mean, 0, o_se, samples=len(overlap)), unit=unit,
                        threshold_source="ours", noise=f"standard error over {len(overlap)} {unit}; ± {o_se:.3g}",
                        why="any larger overlap with the own projection than with another image's (the paper gives "
                            "no size)", note="the validation of the deconvnet's visualizations (§4.2)"),
    ]


def invariance_claims(measured: Mapping[str, tuple[float, float]], images: int, unit: str = "scenes") -> list[Verdict]:
    """Fig. 5's reading judged by chapter 5's rules (:func:`zfkit.claims.invariance.claims`) on
    :func:`zfkit.invariance.claim_measurements` (plus ``spearman``), Student's t for ``images``."""
    return invariance.claims(measured, images, layers=(FIRST, PENULTIMATE), unit=unit)


def transfer_claim(margins: Sequence[float], shots: Sequence[int], layer: str, margin: float = 10.0) -> Verdict:
    """§5.2 judged by chapter 9's rule (:func:`zfkit.claims.transfer.margin_verdict`): Lite0's frozen
    ``layer`` + softmax minus ZFNet-mini from scratch, per fold (:func:`zfkit.probes.fold_margins`)."""
    return transfer.margin_verdict(margins, shots, features=f"Lite0 {layer}", threshold=margin,
                                   detail=" against ZFNet-mini trained from scratch")


def sanity_claims(sweep, top: str, what: str = "scenes") -> list[Verdict]:
    """Chapter 10's randomisation claims (:func:`zfkit.claims.sanity.claims`) on a
    :func:`zfkit.sanity.sweep` of class logits, ``top`` its first step (the classifier re-initialised)."""
    return sanity.claims(sweep, top, what=what)


def _sees(what: str, top1: Sequence[bool], top5: Sequence[bool]) -> Verdict:
    share, noise, sees = recognised(top5)
    n = len(top5)
    return Verdict(f"The model sees what the {what} show: a correct class in the top 5 for most {what}",
                   f"{share:.0%} of {n} {what} (top 1: {sum(map(bool, top1))} of {n})", sees,
                   "share above one half, beyond twice its noise", noise=f"binomial ± {noise:.0%} over {n} {what}")


def checks(predicted: Sequence[dict], engine: Mapping[str, float], scenes=None) -> list[Verdict]:
    """The chapter's own checks: the model recognises the photos (:func:`recognised` on :func:`zfkit.imagenet.top5`'s
    rows) and, given their :class:`zfkit.imagenet.Recognition`, the objects in their ``scenes``; the
    deconvnet engine equals the autograd oracle (``engine``: lowest cosine per layer,
    :func:`zfkit.oracle.agreement`). Show them with :func:`zfkit.results.check_table`."""
    if not predicted or not engine:
        raise ValueError("checks needs top5's rows and at least one oracle cosine (layer -> lowest cosine)")
    low = min(engine.values())
    seen = [_sees("photos", [r["top1"] for r in predicted], [r["top5"] for r in predicted])]
    if scenes is not None:
        seen.append(_sees("scenes", scenes.top1.tolist(), scenes.top5.tolist()))
    return [
        *seen,
        Verdict("The deconvnet engine equals autograd with relu(grad) at each ReLU6 on Lite0",
                f"lowest cosine over {', '.join(engine)}, 2 maps, 1 photo: {low:.6f}", verdicts.exceeds(low, 0.9999, 0),
                "threshold 0.9999", noise="float rounding, about 1e-7"),
    ]


#: Per claim, what differs between the two settings that bears on it; read beside a verdict that changed.
REASONS = {
    GROUPING: "colour: an untrained Lite0's random filters pick crops of one colour, which a cosine over raw pixels "
              "rewards, while trained low stages answer edges of any colour; Fashion-MNIST is grey. Its top-9 are "
              "different garments, here overlapping views of 8 photos",
    INVARIANCE: "the labels are 8 photos here, 10 garment classes there; Lite0's upper fields cover the whole crop, "
                "ZFNet-mini's conv5 a part of the garment",
    DROPS: "here the object's exact outline is covered, there a square a sixteenth of the garment's image; objects "
           "on real backgrounds against garments on black",
    LOCALISES: "the scenes have real context around the object (its exact mask), the garments lie alone on black; here "
               "the test compares covering the object with covering the same area of background, there where the "
               "worst square lies",
    OVERLAP: "Lite0 has no max-pooling, so its deconvnet projection depends on where the unit is and not on the image; "
             "the overlap then measures where the strongest unit lies",
    INV_LAYERS: "global average pooling: Lite0's pooled features move less than its stem's under a small shift, trained "
                "or not; ZFNet-mini's fc7 reads the layout of its last maps",
    INV_LINEAR: "Lite0 averages its last maps over space (global pooling), ZFNet-mini's fc7 reads their layout",
    INV_STABLE: "Lite0 was trained on ImageNet with random crops and scales, the book's ZFNet-mini without shifts; "
                "objects on real backgrounds against garments on black",
    INV_ROTATE: "neither training rotates its images; Lite0's objects sit on backgrounds that rotate with them",
    INV_SYMMETRY: "symmetry is measured on each object's exact outline here, on a garment class's mean image there",
    TRANSFER: "the source: 1.2 M ImageNet photos against 55,000 garments; the target: 8x8 digit strokes blown up to "
              "224 px are far from ImageNet photos; the scratch network is the same ZFNet-mini in both chapters",
    SANITY_GUIDED: "Lite0's classifier is one linear layer over pooled features, ZFNet-mini's three",
    SANITY_GRADIENT: "the same rule on recognised scenes instead of garments",
    SANITY_DECONV: "without max-pooling switches the deconvnet never reads the image: its picture of a logit is one "
                   "pattern for every image, which a new classifier reshapes little; ZFNet-mini's switches and three "
                   "fully connected layers carry the weights' changes into the picture",
}


def fashion_verdicts(folder: str | Path, skip: Sequence[str] = ("11_imagenet",)) -> dict[str, tuple[str, str]]:
    """Every claim of the committed Fashion-MNIST chapters' results: claim -> (chapter, verdict)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no results folder at {folder}; run the book first (make book)")
    found = {}
    for path in sorted(folder.glob("*.json")):
        if path.stem in skip:
            continue
        for row in json.loads(path.read_text(encoding="utf8")).get("verdicts", []):
            found.setdefault(row["claim"], (path.stem, row["verdict"]))
    return found


def compare_with_fashion(claims, fashion: Mapping[str, tuple[str, str]]) -> list[dict]:
    """One row per claim of ``claims`` (a verdict table) that a Fashion-MNIST chapter also judged:
    both verdicts, whether it changed, and :data:`zfkit.claims.lite0.REASONS`' note on what differs between the settings."""
    rows = []
    for record in claims.records():
        if record["claim"] in fashion:
            chapter, before = fashion[record["claim"]]
            rows.append({"claim": record["claim"], "chapter": chapter, "fashion": before, "imagenet": record["verdict"],
                         "changed": before != record["verdict"], "differs": REASONS.get(record["claim"], "")})
    return rows


def comparison_markdown(rows: Sequence[dict]) -> str:
    """:func:`compare_with_fashion`'s rows as a Markdown table."""
    cell = lambda text: str(text).replace("|", "\\|")  # noqa: E731
    lines = ["| Claim | Fashion-MNIST, ZFNet-mini (chapter) | ImageNet photos, Lite0 | Changed | What differs |",
             "|---|---|---|---|---|"]
    lines += [f"| {cell(r['claim'])} | {r['fashion']} ({r['chapter']}) | {r['imagenet']} | "
              f"{'**yes**' if r['changed'] else 'no'} | {cell(r['differs'])} |" for r in rows]
    return "\n".join(lines)
