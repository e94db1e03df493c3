"""Datasets and the paper's preprocessing, found offline.

Fashion-MNIST is looked up in this order (DESIGN §6): the ``root=`` argument, ``$ZFKIT_DATA/fashion-mnist``,
``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``), then torchvision's download
when the network allows. Images are held in memory as one tensor: 60k 32x32 images are 245 MB, and
indexing a tensor is far faster than decoding files in DataLoader workers on a 2-core machine.

The paper's only preprocessing is per-pixel mean subtraction (§3); :func:`fashion_mnist` does the same
with the training split's mean image, on pixels scaled to [0, ``pixel_range``] (255 gives the paper's
[-128, 128] range used by the feature-scale-clipping experiment).
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .efficientnet import imagenet_classes, preprocess, unnormalize
from .images import DataNotFoundError, TensorImages, top_k_hits
from .gcompris import UnlabelledPhotos, unlabelled_photos
from .scenes import Background, RealObject, Scenes, backgrounds, objects, scenes

__all__ = [
    "TensorImages",
    "fashion_mnist",
    "find_fashion_mnist",
    "digits",
    "keep_classes",
    "imagenet",
    "ten_crop",
    "subset",
    "FASHION_CLASSES",
    "DataNotFoundError",
    "photos",
    "Photos",
    "unlabelled_photos",
    "UnlabelledPhotos",
    "objects",
    "RealObject",
    "backgrounds",
    "Background",
    "scenes",
    "Scenes",
]

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

# MD5 of the *decompressed* IDX files, so a re-compressed copy (Debian ships one) still verifies.
FASHION_FILES = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


# ---------------------------------------------------------------- Fashion-MNIST

def _candidates(root: str | os.PathLike | None) -> list[Path]:
    out = []
    if root is not None:
        out.append(Path(root))
    if os.environ.get("ZFKIT_DATA"):
        out.append(Path(os.environ["ZFKIT_DATA"]) / "fashion-mnist")
    out.append(DEBIAN_FASHION)
    return out


def _file_in(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _missing_message(looked: list[Path]) -> str:
    return (
        "Fashion-MNIST not found (looked in: " + ", ".join(map(str, looked)) + "). Provide it in one of three ways:\n"
        "  1. pass root=/path/to/folder holding train-images-idx3-ubyte.gz and the three other files;\n"
        "  2. set ZFKIT_DATA=/path so that $ZFKIT_DATA/fashion-mnist holds them;\n"
        "  3. install Debian's package: sudo apt-get install dataset-fashion-mnist "
        "(files land in /usr/share/datasets/fashion-mnist; `make setup` does this).\n"
        "With internet access, torchvision.datasets.FashionMNIST(root, download=True) also fills option 1."
    )


def find_fashion_mnist(root: str | os.PathLike | None = None, download: bool = False) -> Path:
    """The first folder holding all four Fashion-MNIST files, in DESIGN §6's order.

    An explicit ``root`` that is not a folder is an error, not a reason to fall back to the other
    places: a mistyped path would otherwise go unnoticed whenever Debian's copy is installed.
    """
    if root is not None and not download and not Path(root).expanduser().is_dir():
        raise DataNotFoundError(f"root={str(root)!r} is not a folder; pass the folder that holds "
                                "train-images-idx3-ubyte.gz and the three other files, or leave root=None to "
                                "use $ZFKIT_DATA or Debian's copy")
    looked = _candidates(root)
    for folder in looked:
        if all(_file_in(folder, stem) for stem in FASHION_FILES):
            return folder
    if root is not None and Path(root).is_dir() and any(_file_in(Path(root), s) for s in FASHION_FILES):
        missing = [s for s in FASHION_FILES if not _file_in(Path(root), s)]
        raise DataNotFoundError(f"{root} holds only part of Fashion-MNIST: missing {', '.join(missing)}. " + _missing_message(looked))
    if download:
        from torchvision.datasets import FashionMNIST

        target = Path(root or os.environ.get("ZFKIT_DATA") or "~/.cache/zfkit/data").expanduser() / "_torchvision"
        try:
            FashionMNIST(str(target), download=True)
        except Exception as e:  # noqa: BLE001 - any network failure means "not available"
            raise DataNotFoundError(f"download failed ({e}). " + _missing_message(looked)) from e
        return target / "FashionMNIST" / "raw"
    raise DataNotFoundError(_missing_message(looked))


@lru_cache(maxsize=8)
def _read_idx(path: Path, expected_md5: str) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"cannot read {path}: {e}; the file is corrupted - delete it and reinstall the data") from e
    digest = hashlib.md5(raw).hexdigest()
    if digest != expected_md5:
        raise ValueError(
            f"{path} failed its MD5 check (got {digest}, expected {expected_md5} for the decompressed file); "
            "it is corrupted or a different dataset - delete it and reinstall (e.g. apt-get install --reinstall dataset-fashion-mnist)"
        )
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _fashion_arrays(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    images = _read_idx(_file_in(folder, f"{prefix}-images-idx3-ubyte"), FASHION_FILES[f"{prefix}-images-idx3-ubyte"])
    labels = _read_idx(_file_in(folder, f"{prefix}-labels-idx1-ubyte"), FASHION_FILES[f"{prefix}-labels-idx1-ubyte"])
    return images, labels


def fashion_mnist(split: str, root: str | os.PathLike | None = None, size: int = 32,
                  pixel_range: float = 1.0, download: bool = False) -> TensorImages:
    """Fashion-MNIST ``"train"`` (60k) or ``"test"`` (10k) as (N, 1, size, size) tensors.

    28x28 images are zero-padded (centred) to ``size`` (32 for zfkit's mini models; no resampling,
    so no interpolation blur), scaled to [0, pixel_range], and the training set's mean image is
    subtracted, as the paper does with ImageNet (§3).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not isinstance(size, int) or size < 28:
        raise ValueError(f"size must be an int >= 28 (images are 28x28 and are padded, not cropped), got {size!r}")
    if pixel_range <= 0:
        raise ValueError(f"pixel_range must be positive, got {pixel_range}")
    folder = find_fashion_mnist(root, download)
    images, labels = _fashion_arrays(folder, split)
    x = _pad(torch.from_numpy(images.copy()), size) * (pixel_range / 255.0)
    mean = _train_mean(folder, size) * (pixel_range / 255.0)
    return TensorImages(x - mean, torch.from_numpy(labels.astype(np.int64)), FASHION_CLASSES, mean, pixel_range)


@lru_cache(maxsize=4)
def _train_mean(folder: Path, size: int) -> torch.Tensor:
    """The training split's mean image in [0, 255] (computed once: every split and range reuses it)."""
    train_images, _ = _fashion_arrays(folder, "train")
    return _pad(torch.from_numpy(train_images.copy()), size).mean(0)


def _pad(images_u8: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 28, 28) uint8 -> (N, 1, size, size) float, centred with zeros."""
    n, h, w = images_u8.shape
    out = torch.zeros(n, 1, size, size)
    top, left = (size - h) // 2, (size - w) // 2
    out[:, 0, top:top + h, left:left + w] = images_u8.float()
    return out


# ---------------------------------------------------------------- sklearn digits (transfer target)

def digits(size: int = 32) -> TensorImages:
    """sklearn's 1,797 handwritten digits (8x8, 0-16), resized to ``size`` with bilinear resampling.

    Pixels are scaled to [0, 1] and the dataset's mean image subtracted, matching :func:`fashion_mnist`.
    """
    from sklearn.datasets import load_digits

    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an int >= 8, got {size!r}")
    d = load_digits()
    x = torch.from_numpy(d.images).float().unsqueeze(1) / 16.0
    if size != 8:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    mean = x.mean(0)
    return TensorImages(x - mean, torch.from_numpy(d.target).long(), tuple(str(i) for i in range(10)), mean, 1.0)


# ---------------------------------------------------------------- ImageNet (paper profile)

def imagenet(root: str | os.PathLike, split: str, mean: torch.Tensor | None = None, crop: int = 224):
    """An ImageNet ``ImageFolder`` (``root/train``, ``root/val``) with the paper's §3 preprocessing.

    Each image: smaller side resized to 256, centre 256x256 crop, per-pixel mean subtracted
    (``mean``: a (3, 256, 256) image in [0, 1] units; zeros when None), then for ``train`` a random
    ``crop``x``crop`` crop and horizontal flip, for ``val`` the centre crop (use :func:`ten_crop` for
    the paper's 10-crop evaluation on the 256x256 tensors of ``split="val256"``).
    """
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    if split not in ("train", "val", "val256"):
        raise ValueError(f"split must be 'train', 'val' or 'val256', got {split!r}")
    folder = Path(root) / ("train" if split == "train" else "val")
    if not folder.is_dir():
        raise DataNotFoundError(
            f"ImageNet folder {folder} not found; pass root= (or set ZFKIT_IMAGENET) to a folder with "
            "train/ and val/ subfolders, one subfolder per class (torchvision ImageFolder layout)"
        )
    mean = torch.zeros(3, 256, 256) if mean is None else mean
    steps = [v2.ToImage(), v2.Resize(256, antialias=True), v2.CenterCrop(256), v2.ToDtype(torch.float32, scale=True),
             v2.Lambda(lambda x: x - mean)]
    if split == "train":
        steps += [v2.RandomCrop(crop), v2.RandomHorizontalFlip()]
    elif split == "val":
        steps += [v2.CenterCrop(crop)]
    return ImageFolder(str(folder), transform=v2.Compose(steps))


def ten_crop(images: torch.Tensor, size: int = 224) -> torch.Tensor:
    """The paper's 10-crop evaluation: 4 corners + centre, and their flips: (B, C, H, W) -> (B, 10, C, size, size).

    Average the model's softmax over dim 1 to get the 10-crop prediction.
    """
    from torchvision.transforms.v2 import functional as F

    if images.dim() != 4:
        raise ValueError(f"ten_crop expects a batch (B, C, H, W), got shape {tuple(images.shape)}")
    if min(images.shape[-2:]) < size:
        raise ValueError(f"ten_crop size {size} is larger than the images ({images.shape[-2]}x{images.shape[-1]})")
    return torch.stack(F.ten_crop(images, [size, size]), dim=1)


# ---------------------------------------------------------------- deterministic subsets

def keep_classes(dataset: TensorImages, classes: Sequence[int]) -> TensorImages:
    """Only the images of ``classes``, relabelled 0..k-1 in the order given (a transfer split).

    Fashion-MNIST's classes 0-4 to pre-train and 5-9 as the new task, for example: the new task's
    labels then run 0-4 as well, ready for a fresh 5-way classifier.
    """
    classes = [int(c) for c in classes]
    known = range(len(dataset.classes))
    if not classes or len(set(classes)) != len(classes) or any(c not in known for c in classes):
        raise ValueError(f"classes must be distinct labels in 0..{len(dataset.classes) - 1}, got {classes!r}")
    relabel = torch.full((len(dataset.classes),), -1, dtype=torch.long)
    relabel[classes] = torch.arange(len(classes))
    keep = (relabel[dataset.targets] >= 0).nonzero().flatten()
    return TensorImages(dataset.images[keep], relabel[dataset.targets[keep]], tuple(dataset.classes[c] for c in classes),
                        dataset.mean, dataset.pixel_range)


def subset(dataset: TensorImages, n: int, seed: int = 0, stratified: bool = True) -> TensorImages:
    """``n`` examples drawn deterministically (the ``ci`` profile's small data).

    Stratified by label when ``stratified``: each class gets n // classes examples (the remainder
    goes to the first classes), so tiny subsets still contain every class.
    """
    if not isinstance(n, int) or n <= 0:
        raise ValueError(f"subset size must be a positive int, got {n!r}")
    if n > len(dataset):
        raise ValueError(f"subset of {n} requested from a dataset of {len(dataset)}; use n <= {len(dataset)}")
    g = torch.Generator().manual_seed(seed)
    if not stratified:
        return dataset.subset(torch.randperm(len(dataset), generator=g)[:n].sort().values)
    labels = dataset.targets
    classes = labels.unique()
    chosen = []
    for rank, c in enumerate(classes):
        pool = (labels == c).nonzero().flatten()
        take = n // len(classes) + (1 if rank < n % len(classes) else 0)
        chosen.append(pool[torch.randperm(len(pool), generator=g)[:take]])
    return dataset.subset(torch.cat(chosen).sort().values)


# ---------------------------------------------------------------- real colour photos (EfficientNet-Lite0, ImageNet)

PHOTOS_JSON = Path(__file__).with_name("photos.json")


@dataclass
class Photos(TensorImages):
    """Real colour photos, preprocessed for :func:`zfkit.models.efficientnet_lite0`, with their metadata.

    ``images`` is (N, 3, 224, 224), normalised by :func:`zfkit.efficientnet.preprocess` (``display()``
    undoes it); ``classes`` are ImageNet's 1000 names; ``targets`` each photo's first correct class and
    ``correct`` the whole set that counts; ``boxes`` (N, 4) the object's [x0, y0, x1, y1] in pixels
    (end exclusive); ``names``, ``sources``, ``licences`` and ``notes`` come from ``zfkit/photos.json``.
    """

    names: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    licences: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    correct: tuple[tuple[int, ...], ...] = ()
    boxes: torch.Tensor | None = None

    def display(self, images: torch.Tensor | None = None) -> torch.Tensor:
        """Undo the model's normalisation: pixels back in [0, 1] for plotting."""

        return unnormalize(self.images if images is None else images)

    def subset(self, indices: Sequence[int] | torch.Tensor) -> "Photos":
        idx = torch.as_tensor(indices, dtype=torch.long)

        def pick(values):
            return tuple(values[i] for i in idx.tolist())

        return Photos(self.images[idx], self.targets[idx], self.classes, names=pick(self.names),
                      sources=pick(self.sources), licences=pick(self.licences), notes=pick(self.notes),
                      correct=pick(self.correct), boxes=self.boxes[idx])

    def hits(self, logits: torch.Tensor, k: int = 5) -> torch.Tensor:
        """For (N, 1000) logits of these photos: True where a correct class is among the top ``k``."""
        return top_k_hits(logits, self.correct, k)


def photos(names: Sequence[str] | None = None) -> Photos:
    """The real colour photos reachable offline (inside scikit-image, scikit-learn and matplotlib wheels).

    Eight photos listed in ``zfkit/photos.json`` with source, licence, the ImageNet classes that count
    as correct and the object's box; ``names`` picks some of them, in that order. A photo whose file
    changed since its box was measured (SHA-256) triggers a warning.
    """
    import importlib.util
    import json
    import warnings

    from PIL import Image


    entries = json.loads(PHOTOS_JSON.read_text(encoding="utf8"))["photos"]
    by_name = {e["name"]: e for e in entries}
    names = list(by_name) if names is None else list(names)
    unknown = [n for n in names if n not in by_name]
    if unknown or not names:
        raise ValueError(f"unknown photo name(s) {unknown}; choose from {', '.join(by_name)}")
    images = []
    for name in names:
        e = by_name[name]
        spec = importlib.util.find_spec(e["package"])
        path = Path(next(iter(spec.submodule_search_locations)), e["file"]) if spec else None
        if path is None or not path.is_file():
            why = "that package is not installed" if path is None else f"{path} is missing"
            raise DataNotFoundError(f"photo {name!r} is the file {e['file']} of the Python package {e['package']!r}, "
                                    f"but {why}; install it: pip install {e['pip']}")
        if hashlib.sha256(path.read_bytes()).hexdigest() != e["sha256"]:
            warnings.warn(f"{path} differs from the photo whose box and classes were measured; its box may be off",
                          stacklevel=2)
        with Image.open(path) as im:
            images.append(preprocess(im))
    chosen = [by_name[n] for n in names]
    correct = tuple(tuple(int(i) for i, _ in e["classes"]) for e in chosen)
    return Photos(torch.stack(images), torch.tensor([c[0] for c in correct]), imagenet_classes(),
                  names=tuple(names), sources=tuple(e["source"] for e in chosen),
                  licences=tuple(e["licence"] for e in chosen), notes=tuple(e.get("note", "") for e in chosen),
                  correct=correct, boxes=torch.tensor([e["box"] for e in chosen], dtype=torch.long))
