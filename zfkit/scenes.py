"""Real photographed objects on real photographic backgrounds, with the object's exact mask.

The paper's occlusion, invariance and correspondence experiments ask where the *object* is. On
ImageNet photos that needs hand-drawn boxes; here the objects come cut out already:

- :func:`objects` — the photographs among Debian ``tuxpaint-stamps-default``'s stamps (GPL-2),
  each with its alpha channel as an exact mask, and a few studio photos on plain white from Debian
  ``gcompris-qt-data`` (public domain or CC0), cut along their background
  (:func:`zfkit.cutout.plain_background_mask`); each with the set of ImageNet classes that count
  as correct, curated by hand in ``zfkit/objects.json``;
- :func:`backgrounds` — photographic wallpapers from Debian ``mate-backgrounds`` and
  ``plasma-workspace-wallpapers`` that hold no ImageNet object of their own;
- :func:`compose` pastes one object on one background at a chosen scale, place and angle;
  :func:`scenes` draws ``n`` such composites deterministically from a seed, in the model's input
  space, with masks and boxes.

Nothing is downloaded and no image is committed: the files come from the Debian packages, which
``make setup`` installs when it runs as root.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .cutout import plain_background_mask
from .efficientnet import MEAN, STD, imagenet_classes, normalize, unnormalize
from .images import TensorImages, missing_debian_file, top_k_hits
from .qt_resource import read_member

__all__ = ["OBJECTS_JSON", "RealObject", "Background", "Scenes", "objects", "backgrounds", "compose", "scenes",
           "mask_symmetry", "missing_packages", "catalogue_digest"]

OBJECTS_JSON = Path(__file__).with_name("objects.json")
#: Background photos are decoded once at this longest side: scenes are 224 pixels or less.
BACKGROUND_SIDE = 1024


@dataclass(frozen=True)
class RealObject:
    """One photographed object, cropped to its mask's bounding box.

    ``image`` (H, W, 3) uint8; ``alpha`` (H, W) uint8, the stamp's own soft edge (for blending);
    ``mask`` (H, W) bool, ``alpha >= 128``; ``imagenet`` the correct ImageNet-1k classes (possibly none).
    """

    name: str
    file: str
    image: np.ndarray = field(repr=False)
    alpha: np.ndarray = field(repr=False)
    imagenet: tuple[int, ...]
    licence: str
    attribution: str

    @property
    def mask(self) -> np.ndarray:
        return self.alpha >= 128


@dataclass(frozen=True)
class Background:
    """One photographic wallpaper, ``image`` (H, W, 3) uint8 with its longest side at most 1024 pixels."""

    name: str
    file: str
    image: np.ndarray = field(repr=False)
    shows: str
    licence: str
    attribution: str


def _catalogue() -> dict:
    return json.loads(OBJECTS_JSON.read_text(encoding="utf8"))


def catalogue_digest() -> str:
    """A SHA-256 of what the curated objects and backgrounds are (files, hashes, classes, cut), not of the prose:
    a model distilled on scenes records it, so a changed catalogue makes its cache entry stale."""
    catalogue = _catalogue()
    keep = ("file", "member", "sha256", "imagenet", "background_tolerance")
    content = {"objects": [{k: e[k] for k in keep if k in e} for e in catalogue["objects"]],
               "backgrounds": [{k: e[k] for k in ("file", "sha256")} for e in catalogue["backgrounds"]]}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def missing_packages() -> list[str]:
    """The Debian packages whose catalogued files are not on this machine (what ``make setup`` installs)."""
    catalogue = _catalogue()
    files = [_object_source(e, catalogue["stamps"]) for e in catalogue["objects"]]
    files += [(Path(e["file"]), e["package"]) for e in catalogue["backgrounds"]]
    return sorted({package for path, package in files if not path.is_file()})


def _checked(raw: bytes, where: str | Path, sha256: str) -> bytes:
    if hashlib.sha256(raw).hexdigest() != sha256:
        warnings.warn(f"{where} differs from the file that was curated (SHA-256); its classes or mask may not fit",
                      stacklevel=3)
    return raw


def _read(path: Path, package: str, sha256: str) -> bytes:
    if not path.is_file():
        raise missing_debian_file(path, package)
    return _checked(path.read_bytes(), path, sha256)


def _decode(raw: bytes, mode: str) -> np.ndarray:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(raw)) as im:
        im = im.convert(mode)
        if mode == "RGB" and max(im.size) > BACKGROUND_SIDE:
            im.thumbnail((BACKGROUND_SIDE, BACKGROUND_SIDE), Image.Resampling.LANCZOS)
        return np.asarray(im).copy()


def _object_source(entry: dict, stamps: dict) -> tuple[Path, str]:
    """The entry's file and Debian package: a stamp's file is relative to the stamps' root, an object from
    another package names its package and its whole path."""
    if "package" in entry:
        return Path(entry["file"]), entry["package"]
    return Path(stamps["root"]) / entry["file"], stamps["package"]


def _object_rgba(entry: dict, stamps: dict) -> np.ndarray:
    """The entry's (H, W, 4) uint8 pixels: a stamp's own alpha, or a studio photo cut along its plain background."""
    path, package = _object_source(entry, stamps)
    if "member" not in entry:
        return _decode(_read(path, package, entry["sha256"]), "RGBA")
    if not path.is_file():
        raise missing_debian_file(path, package)
    rgb = _decode(_checked(read_member(path, entry["member"]), f"{path}:{entry['member']}", entry["sha256"]), "RGB")
    alpha = plain_background_mask(rgb, tolerance=entry["background_tolerance"]).astype(np.uint8) * 255
    return np.dstack([rgb, alpha])


@lru_cache(maxsize=1)
def _all_objects() -> tuple[RealObject, ...]:
    catalogue = _catalogue()
    stamps = catalogue["stamps"]
    out = []
    for entry in catalogue["objects"]:
        rgba = _object_rgba(entry, stamps)
        ys, xs = np.nonzero(rgba[..., 3] >= 128)
        rgba = rgba[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        name = f"{entry['file']}:{entry['member']}" if "member" in entry else entry["file"]
        out.append(RealObject(entry["name"], name, rgba[..., :3].copy(), rgba[..., 3].copy(),
                              tuple(entry["imagenet"]), entry.get("licence", stamps["licence"]),
                              entry.get("attribution", stamps["attribution"])))
    return tuple(out)


def objects(classified: bool = True) -> list[RealObject]:
    """The photographed objects of ``zfkit/objects.json``, in its order.

    ``classified=True`` keeps those with at least one correct ImageNet class (the ones a classifier
    can be scored on); ``False`` returns every photograph, including objects ImageNet has no class for.
    """
    return [o for o in _all_objects() if o.imagenet or not classified]


@lru_cache(maxsize=1)
def _all_backgrounds() -> tuple[Background, ...]:
    return tuple(Background(e["name"], e["file"], _decode(_read(Path(e["file"]), e["package"], e["sha256"]), "RGB"),
                            e["shows"], e["licence"], e["attribution"]) for e in _catalogue()["backgrounds"])


def backgrounds() -> list[Background]:
    """The photographic backgrounds of ``zfkit/objects.json`` (landscapes, grass, water, wood, forest)."""
    return list(_all_backgrounds())


# ---------------------------------------------------------------- composing one scene

def _background_square(background: Background, size: int, zoom: float, corner: tuple[float, float]) -> np.ndarray:
    """A square of side ``zoom`` x the photo's shorter side, its top-left at ``corner`` (fractions of the free room)."""
    from PIL import Image

    h, w = background.image.shape[:2]
    side = max(1, round(zoom * min(h, w)))
    y0, x0 = round(corner[0] * (h - side)), round(corner[1] * (w - side))
    square = Image.fromarray(background.image[y0:y0 + side, x0:x0 + side])
    return np.asarray(square.resize((size, size), Image.Resampling.LANCZOS)).astype(np.float32)


def _object_layer(obj: RealObject, extent: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """The object rotated by ``angle`` degrees (counter-clockwise), its longer side scaled to ``extent`` pixels:
    premultiplied RGB (h, w, 3) float and alpha (h, w) float in [0, 1]."""
    from PIL import Image

    rgba = Image.fromarray(np.dstack([obj.image, obj.alpha]))
    if angle:
        rgba = rgba.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
        bbox = rgba.getchannel("A").point(lambda a: 255 if a >= 128 else 0).getbbox()
        rgba = rgba.crop(bbox) if bbox else rgba
    factor = extent / max(rgba.size)
    new = (max(1, round(rgba.size[0] * factor)), max(1, round(rgba.size[1] * factor)))
    rgba = np.asarray(rgba.resize(new, Image.Resampling.LANCZOS)).astype(np.float32) / 255.0
    alpha = rgba[..., 3]
    return rgba[..., :3] * alpha[..., None], alpha


def compose(obj: RealObject, background: Background, size: int = 224, scale: float = 0.5,
            centre: tuple[float, float] = (0.5, 0.5), angle: float = 0.0, zoom: float = 1.0,
            corner: tuple[float, float] = (0.5, 0.5)) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """``obj`` pasted on ``background``: the (size, size, 3) uint8 scene, its (size, size) bool mask and its box.

    ``scale``: the object's longer side (after rotating by ``angle`` degrees) as a share of ``size``;
    ``centre``: where its box's centre goes, as (row, column) fractions of the frame, moved inwards
    where needed so the whole object stays in view; ``zoom`` and ``corner``: the square of the
    background used (its side as a share of the photo's shorter side, and where it sits).
    The box is ``(x0, y0, x1, y1)``, end exclusive. The paste blends with the stamp's own soft alpha;
    the mask is where that alpha is at least one half.
    """
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1] (the object's longer side as a share of the frame), got {scale}")
    if not 0 < zoom <= 1:
        raise ValueError(f"zoom must be in (0, 1] (a share of the background's shorter side), got {zoom}")
    scene = _background_square(background, size, zoom, corner)
    rgb, alpha = _object_layer(obj, max(1, round(scale * size)), angle)
    h, w = alpha.shape
    y0 = min(max(round(centre[0] * size - h / 2), 0), size - h)
    x0 = min(max(round(centre[1] * size - w / 2), 0), size - w)
    region = scene[y0:y0 + h, x0:x0 + w]
    region[:] = rgb * 255.0 + region * (1 - alpha[..., None])
    mask = np.zeros((size, size), dtype=bool)
    mask[y0:y0 + h, x0:x0 + w] = alpha >= 0.5
    return np.clip(np.rint(scene), 0, 255).astype(np.uint8), mask, (x0, y0, x0 + w, y0 + h)


# ---------------------------------------------------------------- many scenes

@dataclass
class Scenes(TensorImages):
    """Composited scenes in a model's input space (normalised with ``mean``/``std``, EfficientNet-Lite0's by default).

    ``masks`` (N, H, W) bool and ``boxes`` (N, 4) ``[x0, y0, x1, y1]`` locate the object exactly;
    ``correct`` holds each scene's correct ImageNet classes (``targets`` the first of them);
    ``object_names``/``background_names`` and the drawn ``scales``/``angles`` say how each was made.
    """

    masks: torch.Tensor | None = None
    boxes: torch.Tensor | None = None
    correct: tuple[tuple[int, ...], ...] = ()
    object_names: tuple[str, ...] = ()
    background_names: tuple[str, ...] = ()
    scales: tuple[float, ...] = ()
    angles: tuple[float, ...] = ()
    norm: tuple[tuple[float, ...], tuple[float, ...]] = (MEAN, STD)

    @property
    def names(self) -> tuple[str, ...]:
        """The objects' names, one per scene (as :class:`zfkit.data.Photos` names its photos)."""
        return self.object_names

    def display(self, images: torch.Tensor | None = None) -> torch.Tensor:
        """Pixels back in [0, 1] for plotting."""
        return unnormalize(self.images if images is None else images, *self.norm)

    def hits(self, logits: torch.Tensor, k: int = 5) -> torch.Tensor:
        """For (N, 1000) logits of these scenes: True where a correct class is among the top ``k``."""
        return top_k_hits(logits, self.correct, k)

    def subset(self, indices: Sequence[int] | torch.Tensor) -> "Scenes":
        idx = torch.as_tensor(indices, dtype=torch.long)

        def pick(values):
            return tuple(values[i] for i in idx.tolist())

        return Scenes(self.images[idx], self.targets[idx], self.classes, masks=self.masks[idx], boxes=self.boxes[idx],
                      correct=pick(self.correct), object_names=pick(self.object_names),
                      background_names=pick(self.background_names), scales=pick(self.scales),
                      angles=pick(self.angles), norm=self.norm)


def _draw(rng: np.random.Generator, bounds: float | tuple[float, float]) -> float:
    lo, hi = (bounds, bounds) if isinstance(bounds, (int, float)) else bounds
    return float(rng.uniform(lo, hi)) if hi > lo else float(lo)


def scenes(n: int, size: int = 224, seed: int = 0, scale: float | tuple[float, float] = (0.4, 0.75),
           angle: float | tuple[float, float] = 0.0, zoom: float | tuple[float, float] = (0.5, 1.0),
           centred: bool = False, items: Sequence[RealObject] | None = None,
           on: Sequence[Background] | None = None, mean=MEAN, std=STD) -> Scenes:
    """``n`` deterministic composites of an object on a real background.

    Scene ``i`` depends only on ``(seed, i)``: the first ``m`` scenes of ``scenes(n)`` are ``scenes(m)``.
    Objects are taken in a seeded shuffled cycle (every object once before any twice) from ``items``
    (default: :func:`objects`), backgrounds likewise from ``on`` (default: :func:`backgrounds`).
    ``scale``, ``angle`` (degrees) and ``zoom`` are fixed values or (low, high) ranges drawn uniformly;
    the object's place is drawn uniformly in the frame unless ``centred``. Images are in the model's
    input space: ``(pixels / 255 - mean) / std``.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    pool = list(objects() if items is None else items)
    room = list(backgrounds() if on is None else on)
    if not pool or not room:
        raise ValueError("scenes need at least one object and one background")
    images, masks, boxes, made = [], [], [], []
    for i in range(n):
        cycle, slot = divmod(i, len(pool))
        obj = pool[np.random.default_rng([seed, 1, cycle]).permutation(len(pool))[slot]]
        rng = np.random.default_rng([seed, 2, i])
        bg = room[int(rng.integers(len(room)))]
        s, a, z = _draw(rng, scale), _draw(rng, angle), _draw(rng, zoom)
        centre = (0.5, 0.5) if centred else (float(rng.uniform()), float(rng.uniform()))
        corner = (float(rng.uniform()), float(rng.uniform()))
        image, mask, box = compose(obj, bg, size, s, centre, a, z, corner)
        images.append(image)
        masks.append(mask)
        boxes.append(box)
        made.append((obj, bg, s, a))
    pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    correct = tuple(o.imagenet for o, *_ in made)
    return Scenes(normalize(pixels, mean, std), torch.tensor([c[0] if c else -1 for c in correct]), imagenet_classes(),
                  masks=torch.from_numpy(np.stack(masks)), boxes=torch.tensor(boxes, dtype=torch.long),
                  correct=correct, object_names=tuple(o.name for o, *_ in made),
                  background_names=tuple(b.name for _, b, *_ in made), scales=tuple(s for *_, s, _ in made),
                  angles=tuple(a for *_, a in made), norm=(tuple(mean), tuple(std)))


# ---------------------------------------------------------------- shape measures

def mask_symmetry(mask: np.ndarray | torch.Tensor, angles: Sequence[float] = (45, 90, 135, 180)) -> float:
    """How much a mask looks the same when rotated: mean IoU of the mask with itself turned by each angle about its centroid.

    1 for a disc; for a square 0.71 at 45 degrees and 1 at 90 (mean about 0.85); low for elongated or
    lopsided shapes. Chapter 11 compares how Lite0's output follows rotation for symmetric against asymmetric objects.
    """
    from skimage.transform import rotate

    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2 or not m.any():
        raise ValueError(f"expected one non-empty (H, W) mask, got shape {m.shape} with {int(m.sum())} pixels set")
    ys, xs = np.nonzero(m)
    cy, cx = ys.mean(), xs.mean()
    radius = int(math.ceil(np.sqrt(((ys - cy) ** 2 + (xs - cx) ** 2).max()))) + 2
    canvas = np.zeros((2 * radius + 1, 2 * radius + 1), dtype=np.float32)
    canvas[ys - round(cy) + radius, xs - round(cx) + radius] = 1.0  # a whole-pixel shift: no holes
    base = canvas >= 0.5
    scores = []
    for a in angles:
        turned = rotate(canvas, a, order=1, preserve_range=True) >= 0.5
        scores.append((base & turned).sum() / max((base | turned).sum(), 1))
    return float(np.mean(scores))
