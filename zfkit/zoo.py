"""Named trained models: loaded from the cache, or trained deterministically on first use.

``load("zfnet-mini", "book")`` returns the trained network whether or not it was trained before,
so any chapter opened alone works. The cache is ``$ZFKIT_CACHE`` (default ``~/.cache/zfkit``)
``/<profile>/<name>/``: the whole :func:`zfkit.train.fit` run folder (``metrics.csv``, the
``epoch_XXX`` checkpoints of the feature-evolution chapter, ``last``) plus ``run.json`` with the
test metrics. An entry whose architecture or recipe no longer matches the code is retrained. A run is trained in a temporary folder beside its destination and renamed into place
when complete, so an interrupted training never leaves a half-written entry.

The models:

- ``zfnet-mini``, ``alexnet-mini``: the book's networks (Table 2 analogue), on Fashion-MNIST scaled
  to [0, 1] minus the mean image (``zfkit.data.fashion_mnist``'s default). Initialised with He's
  N(0, 2/fan_in), not the paper's N(0, 10^-2): measured on ZFNet-mini, N(0, 10^-2) shrinks the
  signal ~10^5-fold by the logits (std 6e-5; ZFNet's wider layers lose only ~10^2), gradients are
  10^-4 of the weights, and after 2 epochs on 10k images the error is still chance (90 %) with or
  without weight decay, for [0, 1] and [-128, 128] inputs, and with Krizhevsky's biases of 1.
  They train with the profile's own recipe fields (``zfkit.profiles.BOOK_RECIPE`` for book).
- ``zfnet-mini-short``, ``alexnet-mini-short``: the same networks on a short book budget (10,000
  training images, 2 epochs), so that Table 2's ensembles of five of each fit the book's time.
- ``zfnet-mini-clip``, ``zfnet-mini-noclip``: the Fig. 6 (a)/(c) pair (book budget: 20,000 images,
  3 epochs), identical but for
  feature-scale clipping, in the paper's regime: inputs in [-128, 128]
  (``fashion_mnist(..., pixel_range=255)``) and the paper's N(0, 10^-2) transplanted by fan-in
  (each layer's std is 10^-2 x sqrt(ZFNet fan-in / mini fan-in), so every layer has the signal
  gain of its Fig. 3 counterpart at initialisation). This trains (37 % validation error after 2
  epochs on 10k images, as He's init on [0, 1] inputs does). Weight decay is off for the pair:
  the paper states none, and decay would itself hold filters below the clipping radius, hiding
  what clipping prevents. Measured on 10k images: without clipping the largest first-layer
  filter's RMS grows 0.04 -> 0.11 in 6 epochs while the median stays at 0.06; the book profile
  trains 9x longer.

- ``zfnet-scenes``: a ZFNet-style colour network (:func:`zfkit.models.zfnet_scenes`, overlapping
  max-pools) distilled from EfficientNet-Lite0 on generated scenes of photographed objects on
  photographic backgrounds (:mod:`zfkit.distill`, budget :data:`zfkit.distill.CONFIGS`): the
  max-pooling network that has seen natural colour images, for the deconvnet's pictures. Its entry
  holds ``last``, an ``epoch_XXX`` snapshot per epoch from the untrained start (``epoch_000``, for
  Fig. 4; :func:`checkpoints`) and ``run.json`` (config, labelling and training seconds, held-out agreement).

``profile="paper"`` names ``zfnet`` and ``alexnet`` (ImageNet): too long to train implicitly, they
load from the cache once ``python -m zfkit train --profile paper --out $ZFKIT_CACHE/paper/zfnet``
has filled it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from . import data, distill, models, profiles
from .models import init_he
from .profiles import HEADLESS_ENV
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .storage import atomic_write_bytes, cache_dir
from .train import Recipe, cpu_name, evaluate, fit
from .scenes import catalogue_digest

__all__ = ["load", "metrics", "checkpoints", "prepare", "Prepared", "cache_dir", "entry_dir", "training_seconds",
           "training_notice", "NAMES", "PAPER_NAMES", "DISTILLED"]

# Fan-ins of ZFNet's eight weight layers (Fig. 3): 3x7x7, 96x5x5, 256x3x3, 384x3x3, 384x3x3, 6x6x256, 4096, 4096.
ZFNET_FAN_IN = {"conv1": 147, "conv2": 2400, "conv3": 2304, "conv4": 3456, "conv5": 3456,
                "fc6": 9216, "fc7": 4096, "fc8": 4096}
IMAGENET_MEAN_SAMPLE = 2000  # training images averaged for the per-pixel mean (the paper used all)


def init_zfnet_gain(model: nn.Module) -> None:
    """The paper's N(0, 10^-2) rescaled by sqrt(ZFNet fan-in / this fan-in), biases 0.

    Each layer then multiplies the signal by what its Fig. 3 counterpart did at initialisation.
    """
    for name, m in model.named_modules():
        name = name.rsplit(".", 1)[-1]
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 1e-2 * (ZFNET_FAN_IN[name] / m.weight[0].numel()) ** 0.5)
            nn.init.zeros_(m.bias)


def _describe_variant(change: dict) -> str:
    parts = []
    if change.get("remove"):
        parts.append(f"{', '.join(change['remove'])} removed")
    if "fc_scale" in change:
        parts.append(f"fc6/fc7 x{change['fc_scale']:g} wide")
    if "conv_scale" in change:
        parts.append("conv3-5 " + "/".join(f"x{v:.3g}" for v in change["conv_scale"].values()) + " wide")
    return " and ".join(parts)


def _apply_variant(model: models.ConvNet, remove: tuple[str, ...] = (), fc_scale: float | None = None,
                   conv_scale: dict[str, float] | None = None) -> models.ConvNet:
    """:func:`zfkit.models.variant` with widths given as factors of ``model``'s, so that a Table 3
    row keeps its proportions under the ``ci`` profile's half-width models."""
    widths = {c.name: c.out_channels for c in model.spec.convs}
    fc_width = None if fc_scale is None else max(1, round(model.spec.fc_widths[0] * fc_scale))
    conv_widths = {name: max(1, round(widths[name] * factor)) for name, factor in (conv_scale or {}).items()}
    return models.variant(model, remove=remove, fc_width=fc_width, conv_widths=conv_widths)


@dataclass(frozen=True)
class Entry:
    """How one named model is built and trained."""

    builder: str  # zfkit.models constructor
    pixel_range: float  # Fashion-MNIST pixels span [0, pixel_range] before the mean is subtracted
    init: Callable[[nn.Module], None]
    recipe: dict = field(default_factory=dict)  # Recipe fields that differ from the paper's defaults
    about: str = ""
    book_budget: tuple[int, int] | None = None  # (training images, epochs) in the book profile, if short
    variant: dict = field(default_factory=dict)  # a Table 3 change: see :func:`_apply_variant`
    classes: tuple[int, ...] | None = None  # train and test on these Fashion-MNIST classes only, relabelled 0..k-1
    shuffled_labels: bool = False  # the training split's labels randomly permuted (label-randomisation test)
    val_size: int | None = None  # validation images in the book profile, when fewer than the usual 5,000 will do


# A book-profile budget for the models a chapter trains several of (Table 2's ensembles, Fig. 6's
# pair): the full 55k x 16 epochs would take the whole 30-minute book several times over.
SHORT_BUDGET = (10_000, 2)
PAIR_BUDGET = (20_000, 3)
TRANSFER_BUDGET = (15_000, 3)  # the 5-class source model of the transfer chapter
# Few images, many small-batch epochs, nothing that fights memorisation (no augmentation, weight
# decay or clipping): measured, this ends at 6.6 % error on its own random training labels, while
# 2,000 images x 40 epochs at batch 128 stayed at 86 % (weights 3-8 % from their initial values).
SHUFFLED_BUDGET = (500, 100)

# Table 3's changes, as factors of the mini models' widths (Fig. 3: fc 4096 -> 2048 / 8192;
# conv3-5 384, 384, 256 -> 512, 1024, 512).
_FC_NARROW, _FC_WIDE = {"fc_scale": 0.5}, {"fc_scale": 2.0}
_CONV_WIDE = {"conv_scale": {"conv3": 4 / 3, "conv4": 8 / 3, "conv5": 2.0}}
TABLE3 = {  # zoo name -> (base model, variant arguments)
    "alexnet-mini-no-conv34": ("alexnet_mini", {"remove": ("conv3", "conv4")}),
    "alexnet-mini-no-fc7": ("alexnet_mini", {"remove": ("fc7",)}),
    "alexnet-mini-no-fc67": ("alexnet_mini", {"remove": ("fc6", "fc7")}),
    "alexnet-mini-no-conv34-fc67": ("alexnet_mini", {"remove": ("conv3", "conv4", "fc6", "fc7")}),
    "alexnet-mini-fc-narrow": ("alexnet_mini", _FC_NARROW),
    "alexnet-mini-fc-wide": ("alexnet_mini", _FC_WIDE),
    "zfnet-mini-fc-narrow": ("zfnet_mini", _FC_NARROW),
    "zfnet-mini-fc-wide": ("zfnet_mini", _FC_WIDE),
    "zfnet-mini-conv-wide": ("zfnet_mini", _CONV_WIDE),
    "zfnet-mini-conv-fc-wide": ("zfnet_mini", _FC_WIDE | _CONV_WIDE),
}

ENTRIES = {
    "zfnet-mini": Entry("zfnet_mini", 1.0, init_he, about="the book's ZFNet-mini (Fig. 3 topology at 32x32)"),
    "alexnet-mini": Entry("alexnet_mini", 1.0, init_he, about="ZFNet-mini with an AlexNet-style first layer (7x7/2)"),
    "zfnet-mini-short": Entry("zfnet_mini", 1.0, init_he, about="ZFNet-mini on a short budget (ensemble member)",
                              book_budget=SHORT_BUDGET),
    "alexnet-mini-short": Entry("alexnet_mini", 1.0, init_he, about="AlexNet-mini on a short budget (ensemble member)",
                                book_budget=SHORT_BUDGET),
    "zfnet-mini-clip": Entry("zfnet_mini", 255.0, init_zfnet_gain, {"weight_decay": 0.0},
                             "inputs in [-128, 128], with feature-scale clipping (Fig. 6c)", PAIR_BUDGET),
    "zfnet-mini-noclip": Entry("zfnet_mini", 255.0, init_zfnet_gain,
                               {"weight_decay": 0.0, "feature_scale_clipping": False},
                               "inputs in [-128, 128], without feature-scale clipping (Fig. 6a)", PAIR_BUDGET),
    **{name: Entry(base, 1.0, init_he, about=f"Table 3 row: {base.replace('_', '-')} with {_describe_variant(change)}",
                   book_budget=SHORT_BUDGET, variant=change) for name, (base, change) in TABLE3.items()},
    "zfnet-mini-fashion5": Entry("zfnet_mini", 1.0, init_he, about="ZFNet-mini trained on Fashion-MNIST classes 0-4 "
                                 "only (the transfer chapter's source)", book_budget=TRANSFER_BUDGET,
                                 classes=(0, 1, 2, 3, 4)),
    "zfnet-mini-shuffled": Entry("zfnet_mini", 1.0, init_he,
                                 {"augment": False, "plateau_patience": 1000, "batch_size": 32, "weight_decay": 0.0,
                                  "feature_scale_clipping": False},
                                 "ZFNet-mini that memorised randomly permuted labels (label-randomisation test)",
                                 SHUFFLED_BUDGET, shuffled_labels=True, val_size=500),
}
#: Zoo names trained by :mod:`zfkit.distill` (not on Fashion-MNIST): name -> what it is.
DISTILLED = {
    "zfnet-scenes": "a ZFNet-style colour network (overlapping max-pools) distilled from EfficientNet-Lite0 on "
                    "scenes of photographed objects on photographic backgrounds",
}
NAMES = tuple(ENTRIES) + tuple(DISTILLED)
PAPER_NAMES = ("zfnet", "alexnet")
_BOOK_VAL_SIZE = 5000  # held out of Fashion-MNIST's 60k training images for plateau annealing
RECORD = "run.json"  # a finished run's record: test metrics, history, recipe, architecture


@dataclass
class Prepared:
    """A freshly initialised model with its data and recipe: what :func:`load` and the CLI train."""

    name: str
    profile: profiles.Profile
    model: nn.Module
    train: Dataset
    val: Dataset
    test: Dataset
    recipe: Recipe
    pixel_range: float  # the inputs span [0, pixel_range] minus the mean image: feed the model the same
    test_ten_crop: int | None = None  # the paper's 10-crop test evaluation (paper profile)


def _check(name: str, profile) -> profiles.Profile:
    profile = profiles.get(profile)
    valid = PAPER_NAMES if profile.name == "paper" else NAMES
    if name not in valid:
        raise ValueError(f"unknown model {name!r} for profile {profile.name!r}; choose one of {', '.join(valid)}")
    return profile


def prepare(name: str, profile="book", seed: int | None = None, data_root: str | os.PathLike | None = None,
            epochs: int | None = None) -> Prepared:
    """Build the named model (deterministically initialised) with its data splits and recipe.

    Fashion-MNIST (ci, book): the validation set is held out of the training split (5,000 images
    for book; ``test_subset`` for ci, whose training images are then a ``train_subset`` drawn from
    the rest), and the test split is only scored at the end. ``seed`` (default: the profile's)
    changes the initialisation, data order and augmentation, not the split, so several seeds make
    an ensemble. ImageNet (paper): ``data_root`` or ``$ZFKIT_IMAGENET``.
    """
    profile = _check(name, profile)
    seed = profile.seed if seed is None else seed
    if profile.name == "paper":
        return _prepare_paper(name, profile, seed, data_root, epochs)
    if name in DISTILLED:
        raise ValueError(f"{name} is distilled from EfficientNet-Lite0 on scenes, not trained on Fashion-MNIST; "
                         f"zoo.load({name!r}, {profile.name!r}) trains it (zfkit.distill)")
    entry = ENTRIES[name]
    model, recipe = _model_and_recipe(name, profile, seed, epochs)
    full, test = _fashion_mnist(None if data_root is None else str(data_root), profile.input_size, entry.pixel_range)
    if entry.classes:
        full, test = data.keep_classes(full, entry.classes), data.keep_classes(test, entry.classes)
    if entry.shuffled_labels:  # the test labels stay true: its accuracy shows what was learned (nothing)
        shuffled = full.targets[torch.randperm(len(full), generator=torch.Generator().manual_seed(profile.seed + 1))]
        full = data.TensorImages(full.images, shuffled, full.classes, full.mean, full.pixel_range)
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(profile.seed))
    n_val = profile.test_subset or _BOOK_VAL_SIZE
    val, train = full.subset(order[:n_val].sort().values), full.subset(order[n_val:].sort().values)
    budget = entry.book_budget if profile.name == "book" else None
    if budget and entry.val_size:  # 100 epochs would spend most of their time validating 5,000 images
        val = data.subset(val, entry.val_size, seed=profile.seed)
    if profile.train_subset or budget:
        train = data.subset(train, profile.train_subset or budget[0], seed=profile.seed)
    test = data.subset(test, profile.test_subset or len(test), seed=profile.seed, stratified=bool(profile.test_subset))
    return Prepared(name, profile, model, train, val, test, recipe, entry.pixel_range)


def _model_and_recipe(name: str, profile: profiles.Profile, seed: int, epochs: int | None = None) -> tuple[nn.Module, Recipe]:
    """The named mini model, initialised from ``seed`` (the caller's random state is left alone), and its recipe."""
    entry = ENTRIES[name]
    budgeted = bool(entry.book_budget) and profile.name == "book"
    if budgeted:
        epochs = epochs or entry.book_budget[1]
    epochs = epochs or profile.epochs
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        num_classes = len(entry.classes) if entry.classes else profile.num_classes
        model = getattr(models, entry.builder)(num_classes=num_classes, in_channels=profile.in_channels,
                                               width=profile.width)
        if entry.variant:
            model = _apply_variant(model, **entry.variant)
        entry.init(model)
    profile_fields = {} if budgeted else _profile_recipe(profile, epochs)
    recipe = Recipe(**{"epochs": epochs, "batch_size": profile.batch_size, "seed": seed, "device": profile.device,
                       **profile_fields, **entry.recipe})
    return model, recipe


def _profile_recipe(profile: profiles.Profile, epochs: int) -> dict:
    """The profile's recipe fields, its final anneal keeping its share of a run of ``epochs``."""
    chosen = dict(profile.recipe)
    if chosen.get("final_anneal_epochs"):
        share = round(chosen["final_anneal_epochs"] * epochs / profile.epochs)
        chosen["final_anneal_epochs"] = min(share, epochs - 1)
    return chosen


@lru_cache(maxsize=1)
def _fashion_mnist(root: str | None, size: int, pixel_range: float) -> tuple[data.TensorImages, data.TensorImages]:
    """Both splits, kept for the next call: an ensemble trains several models on the same data.
    Callers receive subsets (copies), never these tensors themselves."""
    return (data.fashion_mnist("train", root, size=size, pixel_range=pixel_range),
            data.fashion_mnist("test", root, size=size, pixel_range=pixel_range))


def _prepare_paper(name: str, profile: profiles.Profile, seed: int, data_root, epochs: int | None) -> Prepared:
    root = data_root or os.environ.get("ZFKIT_IMAGENET")
    if not root:
        raise data.DataNotFoundError("the paper profile trains on ImageNet: pass --data /path/to/imagenet (CLI), "
                                     "data_root= (Python) or set ZFKIT_IMAGENET; the folder needs train/ and val/")
    mean = _imagenet_mean(Path(root), seed)
    splits = {split: _Scaled(data.imagenet(root, split, mean=mean), 255.0) for split in ("train", "val", "val256")}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = getattr(models, name)(num_classes=profile.num_classes, in_channels=profile.in_channels)
    recipe = Recipe(epochs=epochs or profile.epochs, batch_size=profile.batch_size, seed=seed, device=profile.device,
                    workers=min(8, os.cpu_count() or 1))
    return Prepared(name, profile, model, splits["train"], splits["val"], splits["val256"], recipe, 255.0,
                    test_ten_crop=profile.input_size)


class _Scaled(Dataset):
    """Multiplies a dataset's images by ``factor``: the paper's inputs span [-128, 128], not [-0.5, 0.5]."""

    def __init__(self, dataset: Dataset, factor: float):
        self.dataset, self.factor = dataset, factor

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        x, y = self.dataset[i]
        return x * self.factor, y


def _imagenet_mean(root: Path, seed: int) -> torch.Tensor:
    """Per-pixel mean (3, 256, 256) in [0, 1] units of a seeded sample of training images (§3)."""
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    if not (root / "train").is_dir():
        raise data.DataNotFoundError(f"ImageNet training folder {root / 'train'} not found; the folder needs "
                                     "train/ and val/ with one subfolder per class")
    centre = v2.Compose([v2.ToImage(), v2.Resize(256, antialias=True), v2.CenterCrop(256),
                         v2.ToDtype(torch.float32, scale=True)])
    images = ImageFolder(str(root / "train"), transform=centre)
    sample = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:IMAGENET_MEAN_SAMPLE]
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(images, sample.tolist()), batch_size=64,
                                         num_workers=min(8, os.cpu_count() or 1))
    return sum(x.sum(0) for x, _ in loader) / len(sample)


# ---------------------------------------------------------------- the cache

def entry_dir(name: str, profile="book", seed: int | None = None) -> Path:
    """Where the named model's run lives (``<name>-seed<k>`` for a non-default seed)."""
    profile = _check(name, profile)
    suffix = "" if seed is None or seed == profile.seed else f"-seed{seed}"
    return cache_dir() / profile.name / f"{name}{suffix}"


def load(name: str, profile="book", seed: int | None = None, progress: bool = True) -> nn.Module:
    """The trained model ``name`` for ``profile``, in eval mode on the CPU.

    Loaded from the cache when present and intact (hashes verified); otherwise trained
    deterministically (announced by :func:`training_notice`, then a progress bar) and stored.
    Several seeds (``seed=``) give an ensemble.
    """
    folder = entry_dir(name, profile, seed)
    profile = profiles.get(profile)
    if profile.name == "paper":
        model = _load_cached(folder)
        if model is None:
            raise ValueError(f"{folder} holds no trained {name}; the paper profile trains for days on GPUs: run "
                             f"`python -m zfkit train --profile paper --model {name} --out {folder}` (torchrun for several GPUs)")
        return model.eval()
    if name in DISTILLED:
        return _load_distilled(name, folder, profile, profile.seed if seed is None else seed, progress)
    model, recipe = _model_and_recipe(name, profile, profile.seed if seed is None else seed)
    expected = {"arch": model.spec.to_dict(), "recipe": asdict(recipe), "pixel_range": ENTRIES[name].pixel_range}
    model = _load_cached(folder, expected)
    if model is None:
        run = prepare(name, profile, seed)
        if progress and not os.environ.get(HEADLESS_ENV):  # a headless run would store the line in its notebook
            print(training_notice(run, folder), flush=True)
        _train_into(folder, run, progress)
        model = _load_cached(folder)
    return model.eval()


def training_seconds(run: Prepared, threads: int | None = None) -> float | None:
    """Expected seconds to train ``run`` on ``threads`` CPU threads (default: torch's), None when unknown.

    The profile's ``train_cost``, measured for zfnet-mini on :data:`zfkit.profiles.TRAIN_COST_CPU`,
    times the run's images and epochs, over the threads: linear in all three, which another CPU,
    bf16 units or a busy machine will not match exactly. The short-budget models measured 0.4-0.7
    times that cost per image on that CPU, so theirs is an upper estimate.
    """
    cost = run.profile.train_cost
    if cost is None:
        return None
    return cost * len(run.train) * run.recipe.epochs / 1000 / (threads or torch.get_num_threads())


def _about(seconds: float) -> str:
    return f"about {max(1, round(seconds))} s" if seconds < 90 else f"about {round(seconds / 60)} min"


def training_notice(run: Prepared, folder: Path, threads: int | None = None) -> str:
    """The sentence :func:`load` prints before training: which model, how long here, where it is kept.

    A chapter's first run may train for minutes inside the kernel; a bare progress bar does not say why.
    """
    threads = threads or torch.get_num_threads()
    seconds = training_seconds(run, threads)
    took = "" if seconds is None else (f": {_about(seconds)} on this machine's {threads} thread{'s' * (threads > 1)} "
                                      f"(scaled from {profiles.TRAIN_COST_CPU})")
    return f"Training {run.name} (profile {run.profile.name}) first{took}; cached for next time in {folder}."


def metrics(name: str, profile="book", seed: int | None = None) -> dict:
    """The run's record (training is triggered if needed): per-epoch ``history``, ``test`` metrics,
    ``train_minutes``, ``recipe``, ``pixel_range`` of the inputs the model expects."""
    load(name, profile, seed, progress=True)
    return json.loads((entry_dir(name, profile, seed) / RECORD).read_text())


def checkpoints(name: str, profile="book", seed: int | None = None) -> dict[int, Path]:
    """Epoch -> checkpoint folder of the scheduled snapshots (for the feature-evolution chapter);
    open one with ``zfkit.train.load_checkpoint(path).build()``."""
    load(name, profile, seed, progress=True)
    folder = entry_dir(name, profile, seed)
    return {int(p.name.removeprefix("epoch_")): p for p in sorted(folder.glob("epoch_[0-9][0-9][0-9]"))}


def _load_cached(folder: Path, expected: dict | None = None) -> nn.Module | None:
    """The cached model, or None when absent. An entry that is damaged, or stale (its architecture,
    recipe or input range differs from ``expected``), is removed with a warning, for retraining."""
    if not (folder / RECORD).is_file():
        if folder.exists():  # a folder without a record is not a finished run (e.g. an older layout)
            warnings.warn(f"discarding incomplete zoo entry {folder}; it will be retrained", RuntimeWarning, stacklevel=3)
            _discard(folder)
        return None
    try:
        record = json.loads((folder / RECORD).read_text())
        if "recipe" in record:  # fields added to Recipe since this run was trained read as their defaults
            record["recipe"] = asdict(Recipe(**record["recipe"]))
        stale = [key for key, value in (expected or {}).items() if record.get(key) != json.loads(json.dumps(value))]
        if stale:
            raise CheckpointError(f"stale: {' and '.join(stale)} changed since it was trained")
        return load_checkpoint(folder / "last").build()
    except (CheckpointError, FileNotFoundError, TypeError, ValueError) as e:
        warnings.warn(f"discarding zoo entry {folder} ({e}); it will be retrained", RuntimeWarning, stacklevel=3)
        _discard(folder)
        return None


def _build_entry(folder: Path, build: Callable[[Path], dict]) -> None:
    """Fill a temporary sibling folder with ``build(tmp)`` (which returns the run's record), write the
    record, then rename the folder into place: an interrupted build never leaves a half entry."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".tmp-{folder.name}-{uuid.uuid4().hex[:8]}")
    try:
        record = build(tmp)
        atomic_write_bytes(tmp / RECORD, json.dumps(record, indent=1).encode())
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished the same entry first: keep theirs
            if not (folder / RECORD).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _train_into(folder: Path, run: Prepared, progress: bool) -> None:
    """Train in a temporary sibling folder, record the test metrics, then rename it into place."""
    def build(tmp: Path) -> dict:
        started = time.perf_counter()
        result = fit(run.model, run.train, run.val, run.recipe, tmp, progress=progress)
        minutes = (time.perf_counter() - started) / 60
        test = evaluate(result.model, run.test, run.recipe.eval_batch_size, ten_crop=run.test_ten_crop)
        return run_record(run, result.history, test, minutes)

    _build_entry(folder, build)


def _distill_config(profile: profiles.Profile, seed: int) -> distill.Config:
    return dataclasses.replace(distill.config(profile.name), seed=seed)


def distill_seconds(cfg: distill.Config, threads: int | None = None) -> float:
    """Expected seconds to distill ``cfg`` on ``threads`` threads: :data:`DISTILL_COST` scaled linearly
    in scenes, scene-epochs and threads (an estimate: two threads rarely give exactly twice one's speed)."""
    threads = threads or torch.get_num_threads()
    label, train = DISTILL_COST
    return (label * cfg.scenes + train * cfg.scenes * cfg.epochs) / 1000 / threads


#: Thread-seconds per 1,000 scenes drawn at 128 px and labelled by Lite0, and per 1,000 scenes of a
#: student epoch at 96 px (bf16 autocast): a zfnet-scenes book run (16,000 scenes: 160 s labelling,
#: 12 epochs: 196 s) on 2 threads of an Intel Xeon with AMX. A CPU without bf16 units takes longer.
DISTILL_COST = (20.0, 2.05)


def _load_distilled(name: str, folder: Path, profile: profiles.Profile, seed: int, progress: bool) -> nn.Module:
    """``zfnet-scenes``: from the cache when its config and architecture still match, else distilled into it."""
    cfg = _distill_config(profile, seed)
    snapshots = list(range(cfg.epochs + 1))  # every epoch's student, the untrained start included (Fig. 4)
    expected = {"arch": distill.student(cfg).spec.to_dict(), "config": dataclasses.asdict(cfg), "snapshots": snapshots,
                "scenes": catalogue_digest()}  # the objects and backgrounds it learnt from
    model = _load_cached(folder, expected)
    if model is None:
        if progress and not os.environ.get(HEADLESS_ENV):
            threads = torch.get_num_threads()
            print(f"Training {name} (profile {profile.name}) first: {_about(distill_seconds(cfg, threads))} on this "
                  f"machine's {threads} thread{'s' * (threads > 1)} (scaled from a 2-core Intel Xeon, bf16); "
                  f"cached for next time in {folder}.", flush=True)

        def build(tmp: Path) -> dict:
            def snapshot(epoch: int, model: nn.Module) -> None:
                save_checkpoint(tmp / f"epoch_{epoch:03d}", model, epoch=epoch)

            result = distill.distill(cfg, progress=progress, on_epoch=snapshot)
            save_checkpoint(tmp / "last", result.model, extra={"config": dataclasses.asdict(cfg)})
            return {"name": name, "profile": profile.name, "seed": seed, "about": DISTILLED[name],
                    "arch": result.model.spec.to_dict(), "snapshots": snapshots, "scenes": expected["scenes"],
                    **result.record(cfg)}

        _build_entry(folder, build)
        model = _load_cached(folder)
    return model.eval()


def run_record(run: Prepared, history: list[dict], test: dict, minutes: float) -> dict:
    """What ``run.json`` says about a finished run (written last: its presence marks the run complete)."""
    spec = getattr(run.model, "spec", None)
    return {"name": run.name, "profile": run.profile.name, "seed": run.recipe.seed,
            "about": ENTRIES[run.name].about if run.name in ENTRIES else run.name, "pixel_range": run.pixel_range,
            "arch": spec.to_dict() if spec is not None else None, "recipe": asdict(run.recipe),
            "train_minutes": minutes, "cpu": cpu_name(), "threads": torch.get_num_threads(),
            "test": {"accuracy": 1 - test["top1_err"], **test},
            "sizes": {"train": len(run.train), "val": len(run.val), "test": len(run.test)}, "history": history}


def _discard(folder: Path) -> None:
    """Move aside, then delete: a half-deleted entry is never mistaken for an intact one."""
    trash = folder.with_name(f".tmp-discard-{folder.name}-{uuid.uuid4().hex[:8]}")
    os.replace(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)
