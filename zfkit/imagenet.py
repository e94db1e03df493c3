"""Chapter 11: the paper's analyses on a real ImageNet classifier (EfficientNet-Lite0) and real photos.

Chapters 3-10 run on ZFNet-mini and 32-pixel Fashion-MNIST, where several of the paper's claims
have no room to show (no context around a centred garment, no colour, no 224-pixel scale). This
module holds what chapter 11 needs beyond the engines it shares with them:

- the profile sizes of the chapter (``SIZES``), sized for 2 CPU cores;
- the data: the photos' top-5 predictions (:func:`top5`), a deterministic multi-scale crop set
  of the photos as a top-9 search set (:func:`crops`), grey datasets made into Lite0 inputs
  (:func:`to_lite0`) and an untrained control network (:func:`untrained`);
- measurements that need a real image size: per-map grouping on receptive fields larger than the
  image (:func:`map_measures`), occlusion of the object against the background with the photos'
  boxes (:func:`background_drop`), Lite0's layers renamed for :func:`zfkit.invariance.claim_measurements`
  (:func:`paper_layers`), randomisation by stage (:func:`weight_groups`, :func:`grouped_cascade`);
- the verdicts: one builder per section returns :class:`zfkit.results.Verdict` rows from the
  measurements, with the same claim texts as the Fashion-MNIST chapters where the claim is the
  same, so :func:`compare_with_fashion` can set the two side by side.

Every number a verdict reads comes with its noise over the photos (or maps, or folds); since the
photos are few, their noise multiple is Student's t for their number (:func:`zfkit.verdicts.k_for`).
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import verdicts
from .data import PHOTOS_JSON, Photos, TensorImages
from .efficientnet import MEAN, STD, EfficientNetLite0, unnormalize
from .claims.deconvnet import GROUPING, INVARIANCE
from .claims.invariance import INV_LAYERS, INV_LINEAR, INV_ROTATE, INV_STABLE, INV_SYMMETRY
from .claims.occlusion import DROPS, LOCALISES, OVERLAP
from .claims.sanity import SANITY_DECONV, SANITY_GRADIENT, SANITY_GUIDED
from .claims.transfer import TRANSFER
from .results import Verdict

__all__ = ["Sizes", "SIZES", "sizes", "LAYERS", "FIRST", "PENULTIMATE", "OCCLUSION_LAYER", "LiteImages", "untrained",
           "top5", "top5_markdown", "draw_photos", "recognised", "crop_boxes", "crops", "to_lite0",
           "strongest_units", "outside_field", "contrast", "draw_stage_projections", "unit_patch", "on_image",
           "fit_to_image", "map_measures",
           "hierarchy_claims", "box_mask", "background_drop", "object_contrast", "compact_classes", "occlusion_claims",
           "paper_layers", "invariance_claims", "transfer_claim", "weight_groups", "grouped_cascade", "sanity_claims", "checks",
           "fashion_verdicts", "compare_with_fashion", "comparison_markdown", "REASONS"]

#: The stages whose single units the chapter projects, as Fig. 2 does (the linear outputs of the inverted-residual stages:
#: unbounded, so the strongest unit is never a tie at ReLU6's ceiling).
LAYERS = ("stage2", "stage3", "stage4", "stage5", "stage6", "stage7")
#: The analogues of the paper's layer 1 (the rectified first convolution) and layer 7 (the
#: penultimate feature vector, the 1280 pooled features the classifier reads) for Fig. 5.
FIRST, PENULTIMATE = "stem", "pool"
#: The late feature map of Fig. 7 (the paper's layer 5), the last stage with 320 maps of 7x7.
OCCLUSION_LAYER = "stage7"


# ---------------------------------------------------------------- profile sizes

@dataclass(frozen=True)
class Sizes:
    """How much of each analysis a profile runs (Lite0 does ~10-40 images/s at 224 on 2 CPU cores)."""

    crops: int  # the top-9 search set (both networks scan it)
    crop_scales: tuple[float, float]  # smallest and largest crop side, as a share of the photo's frame
    unit_photos: int  # photos in the figure of projections of single units (the strongest per stage)
    unit_layers: tuple[str, ...]  # its stages
    panel_layers: tuple[str, ...]  # stages with Fig. 2 panels
    panel_maps: int  # feature maps per stage in those panels
    occlusion_photos: int  # at most this many of the photos the model recognises
    occlusion_figures: int  # of them drawn as Fig. 7 rows
    patch: int  # occluder side (pixels of the 224 frame)
    stride: int
    translate: tuple[float, ...]
    scale: tuple[float, ...]
    rotate: tuple[float, ...]
    invariance_photos: int
    digits_per_class: int  # digits kept for §5.2 (features at 224 are the cost)
    shots: tuple[int, ...]
    folds: int  # book 6: at 4 the §5.2 margin was inconclusive (needed 5); a fold costs < 1 min on 2 cores
    test_per_class: int
    sanity_photos: int
    scratch_steps: int  # SGD steps of the scratch baseline (chapter 9's recipe: 30)
    sanity_steps: int  # stage groups randomised, from the top (all of them: len(weight_groups))
    oracle_layers: tuple[str, ...]
    draws: int  # bootstrap resamples of the photos


SIZES = {
    # proves the code paths in seconds; the numbers mean little
    "ci": Sizes(crops=96, crop_scales=(0.3, 1.0), unit_photos=3, unit_layers=("stage3", "stage7"),
                panel_layers=("stage3",), panel_maps=1, occlusion_photos=3, occlusion_figures=1, patch=112, stride=56,
                translate=(-28.0, -14.0, 0.0, 14.0, 28.0), scale=(1 / 1.2, 1.0, 1.1, 1.2), rotate=(0.0, 90.0, 180.0),
                invariance_photos=3, digits_per_class=7, shots=(1, 3), folds=2, test_per_class=3, scratch_steps=10,
                sanity_photos=2, sanity_steps=1, oracle_layers=("stage3",), draws=200),
    "book": Sizes(crops=2048, crop_scales=(0.25, 1.0), unit_photos=8, unit_layers=LAYERS,
                  panel_layers=("stage2", "stage4", "stage6"), panel_maps=2, occlusion_photos=8, occlusion_figures=3,
                  patch=56, stride=24, translate=(-56.0, -42.0, -28.0, -14.0, -7.0, 0.0, 7.0, 14.0, 28.0, 42.0, 56.0),
                  scale=(1 / 1.4, 1 / 1.3, 1 / 1.2, 1 / 1.1, 1.0, 1.1, 1.2, 1.3, 1.4),
                  rotate=tuple(float(a) for a in range(0, 361, 30)), invariance_photos=8, digits_per_class=55,
                  shots=(1, 2, 5, 10, 20, 30), folds=6, test_per_class=25, scratch_steps=30, sanity_photos=8,
                  sanity_steps=10, oracle_layers=("stage3", "stage6"), draws=1000),
}


def sizes(profile: str) -> Sizes:
    """The chapter's sizes for ``profile`` (``paper`` runs the ``book`` sizes: the photos are the data either way)."""
    if profile not in (*SIZES, "paper"):
        raise ValueError(f"unknown profile {profile!r}; choose one of ci, book, paper")
    return SIZES.get(profile, SIZES["book"])


# ---------------------------------------------------------------- data

@dataclass
class LiteImages(TensorImages):
    """Images normalised for EfficientNet-Lite0 (``display`` undoes it), with optional crop ``boxes``.

    ``boxes`` (N, 5), for crops: source photo, top, left, side (in the photo's 224 frame), flipped.
    """

    boxes: torch.Tensor | None = None

    def display(self, images: torch.Tensor | None = None) -> torch.Tensor:
        return unnormalize(self.images if images is None else images)

    def subset(self, indices) -> "LiteImages":
        idx = torch.as_tensor(indices, dtype=torch.long)
        return LiteImages(self.images[idx], self.targets[idx], self.classes,
                          boxes=None if self.boxes is None else self.boxes[idx])


def untrained(seed: int = 0) -> EfficientNetLite0:
    """EfficientNet-Lite0 as initialised before training (torchvision's scheme), seeded, in eval mode.

    The control for every claim about what *learning* does: same architecture, no ImageNet.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return EfficientNetLite0().eval()


def _normalise(pixels: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(MEAN, dtype=pixels.dtype).view(3, 1, 1)
    std = torch.tensor(STD, dtype=pixels.dtype).view(3, 1, 1)
    return (pixels - mean) / std


def top5(model: nn.Module, photos: Photos, k: int = 5) -> list[dict]:
    """Per photo: its top-``k`` classes with probabilities, which of them count as correct, hits, and
    ``target``: the correct class the model finds most probable (the class Fig. 5 and 7 follow).

    Answers the chapter's first question, whether the model sees what the photos show, before any
    analysis reads its features.
    """
    with torch.no_grad():
        probs = model(photos.images).softmax(1)
    values, indices = probs.topk(k, dim=1)
    rows = []
    for n, (name, p, idx, correct) in enumerate(zip(photos.names, values, indices, photos.correct)):
        hits = [int(i) in correct for i in idx]
        rows.append({"photo": name, "classes": [photos.classes[int(i)] for i in idx], "probs": p.tolist(),
                     "correct": hits, "top1": hits[0], "top5": any(hits),
                     "p_correct": float(probs[n, list(correct)].sum()),
                     "target": max(correct, key=lambda c: float(probs[n, c]))})
    return rows


def top5_markdown(rows: Sequence[dict]) -> str:
    """:func:`top5`'s rows as a Markdown table, correct classes in bold."""
    lines = ["| Photo | Top 5 (probability; **correct**) | Top 1 | Top 5 |", "|---|---|---|---|"]
    for r in rows:
        ranked = ", ".join(f"**{c}** {p:.2f}" if hit else f"{c} {p:.2f}"
                           for c, p, hit in zip(r["classes"], r["probs"], r["correct"]))
        lines.append(f"| {r['photo']} | {ranked} | {'yes' if r['top1'] else 'no'} | {'yes' if r['top5'] else 'no'} |")
    return "\n".join(lines)


def draw_photos(photos: Photos, rows: Sequence[dict] | None = None, size: float = 1.9):
    """The photos in a row with their object boxes (yellow) and, given :func:`top5` rows, the top class."""
    from .viz import draw_box, image_grid

    titles = list(photos.names) if rows is None else [f"{r['photo']}\n→ {r['classes'][0]}" for r in rows]
    fig = image_grid(photos.display(), ncols=len(photos), titles=titles, size=size)
    for ax, (x0, y0, x1, y1) in zip(fig.axes, photos.boxes.tolist()):
        draw_box(ax, (y0, x0, y1, x1), linewidth=1.5)
    return fig


def recognised(hits: Sequence[bool]) -> tuple[float, float, bool | None]:
    """Our check that the model sees what the photos show: the share of photos with a correct class
    in the top 5 exceeds one half, beyond twice its binomial noise. Returns (share, noise, outcome)."""
    hits = [bool(h) for h in hits]
    if not hits:
        raise ValueError("recognised needs at least one photo")
    share, noise = sum(hits) / len(hits), verdicts.share_noise(len(hits))
    return share, noise, verdicts.exceeds(share, 0.5, noise)


def _original(entry: dict) -> torch.Tensor:
    """A photo of ``zfkit/photos.json`` at its full resolution, (3, H, W) in [0, 1]."""
    from PIL import Image

    spec = importlib.util.find_spec(entry["package"])
    if spec is None:
        raise FileNotFoundError(f"photo {entry['name']!r} comes with {entry['package']!r}; pip install {entry['pip']}")
    path = Path(next(iter(spec.submodule_search_locations)), entry["file"])
    with Image.open(path) as im:
        return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).float() / 255


def crop_boxes(count: int, photos: int, scales: tuple[float, float] = (0.25, 1.0), seed: int = 0,
               size: int = 224) -> torch.Tensor:
    """``count`` square crops spread evenly over ``photos`` photos: (count, 5) long rows of
    photo, top, left, side, flipped, in the photo's ``size`` frame.

    Each photo's first crop is its whole frame; the others have a side drawn log-uniformly between
    ``scales`` (shares of the frame), a uniform position and a coin-flip mirror, from a generator
    seeded by ``seed`` only: the same search set on every run and machine.
    """
    low, high = scales
    if not (0 < low <= high <= 1):
        raise ValueError(f"scales must be shares 0 < low <= high <= 1 of the frame, got {scales!r}")
    if not isinstance(count, int) or not isinstance(photos, int) or photos < 1 or count < photos:
        raise ValueError(f"count must be an int >= photos ({photos}), got {count!r}")
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(count):
        photo, k = i % photos, i // photos
        if k == 0:
            rows.append((photo, 0, 0, size, 0))
            continue
        u = torch.rand(4, generator=g, dtype=torch.float64).tolist()
        side = max(8, round(size * math.exp(math.log(low) + u[0] * (math.log(high) - math.log(low)))))
        rows.append((photo, int(u[1] * (size - side + 1)), int(u[2] * (size - side + 1)), side, int(u[3] < 0.5)))
    return torch.tensor(rows, dtype=torch.long)


def crops(photos: Photos, count: int, scales: tuple[float, float] = (0.25, 1.0), seed: int = 0,
          size: int = 224) -> LiteImages:
    """The top-9 search set: ``count`` multi-scale crops of the photos, each resized to the model input.

    The paper searched 50,000 validation images; eight photos are all we have, so the search set
    is many views of them (:func:`crop_boxes`), cut from the original files at full resolution (not
    from the 224 frame, which would blur small crops) and resized with antialiasing. The label of a
    crop is its photo (``classes`` are the photo names): "how many photos are among a map's
    top-9" is then the countable side of Fig. 2's invariance, as classes were in chapter 3.
    """
    from torchvision.transforms.v2 import functional as TF

    entries = {e["name"]: e for e in json.loads(PHOTOS_JSON.read_text(encoding="utf8"))["photos"]}
    originals = [_original(entries[name]) for name in photos.names]
    boxes = crop_boxes(count, len(originals), scales, seed, size)
    out = torch.empty(count, 3, size, size)
    for i, (photo, top, left, side, flip) in enumerate(boxes.tolist()):
        raw = originals[photo]
        h, w = raw.shape[-2:]
        f = min(h, w) / size  # the 224 frame is the centred square, shorter side resized to 224
        y0, x0 = (h - size * f) / 2 + top * f, (w - size * f) / 2 + left * f
        crop = TF.resized_crop(raw, round(y0), round(x0), round(side * f), round(side * f), [size, size], antialias=True)
        out[i] = _normalise((crop.flip(-1) if flip else crop).clamp(0, 1))
    return LiteImages(out, boxes[:, 0].clone(), tuple(photos.names), boxes=boxes)


def to_lite0(dataset: TensorImages, size: int = 224) -> LiteImages:
    """A grey dataset (e.g. :func:`zfkit.data.digits`) as Lite0 inputs: display pixels resized to
    ``size``, copied to three channels, normalised as :func:`zfkit.efficientnet.preprocess` does.

    §5.2 feeds a new small dataset to the ImageNet network's frozen layers; the network takes
    224x224 colour images, so the digits are made into those, nothing else changed.
    """
    pixels = dataset.display(dataset.images)
    if pixels.dim() != 4 or pixels.shape[1] not in (1, 3):
        raise ValueError(f"to_lite0 takes a batch of grey or RGB images (N, 1|3, H, W), got {tuple(pixels.shape)}")
    pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return LiteImages(_normalise(pixels.expand(-1, 3, -1, -1).clamp(0, 1)), dataset.targets.clone(), dataset.classes)


# ---------------------------------------------------------------- single units projected, Fig. 2's patches, hierarchy

def strongest_units(model: nn.Module, images: torch.Tensor, layer: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image, the feature map of ``layer`` with the strongest single activation and where it
    lies: (channels, ys, xs), each (N,). The unit the chapter projects per photo and stage (as the left
    halves of Fig. 2 project single strong activations), the one the deconvnet's mode "max" projects."""
    from .topk import layer_activations

    acts = layer_activations(model, images, layer)
    best, where = acts.flatten(2).max(2)  # (N, C): each map's maximum and its position
    channels = best.argmax(1)
    at = where.gather(1, channels[:, None])[:, 0]
    return channels, at // acts.shape[-1], at % acts.shape[-1]


def outside_field(projection: torch.Tensor, field, y: int, x: int) -> float:
    """The share of a (C, H, W) projection's magnitude outside unit (y, x)'s receptive field: 0 for
    an exact deconvnet, whose signal cannot leave the pixels the unit sees."""
    top, left, bottom, right = field.box(int(y), int(x))
    magnitude = projection.abs().sum(0)
    outside = torch.ones_like(magnitude, dtype=torch.bool)
    outside[max(top, 0):max(bottom, 0), max(left, 0):max(right, 0)] = False
    total = magnitude.sum()
    return float(magnitude[outside].sum() / total) if total > 0 else 0.0


def contrast(projections: torch.Tensor, quantile: float = 0.99) -> torch.Tensor:
    """Projections (..., C, H, W) scaled for display: each divided by the ``quantile`` of its non-zero
    magnitudes and clipped to [-1, 1], so 0 stays mid-grey.

    Through Lite0's many small-kernel layers a projection's energy piles up on a few central pixels;
    scaled by its extremes (min to max) the rest of it would be invisible.
    """
    flat = projections.flatten(-3)
    out = torch.zeros_like(flat)
    for i, row in enumerate(flat.reshape(-1, flat.shape[-1])):
        magnitude = row.abs()[row != 0]
        if len(magnitude):
            out.view(-1, flat.shape[-1])[i] = (row / torch.quantile(magnitude.double(), quantile).float()).clamp(-1, 1)
    return out.view(projections.shape)


def draw_stage_projections(images: torch.Tensor, projections: Mapping[str, torch.Tensor],
                           units: Mapping[str, torch.Tensor] | None = None, names: Sequence[str] | None = None,
                           size: float = 1.25, title: str | None = None):
    """Projections of single units, Fig. 2-style, one row per photo: the photo (display pixels,
    (N, 3, H, W)), then per stage the projection (N, 3, H, W) of its strongest unit, scaled by
    :func:`contrast` (grey is 0)."""
    from .viz import new_figure, show_image

    layers = list(projections)
    fig, axes = new_figure(len(images), len(layers) + 1, figsize=(size * (len(layers) + 1), size * len(images) + 0.4),
                           squeeze=False)
    for i, image in enumerate(images):
        show_image(axes[i, 0], image)
        if names is not None:
            axes[i, 0].set_ylabel(names[i], fontsize=7)
        for j, layer in enumerate(layers):
            show_image(axes[i, j + 1], (contrast(projections[layer][i]) + 1) / 2, normalize=False)
            if units is not None:
                axes[i, j + 1].set_xlabel(f"map {int(units[layer][i])}", fontsize=6, labelpad=1)
            if i == 0:
                axes[i, j + 1].set_title(layer, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def unit_patch(image: torch.Tensor, field, y: int, x: int, size: int = 48) -> torch.Tensor:
    """What unit (y, x) sees of ``image`` (C, H, W), at most ``size`` pixels square.

    The receptive field of Lite0's upper stages (339 px at stage5, ~1,000 at stage6) exceeds the
    224 image: such a unit sees the whole image, so the patch is the image; a smaller field is cut
    as in Fig. 2 (grey outside the image). Patches are shrunk to ``size`` so that grouping over
    hundreds of maps stays within memory (a 979-px field would need 100 MB per map).
    """
    side = min(image.shape[-2:])
    patch = image if field.size >= side else field.patch(image, int(y), int(x))
    if patch.shape[-1] > size:
        patch = F.interpolate(patch[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    return patch


def on_image(tiles: torch.Tensor, boxes: Sequence[tuple[int, int, int, int]], side: int) -> torch.Tensor:
    """Receptive-field tiles (K, C, s, s), each placed back on its ``side`` x ``side`` image frame by
    its box (top, left, bottom, right): the part over the image kept, the rest dropped."""
    out = tiles.new_zeros(len(tiles), tiles.shape[1], side, side)
    for k, (tile, (top, left, _, _)) in enumerate(zip(tiles, boxes)):
        r0, c0 = max(top, 0), max(left, 0)
        r1, c1 = min(top + tile.shape[-2], side), min(left + tile.shape[-1], side)
        if r0 < r1 and c0 < c1:
            out[k, :, r0:r1, c0:c1] = tile[:, r0 - top:r1 - top, c0 - left:c1 - left]
    return out


def fit_to_image(panels: Sequence, scan, field, side: int = 224) -> list:
    """Fig. 2 panels of a layer whose receptive field is wider than the image, cut back to the image.

    Above ``stage4`` a Lite0 unit's field (339 to 851 px) holds the 224-px crop in a wide grey frame,
    where the crop would be drawn small; :func:`on_image` puts patches and projections back on the
    image frame. Panels of smaller fields come back unchanged.
    """
    if field.size <= side:
        return list(panels)
    fitted = []
    for panel in panels:
        boxes = [field.box(int(y), int(x)) for y, x in zip(scan.ys[panel.channel, :len(panel.indices)],
                                                             scan.xs[panel.channel, :len(panel.indices)])]
        fitted.append(replace(panel, patches=on_image(panel.patches, boxes, side),
                              projections=None if panel.projections is None else on_image(panel.projections, boxes, side)))
    return fitted


def map_measures(model: nn.Module, dataset: TensorImages, scans: Mapping, k: int = 9,
                 size: int = 48) -> dict[str, dict[str, np.ndarray]]:
    """:func:`zfkit.gallery.map_measures` on :func:`unit_patch`'s patches, so that receptive fields
    larger than the image work (and hundreds of maps stay within memory)."""
    from .gallery import map_measures as measures

    return measures(model, dataset, scans, k, patch=lambda image, field, y, x: unit_patch(image, field, y, x, size))


def hierarchy_claims(trained: Mapping, control: Mapping, low: str, high: str) -> list[Verdict]:
    """Fig. 2's caption judged by chapter 3's rules (:func:`zfkit.claims.deconvnet.claims`), from
    :func:`map_measures` of the trained network and of its untrained control; photos are counted."""
    from .claims import deconvnet

    return deconvnet.claims(trained, control, low=low, high=high, control="Lite0 untrained", counted="photos")


# ---------------------------------------------------------------- Fig. 7: occlusion against the boxes

def box_mask(box: Sequence[int], size: int | tuple[int, int] = 224) -> torch.Tensor:
    """The (H, W) boolean mask of an [x0, y0, x1, y1] box (end exclusive), as ``photos.boxes`` gives it."""
    h, w = (size, size) if isinstance(size, int) else size
    x0, y0, x1, y1 = (int(v) for v in box)
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise ValueError(f"box {list(box)} must lie inside the {h}x{w} image with x0 < x1, y0 < y1")
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


def background_drop(result, mask: torch.Tensor) -> tuple[float, float] | None:
    """p(correct)'s mean loss, as a share of the unoccluded p, with the occluder centred on the object
    (its centre pixel inside ``mask``) and with it centred on the background (outside ``mask``).

    The paper's "p(correct) drops when the object is covered" needs a reference: covering a fifth
    of a 224 photo may hurt anywhere. The background is that reference. The occluder's centre, not
    its overlap, decides the side, so that a thin object (the rocket, 24 px wide under a 56 px
    square) counts as covered when the square sits on it. None when either side has no position
    (a box filling the frame leaves no background).
    """
    centre = result.patch // 2
    on_object = mask[(result.ys + centre)[:, None], (result.xs + centre)[None, :]]
    if bool(on_object.all()) or not bool(on_object.any()):
        return None
    base = result.base_prob
    loss = 1 - result.prob.double() / base if base > 0 else torch.zeros_like(result.prob, dtype=torch.float64)
    return float(loss[on_object].mean()), float(loss[~on_object].mean())


def object_contrast(drops: Sequence[tuple[float, float] | None]) -> tuple[float, float, int, bool | None]:
    """Over the photos with both kinds of position: mean (loss on object − loss on background), its
    standard error, the number of photos, and the verdict "covering the object costs more": beyond
    Student's t for that number of photos times the standard error."""
    diffs = [a - b for a, b in (d for d in drops if d is not None)]
    if len(diffs) < 2:
        raise ValueError(f"object_contrast needs at least 2 photos with object and background positions, got {len(diffs)}")
    mean, se = float(np.mean(diffs)), verdicts.standard_error(diffs)
    return mean, se, len(diffs), verdicts.exceeds(mean, 0, se, verdicts.k_for(len(diffs)))


def compact_classes(result, classes: Sequence[str]):
    """``result`` with its most-probable-class map renumbered 0..m-1 over the classes present (the
    target first), and those m names: Fig. 7 (e)'s legend colours ten classes, not ImageNet's 1000."""
    present = [result.target] + sorted(set(result.top_class.flatten().tolist()) - {result.target})
    lookup = {c: i for i, c in enumerate(present)}
    top = result.top_class.clone().apply_(lambda c: lookup[c])
    return replace(result, top_class=top, target=0), [classes[c] for c in present]


def occlusion_claims(largest_drops: Sequence[float], contrast: tuple[float, float, int, bool | None],
                     overlap: Sequence[float], draws: int = 1000) -> list[Verdict]:
    """§4.2's claims on the photos: the median largest drop of p(correct) removes at least half of it
    (as in chapter 6, bootstrap noise); covering the object costs more than covering the background
    (:func:`object_contrast`'s mean, standard error and photos); the activity-drop region overlaps
    the map's own projection more than another photo's (``overlap``: one IoU difference per photo)."""
    drops = np.asarray(largest_drops, dtype=float)
    overlap = np.asarray(overlap, dtype=float)
    n, mean, se, photos = len(drops), *contrast[:3]
    median, median_noise = float(np.median(drops)), verdicts.bootstrap_noise(drops, np.median, draws=draws)
    o_mean, o_se = float(overlap.mean()), verdicts.standard_error(overlap)
    return [
        Verdict.decided(DROPS, f"median largest drop of p(correct) {median:.0%} ± {median_noise:.0%} over {n} photos",
                        verdicts.decide(median, 0.5, median_noise, samples=n), unit="photos", threshold_source="ours",
                        noise=f"bootstrap of the median over {n} photos ({draws} resamples); ± {median_noise:.3g}",
                        why="half of p(correct) lost: our reading of 'drops significantly' (the paper gives no "
                            "number), as in chapter 6"),
        Verdict.decided(LOCALISES, f"p(correct) lost with the occluder centred on the object box minus on the background: "
                                   f"{mean:+.0%} ± {se:.0%} over {photos} photos",
                        verdicts.decide(mean, 0, se, samples=photos), unit="photos", threshold_source="ours",
                        noise=f"standard error over the {photos} photos with positions on both object and background; "
                              f"± {se:.3g}",
                        why="any more lost on the object than on the background (the paper gives no size)",
                        note="the background is the reference: hiding part of a photo may hurt anywhere"),
        Verdict.decided(OVERLAP, f"IoU with the photo's own projection minus another photo's: {o_mean:+.2f} ± {o_se:.2f}",
                        verdicts.decide(o_mean, 0, o_se, samples=len(overlap)), unit="photos",
                        threshold_source="ours", noise=f"standard error over {len(overlap)} photos; ± {o_se:.3g}",
                        why="any larger overlap with the own projection than with another photo's (the paper gives "
                            "no size)", note="the validation of the deconvnet's visualizations (§4.2)"),
    ]


# ---------------------------------------------------------------- Fig. 5: invariance

def paper_layers(result, first: str = FIRST, last: str = PENULTIMATE):
    """An :class:`zfkit.invariance.InvarianceResult` of Lite0 with ``first`` and ``last`` renamed to
    the paper's ``conv1`` and ``fc7``, the names :func:`zfkit.invariance.claim_measurements` reads."""
    names = {first: "conv1", last: "fc7"}
    missing = [n for n in names if n not in result.normalized]
    if missing:
        raise ValueError(f"the sweep did not measure {missing}; run invariance(..., layers=({first!r}, {last!r}))")
    return replace(result, distance={names[k]: v for k, v in result.distance.items() if k in names},
                   normalized={names[k]: v for k, v in result.normalized.items() if k in names})


def invariance_claims(measured: Mapping[str, tuple[float, float]], photos: int) -> list[Verdict]:
    """Fig. 5's reading judged by chapter 5's rules (:func:`zfkit.claims.invariance.claims`) on
    :func:`zfkit.invariance.claim_measurements` (plus ``spearman``), Student's t for ``photos``."""
    from .claims import invariance

    return invariance.claims(measured, photos, layers=(FIRST, PENULTIMATE), unit="photos")


# ---------------------------------------------------------------- §5.2: transfer


def transfer_claim(margins: Sequence[float], shots: Sequence[int], layer: str, margin: float = 10.0) -> Verdict:
    """§5.2 judged by chapter 9's rule (:func:`zfkit.claims.transfer.margin_verdict`): Lite0's frozen
    ``layer`` + softmax minus ZFNet-mini from scratch, per fold (:func:`zfkit.probes.fold_margins`)."""
    from .claims import transfer

    return transfer.margin_verdict(margins, shots, features=f"Lite0 {layer}", threshold=margin,
                                   detail=" against ZFNet-mini trained from scratch")


# ---------------------------------------------------------------- beyond the paper: randomisation by stage

def weight_groups(model: nn.Module) -> dict[str, list[str]]:
    """The weight layers of ``model`` (:func:`zfkit.sanity.weight_layers`) grouped by their top-level
    block (``fc``, ``head``, ``stage7`` … ``stem``), from the top down.

    Lite0 has 50 weight layers; the cascade re-initialises a stage at a time, as Adebayo et al.
    randomise a block at a time in Inception, and keeps the test's cost at ten steps.
    """
    from .sanity import weight_layers

    groups: dict[str, list[str]] = {}
    for name in reversed(list(weight_layers(model))):
        groups.setdefault(name.split(".")[0], []).insert(0, name)
    return groups


def grouped_cascade(model: nn.Module, groups: Mapping[str, Sequence[str]], seed: int = 0) -> Iterator[tuple[str, nn.Module]]:
    """Cascading randomisation by group: ``(group, copy)`` with that group and all groups before it
    re-initialised (:func:`zfkit.sanity.randomize`; each layer's draw depends on its name only)."""
    from .sanity import randomize

    done: list[str] = []
    for name, layers in groups.items():
        done += list(layers)
        yield name, randomize(model, done, seed)


def sanity_claims(sweep, top: str) -> list[Verdict]:
    """Chapter 10's randomisation claims (:func:`zfkit.claims.sanity.claims`) on a
    :func:`zfkit.sanity.sweep` of class logits, ``top`` its first step (the classifier re-initialised)."""
    from .claims import sanity

    return sanity.claims(sweep, top, what="photos")


def checks(predicted: Sequence[dict], engine: Mapping[str, float]) -> list[Verdict]:
    """The chapter's own checks: the model recognises the photos (:func:`recognised` on :func:`top5`'s
    rows) and the deconvnet engine equals the autograd oracle (``engine``: lowest cosine per layer,
    :func:`zfkit.oracle.agreement`). Show them with :func:`zfkit.results.check_table`."""
    if not predicted or not engine:
        raise ValueError("checks needs top5's rows and at least one oracle cosine (layer -> lowest cosine)")
    share, noise, sees = recognised([r["top5"] for r in predicted])
    low, n = min(engine.values()), len(predicted)
    return [
        Verdict("The model sees what the photos show: a correct class in the top 5 for most photos",
                f"{share:.0%} of {n} photos (top 1: {sum(r['top1'] for r in predicted)} of {n})", sees,
                "share above one half, beyond twice its noise", noise=f"binomial ± {noise:.0%} over {n} photos"),
        Verdict("The deconvnet engine equals autograd with relu(grad) at each ReLU6 on Lite0",
                f"lowest cosine over {', '.join(engine)}, 2 maps, 1 photo: {low:.6f}", verdicts.exceeds(low, 0.9999, 0),
                "threshold 0.9999", noise="float rounding, about 1e-7"),
    ]


# ---------------------------------------------------------------- side by side with Fashion-MNIST

#: Per claim, what differs between the two settings that bears on it; read beside a verdict that changed.
REASONS = {
    GROUPING: "colour: an untrained Lite0's random filters pick crops of one colour, which a cosine over raw pixels "
              "rewards, while trained low stages answer edges of any colour; Fashion-MNIST is grey. Its top-9 are "
              "different garments, here overlapping views of 8 photos",
    INVARIANCE: "the labels are 8 photos here, 10 garment classes there; Lite0's upper fields cover the whole crop, "
                "ZFNet-mini's conv5 a part of the garment",
    DROPS: "both occluders hide 1/16 of the image, but 7 photos instead of 100 garments leave the median drop a wide "
           "noise",
    LOCALISES: "the photos have context around the object (its box), the garments lie alone on black; here the test "
               "compares covering the object with covering the background, there where the worst square lies",
    OVERLAP: "Lite0 has no max-pooling, so its deconvnet projection depends on where the unit is and not on the image; "
             "and 7 photos instead of 100 garments",
    INV_LAYERS: "global average pooling: Lite0's pooled features move less than its stem's under a small shift, trained "
                "or not; ZFNet-mini's fc7 reads the layout of its last maps",
    INV_LINEAR: "Lite0 averages its last maps over space (global pooling), ZFNet-mini's fc7 reads their layout",
    INV_STABLE: "Lite0 was trained on ImageNet with random crops and scales, the book's ZFNet-mini without shifts; "
                "8 photos against 300 garments",
    INV_ROTATE: "neither training rotates its images; 8 photos against 300 garments leave the rotation contrast "
                "within its noise",
    INV_SYMMETRY: "8 photos against 300 garments: a rank correlation over 8 points is weak evidence",
    TRANSFER: "the source: 1.2 M ImageNet photos against 55,000 garments; the target: 8x8 digit strokes blown up to "
              "224 px are far from ImageNet photos; the scratch network is the same ZFNet-mini in both chapters",
    SANITY_GUIDED: "Lite0's classifier is one linear layer over pooled features, ZFNet-mini's three",
    SANITY_GRADIENT: "the same rule on 8 photos instead of 32 garments: a wider noise around the same threshold",
    SANITY_DECONV: "without max-pooling switches the deconvnet never reads the image: its picture of a logit is one "
                   "pattern for every photo, which a new classifier reshapes little; ZFNet-mini's switches and three "
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
    both verdicts, whether it changed, and :data:`REASONS`' note on what differs between the settings."""
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
