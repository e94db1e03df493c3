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

from .claims.lite0 import (FIRST, PENULTIMATE, REASONS, checks, compare_with_fashion, comparison_markdown,
                           fashion_verdicts, hierarchy_claims, invariance_claims, occlusion_claims, recognised,
                           sanity_claims, transfer_claim)
from .data import PHOTOS_JSON, Photos, TensorImages
from .efficientnet import EfficientNetLite0, normalize, unnormalize
from .object_occlusion import background_drop, box_mask, object_contrast
from .viz import contrast, draw_photos, draw_stage_projections

__all__ = ["Sizes", "SIZES", "sizes", "LAYERS", "FIRST", "PENULTIMATE", "OCCLUSION_LAYER", "LiteImages", "untrained",
           "top5", "Recognition", "recognise", "top5_markdown", "draw_photos", "recognised", "crop_boxes", "crops", "to_lite0",
           "strongest_units", "outside_field", "contrast", "draw_stage_projections", "unit_patch", "on_image",
           "fit_to_image", "map_measures",
           "hierarchy_claims", "box_mask", "background_drop", "object_contrast", "compact_classes", "occlusion_claims",
           "paper_layers", "invariance_claims", "transfer_claim", "weight_groups", "grouped_cascade", "sanity_claims", "checks",
           "fashion_verdicts", "compare_with_fashion", "comparison_markdown", "REASONS"]

#: The stages whose single units the chapter projects, as Fig. 2 does (the linear outputs of the inverted-residual stages:
#: unbounded, so the strongest unit is never a tie at ReLU6's ceiling).
LAYERS = ("stage2", "stage3", "stage4", "stage5", "stage6", "stage7")
#: The late feature map of Fig. 7 (the paper's layer 5), the last stage with 320 maps of 7x7.
OCCLUSION_LAYER = "stage7"


# ---------------------------------------------------------------- profile sizes

@dataclass(frozen=True)
class Sizes:
    """How much of each analysis a profile runs (Lite0 does ~20-40 images/s at 224 on 2 CPU cores)."""

    crops: int  # the top-9 search set (both networks scan it)
    crop_scales: tuple[float, float]  # smallest and largest crop side, as a share of the photo's frame
    unit_photos: int  # photos in the figure of projections of single units (the strongest per stage)
    unit_layers: tuple[str, ...]  # its stages
    panel_layers: tuple[str, ...]  # stages with Fig. 2 panels
    panel_maps: int  # feature maps per stage in those panels
    objects: int  # at most this many objects, one scene each, for recognition and covering the object (§4.2)
    object_scale: tuple[float, float]  # their longer side as a share of the 224 frame
    occlusion_sweeps: int  # recognised scenes given a full square sweep (the activity-drop overlap)
    occlusion_figures: int  # of them drawn as Fig. 7 rows
    patch: int  # occluder side (pixels of the 224 frame)
    stride: int
    translate: tuple[float, ...]
    scale: tuple[float, ...]
    rotate: tuple[float, ...]
    invariance_scenes: int  # recognised centred scenes per invariance sweep
    digits_per_class: int  # digits kept for §5.2 (features at 224 are the cost)
    shots: tuple[int, ...]
    folds: int  # book 13: at 10 the margin was inconclusive (its noise said 12 would decide); a fold costs < 1 min
    test_per_class: int
    sanity_scenes: int
    scratch_steps: int  # SGD steps of the scratch baseline (chapter 9's recipe: 30)
    sanity_steps: int  # stage groups randomised, from the top (all of them: len(weight_groups))
    oracle_layers: tuple[str, ...]
    draws: int  # bootstrap resamples of the photos


SIZES = {
    # proves the code paths in seconds; the numbers mean little
    "ci": Sizes(crops=96, crop_scales=(0.3, 1.0), unit_photos=3, unit_layers=("stage3", "stage7"),
                panel_layers=("stage3",), panel_maps=1, objects=12, object_scale=(0.35, 0.6), occlusion_sweeps=3,
                occlusion_figures=1, patch=112, stride=56, translate=(-28.0, -14.0, 0.0, 14.0, 28.0),
                scale=(1 / 1.2, 1.0, 1.1, 1.2), rotate=(0.0, 90.0, 180.0), invariance_scenes=3, digits_per_class=7,
                shots=(1, 3), folds=2, test_per_class=3, scratch_steps=10, sanity_scenes=2, sanity_steps=1,
                oracle_layers=("stage3",), draws=200),
    "book": Sizes(crops=2048, crop_scales=(0.25, 1.0), unit_photos=8, unit_layers=LAYERS,
                  panel_layers=("stage2", "stage4", "stage6"), panel_maps=2, objects=1000, object_scale=(0.35, 0.6),
                  occlusion_sweeps=32, occlusion_figures=3, patch=56, stride=28,
                  translate=(-56.0, -28.0, -14.0, -7.0, 0.0, 7.0, 14.0, 28.0, 56.0),
                  scale=(1 / 1.4, 1 / 1.2, 1 / 1.1, 1.0, 1.1, 1.2, 1.4),
                  rotate=tuple(float(a) for a in range(0, 361, 30)), invariance_scenes=96, digits_per_class=55,
                  shots=(1, 2, 5, 10, 20, 30), folds=13, test_per_class=25, scratch_steps=30, sanity_scenes=16,
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


@dataclass(frozen=True)
class Recognition:
    """How the model classifies photos or scenes: per image, whether a correct class is its top 1 and
    among its top 5, and ``targets``, the correct class it finds most probable (the class that
    occlusion and invariance then follow) with its probability ``p_target``."""

    top1: torch.Tensor
    top5: torch.Tensor
    targets: torch.Tensor
    p_target: torch.Tensor

    def recognised(self) -> list[int]:
        """The indices of the images with a correct class in the top 5."""
        return torch.nonzero(self.top5).flatten().tolist()


@torch.no_grad()
def recognise(model: nn.Module, dataset, batch_size: int = 32) -> Recognition:
    """:class:`Recognition` of ``dataset`` (:class:`zfkit.data.Photos` or :class:`zfkit.data.Scenes`:
    images with ``correct`` class sets), in batches."""
    probs = torch.cat([model(b).float().softmax(1) for b in dataset.images.split(batch_size)])
    targets = torch.tensor([max(c, key=lambda k: float(p[k])) for p, c in zip(probs, dataset.correct)])
    return Recognition(dataset.hits(probs, k=1), dataset.hits(probs, k=5), targets,
                       probs[torch.arange(len(probs)), targets])


def top5_markdown(rows: Sequence[dict]) -> str:
    """:func:`top5`'s rows as a Markdown table, correct classes in bold."""
    lines = ["| Photo | Top 5 (probability; **correct**) | Top 1 | Top 5 |", "|---|---|---|---|"]
    for r in rows:
        ranked = ", ".join(f"**{c}** {p:.2f}" if hit else f"{c} {p:.2f}"
                           for c, p, hit in zip(r["classes"], r["probs"], r["correct"]))
        lines.append(f"| {r['photo']} | {ranked} | {'yes' if r['top1'] else 'no'} | {'yes' if r['top5'] else 'no'} |")
    return "\n".join(lines)


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
        out[i] = normalize((crop.flip(-1) if flip else crop).clamp(0, 1))
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
    return LiteImages(normalize(pixels.expand(-1, 3, -1, -1).clamp(0, 1)), dataset.targets.clone(), dataset.classes)


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


# ---------------------------------------------------------------- Fig. 7: the class map's legend

def compact_classes(result, classes: Sequence[str]):
    """``result`` with its most-probable-class map renumbered 0..m-1 over the classes present (the
    target first), and those m names: Fig. 7 (e)'s legend colours ten classes, not ImageNet's 1000."""
    present = [result.target] + sorted(set(result.top_class.flatten().tolist()) - {result.target})
    lookup = {c: i for i, c in enumerate(present)}
    top = result.top_class.clone().apply_(lambda c: lookup[c])
    return replace(result, top_class=top, target=0), [classes[c] for c in present]


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
