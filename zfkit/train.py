"""Training with the paper's recipe (§3): SGD, feature-scale clipping, plateau annealing, checkpoints.

:func:`fit` trains any classifier on any map-style dataset; zfkit's in-memory :class:`~zfkit.data.TensorImages`
take a fast path (batches sliced from one tensor, augmentation as batched tensor ops). A run
folder holds ``metrics.csv`` (one row per epoch), ``epoch_XXX`` checkpoints on the paper's schedule
(for the feature-evolution chapter) and ``last`` (for resuming).

Reproducibility: every random draw of epoch ``e`` comes from generators seeded by
``(recipe.seed, e)`` (data order, shifts, flips) and ``(recipe.seed, e, rank)`` (dropout), so the
epoch stored in a checkpoint *is* the random state to resume from, for every rank of a DDP run
alike. On CPU a resumed run therefore ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import math
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

from . import distributed
from .checkpoint import TMP_PREFIX, Checkpoint, atomic_write_bytes, latest_checkpoint, load_checkpoint, save_checkpoint
from .distributed import World
from .models import ArchSpec

__all__ = [
    "Recipe",
    "FitResult",
    "DevicePlan",
    "fit",
    "evaluate",
    "per_image_errors",
    "plan_device",
    "cpu_has_fast_bf16",
    "cpu_name",
    "clip_filters",
    "translate_flip",
    "load_checkpoint",
    "save_checkpoint",
    "latest_checkpoint",
    "PAPER_CHECKPOINT_EPOCHS",
    "PRECISIONS",
    "METRICS_COLUMNS",
]

PAPER_EPOCHS = 70
PRECISIONS = ("auto", "bf16", "fp32")
PAPER_CHECKPOINT_EPOCHS = (1, 2, 5, 10, 20, 30, 40, 64)  # the epochs shown in Fig. 4
METRICS_COLUMNS = ("epoch", "train_loss", "train_top1_err", "val_loss", "val_top1_err", "val_top5_err",
                   "lr", "images_per_s")
# Recipe fields that may change when a run is resumed: they do not alter the arithmetic.
_RESUMABLE_CHANGES = ("epochs", "device", "eval_batch_size", "workers")


# ---------------------------------------------------------------- the recipe

@dataclass(frozen=True)
class Recipe:
    """The paper's §3 training choices, plus the few it leaves open (documented per field).

    - ``lr`` 1e-2, ``momentum`` 0.9, ``batch_size`` 128: as stated in §3. ``batch_size`` is the
      *global* mini-batch of one SGD update; under torchrun each of W processes takes 1/W of it.
    - ``weight_decay`` 5e-4: not stated by Zeiler & Fergus, whose implementation was built on
      Krizhevsky et al.'s cuda-convnet; that paper uses 5e-4, applied to weights, not biases.
    - ``feature_scale_clipping``/``clip_radius``: after each update, every convolutional filter
      whose RMS (over its in_channels x k x k weights) exceeds the radius 0.1 is rescaled to it.
    - ``plateau_factor``/``plateau_patience``: the paper anneals "manually when the validation error
      plateaus"; we divide the learning rate by 10 after ``plateau_patience`` epoch(s) without a
      gain in validation top-1 error. Patience 1 by default, because short runs must act on a
      plateau within the run; the book's 16-epoch main run uses 2 (``zfkit.profiles.BOOK_RECIPE``),
      since the validation error of 5,000 images moves by ±0.4 points from noise alone.
    - ``final_anneal_epochs``: the last N epochs run at no more than ``plateau_factor`` x ``lr``.
      The paper's 70-epoch runs end annealed; a short run whose validation error is still falling
      may never trigger the plateau rule and would stop at its starting rate. A run the plateau
      rule has already annealed is left as it is (annealing twice in a row left the book's model
      training at 10^-4 for its last 4 epochs). 0 (the default) leaves annealing to the plateau
      rule alone.
    - ``augment``: the paper's random crops and flips, for small images: each training image is
      shifted by up to ``max_shift`` pixels (zero padding + crop) and mirrored with probability
      1/2 when ``flip``. Applies to in-memory tensor datasets; other datasets (ImageNet folders)
      augment in their own transform.
    - ``device``: ``"auto"`` picks CUDA when present; channels_last on every device.
    - ``precision``: ``"auto"`` trains under bf16 autocast on CUDA and on CPUs where it is faster
      (those with bf16 matrix instructions, :func:`cpu_has_fast_bf16`), in fp32 elsewhere;
      ``"bf16"`` and ``"fp32"`` force the choice. Weights, optimizer state and evaluation outside
      ``fit`` stay fp32. A run may resume on a machine where ``"auto"`` resolves differently.
    """

    epochs: int = 10
    lr: float = 1e-2
    momentum: float = 0.9
    batch_size: int = 128
    weight_decay: float = 5e-4
    feature_scale_clipping: bool = True
    clip_radius: float = 0.1
    plateau_factor: float = 0.1
    plateau_patience: int = 1
    final_anneal_epochs: int = 0
    augment: bool = True
    max_shift: int = 2
    flip: bool = True
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    eval_batch_size: int = 500
    workers: int = 0  # DataLoader workers for datasets that are not in-memory tensors

    def __post_init__(self):
        for name in ("epochs", "batch_size", "eval_batch_size"):
            _check(name, getattr(self, name), int, lambda v: v > 0, "a positive integer")
        for name in ("max_shift", "plateau_patience", "final_anneal_epochs", "workers", "seed"):
            _check(name, getattr(self, name), int, lambda v: v >= 0, "a non-negative integer")
        _check("lr", self.lr, (int, float), lambda v: v > 0 and math.isfinite(v), "a positive number")
        _check("clip_radius", self.clip_radius, (int, float), lambda v: v > 0, "a positive number")
        _check("momentum", self.momentum, (int, float), lambda v: 0 <= v < 1, "in [0, 1)")
        _check("weight_decay", self.weight_decay, (int, float), lambda v: v >= 0, "a non-negative number")
        _check("plateau_factor", self.plateau_factor, (int, float), lambda v: 0 < v < 1, "in (0, 1)")
        if self.final_anneal_epochs >= self.epochs:
            raise ValueError(f"Recipe.final_anneal_epochs ({self.final_anneal_epochs}) must be smaller than epochs "
                             f"({self.epochs}): at least one epoch has to run at the starting rate")
        if self.precision not in PRECISIONS:
            raise ValueError(f"Recipe.precision must be one of {', '.join(map(repr, PRECISIONS))}, "
                             f"got {self.precision!r}")
        if not isinstance(self.device, str):
            raise ValueError(f"Recipe.device must be a string such as 'auto', 'cpu' or 'cuda', got {self.device!r}")

    @property
    def checkpoint_epochs(self) -> tuple[int, ...]:
        """The paper's Fig. 4 epochs (1, 2, 5, 10, 20, 30, 40, 64 of 70) scaled to this run, plus the last."""
        scaled = {max(1, round(e * self.epochs / PAPER_EPOCHS)) for e in PAPER_CHECKPOINT_EPOCHS}
        return tuple(sorted(scaled | {self.epochs}))

    def differences(self, other: "Recipe") -> list[str]:
        """Fields that differ from ``other``, ignoring those that may change on resume."""
        return [f"{f.name}: {getattr(other, f.name)!r} -> {getattr(self, f.name)!r}" for f in fields(self)
                if f.name not in _RESUMABLE_CHANGES and getattr(self, f.name) != getattr(other, f.name)]


def _check(name: str, value, types, ok, wanted: str) -> None:
    if isinstance(value, bool) or not isinstance(value, types) or not ok(value):
        raise ValueError(f"Recipe.{name} must be {wanted}, got {value!r}")


# ---------------------------------------------------------------- device

@dataclass(frozen=True)
class DevicePlan:
    """Where to train and with which speed-ups: bf16 autocast (see ``Recipe.precision``); channels_last.

    channels_last on the CPU too: measured here (2 cores) it trains ZFNet-mini 1.1-1.2x faster than
    NCHW (``benchmarks/train_throughput.py``) and ZFNet-224 1.3x: max-pooling has a vectorised
    channels-last kernel, and :mod:`zfkit.lrn`'s GEMM over channels reads them contiguously.
    """

    device: torch.device
    autocast_dtype: torch.dtype | None
    channels_last: bool

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


def plan_device(name: str = "auto", local_rank: int = 0, precision: str = "auto") -> DevicePlan:
    """``"auto"``: CUDA (this process's ``local_rank`` GPU) when available, else CPU.

    ``precision`` as in :class:`Recipe`: ``"auto"`` autocasts to bf16 on CUDA and on CPUs with
    bf16 matrix instructions (:func:`cpu_has_fast_bf16`).
    """
    cuda = torch.cuda.is_available()
    if name == "auto":
        name = f"cuda:{local_rank}" if cuda else "cpu"
    elif name == "cuda":
        name = f"cuda:{local_rank}"
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"Recipe.device {name!r} is not a device name ('auto', 'cpu', 'cuda', 'cuda:1', …)") from e
    if device.type == "cuda" and not cuda:
        raise ValueError(f"Recipe.device is {name!r} but CUDA is not available here; use 'auto' (CUDA when "
                         "present, else the CPU) or 'cpu'")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"Recipe.device is {name!r} but this machine has {torch.cuda.device_count()} GPU(s), "
                         f"cuda:0 … cuda:{torch.cuda.device_count() - 1}; use 'cuda' (one GPU per torchrun process)")
    bf16 = precision == "bf16" or (precision == "auto" and _bf16_is_faster(device))
    return DevicePlan(device, torch.bfloat16 if bf16 else None, channels_last=True)


def _bf16_is_faster(device: torch.device) -> bool:
    """``precision="auto"``'s rule: bf16 on every CUDA GPU, and on CPUs with bf16 matrix instructions."""
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_fast_bf16())


# oneDNN ISA caps (``ONEDNN_MAX_CPU_ISA``) below AVX512_CORE_BF16: oneDNN then has no bf16 instructions.
_ONEDNN_ISAS_WITHOUT_BF16 = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
                                       "AVX512_CORE_VNNI"})


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """Whether bf16 autocast trains faster than fp32 on this CPU: ``precision="auto"``'s CPU rule.

    True when the CPU has bf16 matrix instructions (AVX512-BF16 or AMX-BF16) and oneDNN, which runs
    the convolutions and matrix products, may use them: it is built in, and ``ONEDNN_MAX_CPU_ISA``
    (or the older ``DNNL_MAX_CPU_ISA``) does not cap it below ``AVX512_CORE_BF16``.

    Detected rather than timed: timing a step costs seconds in every process, and on a shared
    2-core machine the same step varied 5x between runs, so a timed choice would flip. The rule
    rests on measurements of ZFNet-mini training, bf16 / fp32 throughput, median of adjacent pairs:
    1.49x on an AMD EPYC (Zen 4: AVX512-BF16, no AMX; ``benchmarks/train_throughput.py``, 2
    threads) and 1.27x on the Intel CPU with AMX that built the book (the paper's ZFNet at 224:
    1.09x on the EPYC). On the same EPYC, one thread: 0.55x with oneDNN capped at ``AVX512_CORE``
    (AVX-512 without bf16 instructions, as on Skylake), 0.10x capped at ``AVX2``; 1.76x with
    ``ATEN_CPU_CAPABILITY=avx2``, which caps ATen's element-wise kernels, not oneDNN, so it is not
    consulted. ARM's bf16 instructions are not measured yet: fp32 there. Cached: oneDNN, too, reads
    its cap once per process.
    """
    caps = torch.cpu.get_capabilities()
    units = bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))
    return units and torch.backends.mkldnn.is_available() and _onednn_allows_bf16(os.environ)


def _onednn_allows_bf16(env: Mapping[str, str]) -> bool:
    """False when the environment caps oneDNN below its bf16 instructions (its names, any case)."""
    cap = env.get("ONEDNN_MAX_CPU_ISA") or env.get("DNNL_MAX_CPU_ISA") or "ALL"
    return cap.strip().upper() not in _ONEDNN_ISAS_WITHOUT_BF16


def cpu_name() -> str:
    """This machine's CPU model (``/proc/cpuinfo``'s model name on Linux, else ``platform.processor()``).

    Training times and the speed-up of bf16 autocast depend on it: state it beside any time.
    """
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"

# ---------------------------------------------------------------- the paper's two training-time operations

@torch.no_grad()
def clip_filters(model: nn.Module, radius: float = 0.1) -> None:
    """Feature-scale clipping (§3): rescale each conv filter whose RMS exceeds ``radius`` to ``radius``.

    The RMS is taken over one filter's in_channels x k x k weights. This is what stops a few
    first-layer filters from dominating when inputs span [-128, 128] (Fig. 6a vs 6c).
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            w = module.weight
            rms = w.pow(2).mean(dim=tuple(range(1, w.dim())), keepdim=True).sqrt()
            w.mul_((radius / rms).clamp(max=1.0))


def translate_flip(images: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Shift image i by ``shifts[i] = (dy, dx)`` pixels (zero fill) and mirror it where ``flips[i]``.

    One gather for the whole batch: the small-image analogue of the paper's random crops and flips
    (a shift by d within a zero border of ``max_shift`` is a crop of the padded image).
    """
    b, c, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4)
    dev = images.device
    rows = torch.arange(h, device=dev) + (max_shift - shifts[:, :1])  # (b, h)
    cols = torch.where(flips[:, None], torch.arange(w - 1, -1, -1, device=dev), torch.arange(w, device=dev))
    cols = cols + (max_shift - shifts[:, 1:])
    out = padded[torch.arange(b, device=dev)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (b, h, w, c)
    return out.permute(0, 3, 1, 2).contiguous()


# ---------------------------------------------------------------- seeding

def _seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from (recipe seed, epoch, stream): no two streams share a sequence."""
    return int(np.random.SeedSequence(list(parts)).generate_state(2, np.uint64)[0] >> np.uint64(1))


def _generator(*parts: int) -> torch.Generator:
    return torch.Generator().manual_seed(_seed(*parts))


_ORDER_STREAM, _DROPOUT_STREAM = 0, 1


# ---------------------------------------------------------------- data

def _as_tensors(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(images, targets) for in-memory datasets (zfkit's TensorImages, TensorDataset), else None."""
    images, targets = getattr(dataset, "images", None), getattr(dataset, "targets", None)
    if isinstance(images, torch.Tensor) and isinstance(targets, torch.Tensor):
        return images, targets
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
        return dataset.tensors[0], dataset.tensors[1]
    return None


def _check_dataset(dataset, role: str) -> None:
    if dataset is None:
        raise ValueError(f"the {role} dataset is missing (got None); pass e.g. zfkit.data.fashion_mnist('train')")
    try:
        n = len(dataset)
    except TypeError:
        raise ValueError(f"the {role} dataset must be a map-style dataset with a length, got {type(dataset).__name__}") from None
    if n == 0:
        raise ValueError(f"the {role} dataset is empty; check the data folder or the subset size")


def _check_labels(dataset: Dataset, model: nn.Module, role: str) -> None:
    """In-memory labels outside a zfkit model's classes would fail deep inside the loss (on CUDA as
    a device-side assert that kills the process), so they are refused up front."""
    tensors = _as_tensors(dataset)
    spec = getattr(model, "spec", None)
    if tensors is None or not isinstance(spec, ArchSpec) or len(tensors[1]) == 0:
        return
    low, high, n = int(tensors[1].min()), int(tensors[1].max()), spec.num_classes
    if low < 0 or high >= n:
        raise ValueError(f"the {role} dataset has labels {low} … {high} but the model has {n} classes (0 … {n - 1}); "
                         f"build the model with num_classes={high + 1} or relabel the data (zfkit.data.keep_classes)")


def _batches(dataset: Dataset, index_batches: list[torch.Tensor], plan: DevicePlan, workers: int,
             generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(images, labels) on the training device for each tensor of dataset indices."""
    tensors = _as_tensors(dataset)
    if tensors is not None:
        source = ((tensors[0][idx], tensors[1][idx]) for idx in index_batches)
    else:
        source = DataLoader(dataset, batch_sampler=[idx.tolist() for idx in index_batches], num_workers=workers,
                            pin_memory=plan.device.type == "cuda", generator=generator)
    for x, y in source:
        layout = plan.memory_format if x.dim() == 4 else torch.preserve_format
        yield (x.to(plan.device, non_blocking=True, memory_format=layout),
               torch.as_tensor(y).to(plan.device, non_blocking=True))


# ---------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, batch_size: int = 500, device: str | DevicePlan | None = None,
             ten_crop: int | None = None, workers: int = 0, world: World | None = None) -> dict[str, float]:
    """Loss, top-1 and top-5 error of ``model`` on ``dataset``.

    With ``ten_crop=size`` each image is scored by the softmax averaged over its 10 crops (4
    corners + centre, and their mirrors; §3), the paper's test-time protocol. ``device`` defaults
    to where the model's weights are; a device name evaluates in fp32 (the same numbers whatever
    the CPU's bf16 units), a :class:`DevicePlan` under its autocast (as :func:`fit` validates).
    Under torchrun each process scores 1/W of the images and the sums are all-reduced.
    """
    from .data import ten_crop as crops

    _check_dataset(dataset, "evaluation")
    _check_labels(dataset, model, "evaluation")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if device is None:
        device = str(next(model.parameters()).device)
    plan = device if isinstance(device, DevicePlan) else plan_device(device, precision="fp32")
    world = distributed.current() if world is None else world
    was_training = model.training
    model.eval()
    mine = torch.arange(world.rank, len(dataset), world.size)
    totals = torch.zeros(4, dtype=torch.float64)  # loss sum, top-1 errors, top-5 errors, count
    try:
        for x, y in _batches(dataset, list(mine.split(batch_size)), plan, workers):
            with plan.autocast():
                if ten_crop is None:
                    log_p = F.log_softmax(model(x).float(), dim=1)
                else:
                    b = len(x)
                    views = crops(x, ten_crop).flatten(0, 1).contiguous(memory_format=plan.memory_format)
                    log_p = F.softmax(model(views).float(), dim=1).view(b, 10, -1).mean(1).log()
            top = log_p.topk(min(5, log_p.shape[1]), dim=1).indices
            hit = top == y[:, None]
            totals += torch.tensor([F.nll_loss(log_p, y, reduction="sum").item(), (~hit[:, 0]).sum().item(),
                                    (~hit.any(1)).sum().item(), len(y)], dtype=torch.float64)
    finally:
        model.train(was_training)
    loss, top1, top5, n = distributed.all_reduce_sum(totals, world).tolist()
    return {"loss": loss / n, "top1_err": top1 / n, "top5_err": top5 / n}


@torch.no_grad()
def per_image_errors(model: nn.Module, dataset: Dataset, top: Iterable[int] = (1,), batch_size: int = 500,
                     device: str | None = None) -> dict[int, torch.Tensor]:
    """Which images ``model`` gets wrong: for each k in ``top``, a (n,) bool tensor in dataset order,
    True where the label is not among the k most probable classes.

    :func:`evaluate` gives error rates; comparing two models on the same images (an ensemble and
    its members) needs each image's outcome, so that the noise can be paired over the images
    (:func:`zfkit.verdicts.paired_bootstrap_noise`). Scored as :func:`evaluate` scores, in fp32, so
    the mean of ``errors[1]`` is its ``top1_err``.
    """
    _check_dataset(dataset, "evaluation")
    _check_labels(dataset, model, "evaluation")
    ks = sorted(set(top))
    if not ks or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in ks):
        raise ValueError(f"top must list positive ints (e.g. (1, 5) for top-1 and top-5 errors), got {top!r}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    plan = plan_device(device or str(next(model.parameters()).device), precision="fp32")
    was_training = model.training
    model.eval()
    misses = []
    try:
        for x, y in _batches(dataset, list(torch.arange(len(dataset)).split(batch_size)), plan, workers=0):
            log_p = F.log_softmax(model(x).float(), dim=1)
            hit = log_p.topk(min(ks[-1], log_p.shape[1]), dim=1).indices == y[:, None]
            misses.append(torch.stack([~hit[:, :k].any(1) for k in ks], 1).cpu())
    finally:
        model.train(was_training)
    misses = torch.cat(misses)
    return {k: misses[:, i] for i, k in enumerate(ks)}


# ---------------------------------------------------------------- fit

@dataclass
class FitResult:
    """A finished (or resumed-and-finished) run: the trained model and one metrics dict per epoch."""

    model: nn.Module
    history: list[dict]
    out_dir: Path

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}

    def checkpoint(self, epoch: int | None = None) -> Path:
        """Folder of the checkpoint after ``epoch`` (None: the last one)."""
        return self.out_dir / ("last" if epoch is None else f"epoch_{epoch:03d}")


def fit(
    model: nn.Module,
    train: Dataset,
    val: Dataset,
    recipe: Recipe,
    out_dir: str | os.PathLike,
    checkpoints: Iterable[int] | None = None,
    resume: bool = False,
    progress: bool = True,
) -> FitResult:
    """Train ``model`` on ``train`` with the paper's recipe, validating on ``val`` after each epoch.

    ``checkpoints``: epochs after which ``epoch_XXX`` is kept (default ``recipe.checkpoint_epochs``);
    ``last`` is rewritten every epoch. ``resume=True`` continues from the newest intact checkpoint
    in ``out_dir`` (starting afresh when there is none). A non-finite loss raises
    ``FloatingPointError`` before the update, leaving the checkpoints as they were. Launched by
    torchrun, training runs with DistributedDataParallel over all processes. Each epoch reseeds
    torch's global generator (dropout draws from it) from the recipe's seed and the epoch.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(recipe, Recipe):
        raise ValueError(f"recipe must be a zfkit.train.Recipe, got {type(recipe).__name__}")
    _check_dataset(train, "training")
    _check_dataset(val, "validation")
    _check_labels(train, model, "training")
    _check_labels(val, model, "validation")
    keep = _checkpoint_epochs(checkpoints, recipe)
    out_dir = _writable_dir(out_dir)

    plan = plan_device(recipe.device, int(os.environ.get("LOCAL_RANK", 0)), recipe.precision)
    if plan.device.type == "cuda":
        torch.cuda.set_device(plan.device)
    world = distributed.join(plan.device)
    if len(train) < world.size:
        raise ValueError(f"the training dataset has {len(train)} images, fewer than the {world.size} processes")
    model.to(plan.device, memory_format=plan.memory_format)
    optimizer = _sgd(model, recipe)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=recipe.plateau_factor, patience=recipe.plateau_patience)

    history, start = [], 0
    if world.is_main:
        _remove_leftovers(out_dir)
    checkpoint = _resume_point(out_dir, resume, recipe)
    if checkpoint is not None:
        checkpoint.load_into(model)
        optimizer.load_state_dict(checkpoint.optimizer_state)
        scheduler.load_state_dict(checkpoint.scheduler_state)
        history, start = checkpoint.extra["history"], checkpoint.epoch
        if world.is_main:  # a kill between checkpoint and CSV may have left the CSV a row behind or ahead
            _write_metrics(out_dir, history)
    net = DistributedDataParallel(model, device_ids=[plan.device.index] if plan.device.type == "cuda" else None) \
        if world.distributed else model

    steps = len(_global_batches(len(train), recipe.batch_size, world))
    bar = tqdm(total=steps * recipe.epochs, initial=steps * start, unit="batch", dynamic_ncols=True,
               disable=not (progress and world.is_main))
    try:
        for epoch in range(start + 1, recipe.epochs + 1):
            bar.set_description(f"epoch {epoch}/{recipe.epochs}")
            if epoch == recipe.epochs - recipe.final_anneal_epochs + 1:  # unless the plateau rule already did
                for group in optimizer.param_groups:
                    group["lr"] = min(group["lr"], recipe.lr * recipe.plateau_factor)
            lr = optimizer.param_groups[0]["lr"]
            train_stats = _train_epoch(net, model, train, recipe, epoch, plan, world, optimizer, bar, out_dir)
            val_stats = evaluate(model, val, recipe.eval_batch_size, plan, workers=recipe.workers, world=world)
            scheduler.step(val_stats["top1_err"])
            row = {"epoch": epoch, **train_stats, **{f"val_{k}": v for k, v in val_stats.items()}, "lr": lr}
            history.append({k: row[k] for k in METRICS_COLUMNS})
            bar.set_postfix(val_err=f"{val_stats['top1_err']:.4f}", lr=f"{lr:g}")
            if world.is_main:
                _write_metrics(out_dir, history)
                extra = {"recipe": asdict(recipe), "history": history}
                names = ["last"] + ([f"epoch_{epoch:03d}"] if epoch in keep else [])
                for name in names:
                    save_checkpoint(out_dir / name, model, optimizer, scheduler, epoch, extra)
    finally:
        bar.close()
    return FitResult(model, history, out_dir)


def _train_epoch(net: nn.Module, model: nn.Module, train: Dataset, recipe: Recipe, epoch: int, plan: DevicePlan,
                 world: World, optimizer: torch.optim.Optimizer, bar, out_dir: Path) -> dict[str, float]:
    """One pass over ``train`` in this epoch's seeded order; returns the all-reduced running metrics."""
    order_gen = _generator(recipe.seed, epoch, _ORDER_STREAM)
    torch.manual_seed(_seed(recipe.seed, epoch, _DROPOUT_STREAM, world.rank))  # dropout, dataset transforms
    n = len(train)
    order = torch.randperm(n, generator=order_gen)
    shifts = torch.randint(-recipe.max_shift, recipe.max_shift + 1, (n, 2), generator=order_gen)
    flips = torch.rand(n, generator=order_gen) < (0.5 if recipe.flip else 0.0)
    augment = recipe.augment and _as_tensors(train) is not None

    global_batches = _global_batches(n, recipe.batch_size, world)
    positions = [p[world.rank::world.size] for p in global_batches]  # this process's share of each batch
    net.train()
    totals = torch.zeros(3, dtype=torch.float64)  # loss sum, top-1 errors, count
    errors = torch.zeros((), dtype=torch.long, device=plan.device)
    started = time.perf_counter()
    batches = _batches(train, [order[p] for p in positions], plan, recipe.workers, order_gen)
    for step, ((x, y), pos, whole) in enumerate(zip(batches, positions, global_batches), 1):
        if augment:
            x = translate_flip(x, shifts[pos].to(x.device), flips[pos].to(x.device), recipe.max_shift)
            x = x.contiguous(memory_format=plan.memory_format)
        with plan.autocast():
            logits = net(x)
        loss = F.cross_entropy(logits.float(), y)
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(
                f"training diverged: the loss became {value} at epoch {epoch}, step {step}. Lower Recipe.lr, keep "
                f"feature_scale_clipping on, or check the inputs for NaN/inf. The checkpoints in {out_dir} are "
                "untouched: the newest holds the last good weights.")
        optimizer.zero_grad(set_to_none=True)
        # DDP averages gradients over processes; this scale makes that average the global batch mean
        (loss * (len(y) * world.size / len(whole))).backward()
        optimizer.step()
        if recipe.feature_scale_clipping:
            clip_filters(model, recipe.clip_radius)
        totals[0] += value * len(y)
        totals[2] += len(y)
        errors += (logits.argmax(1) != y).sum()
        bar.update()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{value:.3f}", refresh=False)
    seconds = time.perf_counter() - started
    totals[1] = errors.item()
    loss_sum, err, count = distributed.all_reduce_sum(totals, world).tolist()
    return {"train_loss": loss_sum / count, "train_top1_err": err / count, "images_per_s": count / seconds}


def _global_batches(n: int, batch_size: int, world: World) -> list[torch.Tensor]:
    """Positions in the epoch's order of each SGD mini-batch (of ``batch_size``, the last one shorter).

    Each is split across the W processes; a last batch smaller than W is dropped so that every
    process has work (never happens for a single process).
    """
    return [p for p in torch.arange(n).split(batch_size) if len(p) >= world.size]


def _sgd(model: nn.Module, recipe: Recipe) -> torch.optim.SGD:
    """SGD with momentum; weight decay on weights only, as in cuda-convnet (biases are not decayed)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1]
    return torch.optim.SGD([{"params": decay, "weight_decay": recipe.weight_decay},
                            {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr, momentum=recipe.momentum)


def _checkpoint_epochs(checkpoints: Iterable[int] | None, recipe: Recipe) -> set[int]:
    if checkpoints is None:
        return set(recipe.checkpoint_epochs)
    epochs = set(checkpoints)
    bad = sorted(e for e in epochs if isinstance(e, bool) or not isinstance(e, int) or not 1 <= e <= recipe.epochs)
    if bad:
        raise ValueError(f"checkpoints must be epochs between 1 and {recipe.epochs}, got {bad}")
    return epochs


def _writable_dir(out_dir: str | os.PathLike) -> Path:
    """Create ``out_dir`` and prove it writable now, rather than after the first hour of training."""
    out_dir = Path(out_dir).expanduser()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test-"):
            pass
    except OSError as e:
        raise ValueError(f"cannot write to out_dir {out_dir} ({e.strerror or e}); choose a writable folder") from e
    return out_dir


def _remove_leftovers(out_dir: Path) -> None:
    """Delete the temporary folders/files of saves that a kill interrupted (never complete checkpoints)."""
    for path in out_dir.glob(f"{TMP_PREFIX}*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _resume_point(out_dir: Path, resume: bool, recipe: Recipe) -> Checkpoint | None:
    """The checkpoint to continue from; refuses to silently overwrite a run that exists."""
    if not resume:
        if (out_dir / "metrics.csv").exists() or any((p / "meta.json").exists() for p in out_dir.iterdir() if p.is_dir()):
            raise ValueError(f"{out_dir} already holds a training run; pass resume=True (CLI: --resume) to "
                             "continue it, or choose an empty folder")
        return None
    checkpoint = latest_checkpoint(out_dir)
    if checkpoint is None:
        return None
    saved = Recipe(**checkpoint.extra["recipe"])
    changed = recipe.differences(saved)
    if changed:
        raise ValueError(f"cannot resume {checkpoint.path} with a different recipe ({'; '.join(changed)}); "
                         f"only {', '.join(_RESUMABLE_CHANGES)} may change")
    return checkpoint


def _write_metrics(out_dir: Path, history: list[dict]) -> None:
    """Rewrite ``metrics.csv`` whole from the history (which checkpoints carry), so resuming can
    never duplicate or lose a row."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=METRICS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_bytes(out_dir / "metrics.csv", text.getvalue().encode())
