"""A max-pooling network that has seen natural colour images: ZFNet-style student distilled from Lite0.

Why: EfficientNet-Lite0, the book's only ImageNet classifier, has no max-pooling, so its deconvnet
never reads the image (every photo gets the same checkerboard at the top stages). ZFNet's pictures
need switches. No ImageNet training set is reachable offline, but Lite0 is: it labels generated
scenes (:func:`zfkit.data.scenes`, photographed objects on photographic backgrounds) with soft
targets, and a ZFNet-style student (:func:`zfkit.models.zfnet_scenes`, ReLU, overlapping 3x3/2
max-pools, layers ``conv1 … conv5``) learns to match them (Hinton et al. 2015).

The recipe, each part for a reason:

- **Label once, train several epochs.** Drawing a scene (PIL) and running Lite0 cost about as
  much as several student steps, so scenes are drawn and labelled once (logits and a Lite0 feature
  map kept in memory, images as uint8) and the student sees them for several epochs, flipped at
  random (a flip changes neither Lite0's class nor, flipped too, its map).
- **Teacher sees the object alone, the student the scene** (``teacher_view="object"``): Lite0
  labels each scene's object pasted on grey, so the targets say nothing of the wallpaper behind
  it and the background becomes a nuisance to ignore. Measured (16,000 scenes, 6 epochs, 300
  held-out scenes): taught Lite0's view of the whole scene, the student's conv5 top-9 sets showed
  one wallpaper in 59 % of their places (untrained: 44 %) and its conv3 projections put less energy
  on the object than the untrained net's (1.47 against 2.77 x the mask's share); taught the object
  alone, 28 % and 3.39.
- **Teacher sees more pixels than the student.** Lite0 agrees with the objects' correct classes
  far more often at 128 pixels than at 96 (measured on scenes: top-5 48 % against 31 %), so scenes
  are drawn at ``teacher_size`` and shrunk (antialiased) to the student's ``size``.
- **Soft targets at a temperature** (``temperature`` T, loss T² x KL(p_T || p_S), Hinton's scaling so
  its gradient does not shrink with T): the teacher's whole ranking, not just its top class.
- **A feature hint** (FitNets, Romero et al. 2015): the student's conv5 map, through a 1x1
  adapter used only in training, regresses Lite0's ``stage5`` map (standardised, pooled to conv5's
  grid). Thousands of numbers per scene instead of one distribution: far more signal per labelled
  scene, and it tells conv5 *where* things are, which is what a projection shows. Weighted 30
  against the soft-target loss: measured on the book's 16,000 scenes x 12 epochs (300 held-out
  scenes, legibility on 40 of them), hint weights 1 / 3 / 10 / 30 / 100 gave held-out top-1
  agreement 16.7 / 20.0 / 25.3 / 25.0 / 26.0 % and conv5 legibility 1.52 / 1.65 / 1.47 / 2.01 /
  1.98 (untrained 1.98, ± about 0.2); top-5 overlap on 140 of the GCompris photos was 4.4 / 3.1 /
  3.6 % at 10 / 30 / 100. The weight was chosen on the same held-out scenes the book reports (a
  mild selection bias). Swapping each training scene's background for another wallpaper (half the
  time; the teacher saw the object alone, so its label still holds) changed nothing (top-1 15.3 %,
  conv5 1.44). Nor did a 128-pixel student (1.6x the training time): top-1 27.0 %, conv5
  legibility 2.66 against the same net untrained at 128 pixels 2.68, top-5 overlap on the 252 real
  photos 2.8 %.
- **conv1 starts small and learns by SGD** (``conv1_init`` x He's std; ``conv1_sgd``): Adam scales
  each weight's step by its own gradient RMS, which whitens a first-layer filter's update into
  pixel noise, and a full-size random init never fades in a few thousand steps. Measured (6,000
  scenes, 1 epoch): Adam or a full-size init left conv1 noise; SGD at 0.1 from a small init gave
  smooth colour blobs and coarse light/dark gradients.
- **AdamW with warm-up and cosine decay**: reaches in a few epochs what SGD needs tens for.

The measurements the book reports live here too: :func:`agreement` with the teacher (held-out
scenes, real photos), :func:`legibility` of deconvnet projections (their energy on the object's mask
against the mask's area) and :func:`purity` of top-9 sets, each against the same net untrained
(:func:`untrained`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import models
from .data import photos, unlabelled_photos
from .deconv import Deconvnet
from .efficientnet import normalize, unnormalize
from .scenes import Scenes, objects, scenes
from .topk import layer_activations, topk_layers
from .train import DevicePlan, _generator, cpu_name, plan_device

__all__ = ["Config", "CONFIGS", "config", "Sizes", "SIZES", "sizes", "Labelled", "Result", "student", "untrained", "draw_scenes",
           "label", "teacher_view", "distillation_loss", "hint_loss", "fit_student", "distill", "held_out", "resize", "real_photos",
           "agreement", "agreement_on", "legibility", "legibility_scores", "layer_legibility", "purity", "scan_purity", "layer_purity", "LAYERS"]

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
_VAL_SEED = 999_983  # the held-out scenes' seed: training chunks use seeds below 10**6 * (seed + 1)


@dataclass(frozen=True)
class Config:
    """What a distillation run draws, labels and trains (a profile's budget)."""

    size: int = 96  # the student's input side (a multiple of 16)
    teacher_size: int = 128  # scenes are drawn and labelled at this side, then shrunk for the student
    scenes: int = 16_000  # training scenes, each drawn and labelled once
    val_scenes: int = 500  # held-out scenes (another seed) for the agreement in the record
    chunk: int = 500  # scenes drawn and labelled together (memory; one progress step)
    epochs: int = 12  # the distillation loss still fell by 4 % an epoch at 6: 12 epochs, 100 s more
    batch_size: int = 128
    lr: float = 2e-3  # AdamW's peak learning rate
    warmup: float = 0.3  # epochs of linear warm-up before the cosine decay
    weight_decay: float = 0.05  # AdamW's decoupled decay (weights, not biases)
    conv1_lr: float = 50.0  # conv1's learning rate as a factor of ``lr`` (SGD's: peak 0.1)
    conv1_sgd: bool = True  # conv1 by SGD with momentum: Adam's per-weight scaling whitens its gradient into noise
    conv1_init: float = 0.1  # conv1's initial std as a factor of He's
    temperature: float = 3.0
    hint: str | None = "stage5"  # the Lite0 stage whose map conv5 regresses; None: soft targets only
    hint_weight: float = 30.0  # against T² x KL; 1 -> 30 took held-out top-1 agreement from 16.7 to 25.0 %
    jitter: float = 0.1  # brightness/contrast/saturation jitter of the student's input (fraction)
    width: float = 1.0
    dropout: float = 0.3
    scale: tuple[float, float] = (0.35, 0.8)  # the object's longer side as a share of the frame
    all_objects: bool = True  # every photographed object (352), not only those with an ImageNet class
    seed: int = 0
    precision: str = "auto"  # bf16 autocast where the CPU has bf16 units (zfkit.train.plan_device)
    teacher_view: str = "object"  # what Lite0 labels: the scene's "object" alone on grey, or the whole "scene"


#: The distillation budget per profile (``book``: 16,000 scenes, 12 epochs; ``ci``: seconds).
CONFIGS = {
    "ci": Config(size=64, teacher_size=64, scenes=96, val_scenes=16, chunk=48, epochs=2, batch_size=32,
                 width=0.25, lr=3e-3),
    # 16,000 scenes x 12 epochs: 155 s labelling + 192 s training on 2 threads of an Intel Xeon with AMX
    # (bf16); zfkit.zoo.DISTILL_COST. Held-out top-1 agreement with Lite0 (seeing the object): 25.0 %.
    "book": Config(),
}


@dataclass(frozen=True)
class Sizes:
    """How much of chapter 12 a profile runs (the student is small; Lite0's feature visualisation is the cost)."""

    held_out: int  # held-out scenes for agreement, top-9 search and purity
    legibility: int  # scenes whose projections are scored against their object's mask
    shown: int  # scenes in the figure of projections per layer
    units: int  # units given a feature visualisation, per network
    viz_size: int  # Lite0's feature-visualisation side (the student's is its input size)
    viz_steps: int
    photos: int | None = None  # GCompris photographs added to the real-photo agreement (None: all 244)


SIZES = {"ci": Sizes(held_out=24, legibility=4, shown=2, units=2, viz_size=32, viz_steps=8, photos=8),
         "book": Sizes(held_out=300, legibility=40, shown=6, units=4, viz_size=128, viz_steps=256)}


def sizes(profile: str) -> Sizes:
    """Chapter 12's sizes for ``profile`` (``paper`` runs the ``book`` sizes)."""
    name = getattr(profile, "name", profile)
    if name not in (*SIZES, "paper"):
        raise ValueError(f"unknown profile {name!r}; choose one of ci, book, paper")
    return SIZES.get(name, SIZES["book"])


def config(profile: str) -> Config:
    """The distillation budget of ``profile`` (``ci`` or ``book``)."""
    name = getattr(profile, "name", profile)
    if name not in CONFIGS:
        raise ValueError(f"no distillation budget for profile {name!r}; choose one of {', '.join(CONFIGS)}")
    return CONFIGS[name]


# ---------------------------------------------------------------- the student

def student(cfg: Config, seed: int | None = None) -> models.ConvNet:
    """The untrained student of ``cfg``: He's init (conv1 ``cfg.conv1_init`` times smaller), seeded;
    the global random state is left alone."""
    generator = torch.Generator().manual_seed(cfg.seed if seed is None else seed)
    model = models.zfnet_scenes(input_size=cfg.size, width=cfg.width, dropout=cfg.dropout)
    models.init_he(model, generator)
    with torch.no_grad():
        model.features.conv1.weight.mul_(cfg.conv1_init)
    return model


def untrained(model: models.ConvNet, seed: int = 0) -> models.ConvNet:
    """The control: ``model``'s architecture with He's random weights (``seed``), never trained."""
    control = models.build(model.spec)
    return models.init_he(control, torch.Generator().manual_seed(seed)).eval()


# ---------------------------------------------------------------- scenes and teacher labels

def _pixels(images: torch.Tensor) -> torch.Tensor:
    """Model-space images (Lite0's normalisation) -> uint8 pixels: a quarter of the memory."""
    return (unnormalize(images) * 255).round().to(torch.uint8)


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Images (N, C, H, W) to ``size`` x ``size``, bilinear and antialiased (a no-op at that size)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def draw_scenes(cfg: Config, n: int, seed: int) -> Scenes:
    """``n`` scenes at ``cfg.teacher_size`` from ``seed`` (see :func:`zfkit.data.scenes`)."""
    items = objects(classified=not cfg.all_objects)
    return scenes(n, size=cfg.teacher_size, seed=seed, scale=cfg.scale, items=items)


@dataclass
class Labelled:
    """Scenes with what the teacher said: ``pixels`` (N, 3, s, s) uint8 at the student's size,
    ``logits`` (N, 1000) and ``hints`` (N, C, h, w) (None without a hint), both float16."""

    pixels: torch.Tensor
    logits: torch.Tensor
    hints: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.pixels)


def teacher_view(drawn: Scenes, view: str) -> torch.Tensor:
    """What the teacher labels: the ``"scene"``, or its ``"object"`` alone on mid-grey (model space).

    Labelling the object alone makes the background a nuisance the student must learn to ignore:
    its targets no longer say which wallpaper a scene was drawn on.
    """
    if view == "scene":
        return drawn.images
    if view == "object":
        grey = normalize(torch.full((1, 3, 1, 1), 0.5))
        return torch.where(drawn.masks[:, None], drawn.images, grey)
    raise ValueError(f"teacher_view must be 'scene' or 'object', got {view!r}")


def _teacher_outputs(teacher: nn.Module, images: torch.Tensor, hint: str | None,
                     plan: DevicePlan) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Lite0's logits and the output of its child ``hint`` (a stage), in one pass."""
    x, kept = images.to(plan.device, memory_format=plan.memory_format), None
    with torch.inference_mode(), plan.autocast():
        for name, module in teacher.named_children():
            x = module(x)
            if name == hint:
                kept = x.float()
    return x.float().cpu(), None if kept is None else kept.cpu()


def hint_grid(cfg: Config) -> int:
    """The side of the student's conv5 map, where the hint is compared."""
    return _conv5_side(student(dataclasses.replace(cfg, width=0.05)))


def _conv5_side(model: models.ConvNet) -> int:
    with torch.no_grad():
        x = torch.zeros(1, model.in_channels, model.input_size, model.input_size)
        for name, layer in model.features.named_children():
            x = layer(x)
            if name == "relu5":
                return x.shape[-1]
    raise ValueError("the student has no relu5")


def label(cfg: Config, teacher: nn.Module, n: int, seed: int, progress: bool = True,
          desc: str = "labelling scenes") -> Labelled:
    """Draw ``n`` scenes in chunks (chunk ``c`` from seed ``10**6 * (seed + 1) + c``) and label them with ``teacher``.

    Chunks keep memory bounded and give the progress bar its steps; each chunk's scenes depend only
    on its seed, so a run repeats bit for bit.
    """
    plan = plan_device("cpu", precision=cfg.precision)
    teacher = teacher.eval().to(memory_format=plan.memory_format)
    side = hint_grid(cfg) if cfg.hint else None
    pixels, logits, hints = [], [], []
    chunks = range(math.ceil(n / cfg.chunk))
    for c in tqdm(chunks, desc=desc, unit="chunk", disable=not progress, leave=False):
        drawn = draw_scenes(cfg, min(cfg.chunk, n - c * cfg.chunk), 10**6 * (seed + 1) + c)
        out, kept = _teacher_outputs(teacher, teacher_view(drawn, cfg.teacher_view), cfg.hint, plan)
        pixels.append(_pixels(resize(drawn.images, cfg.size)))
        logits.append(out.half())
        if kept is not None:
            hints.append(F.adaptive_avg_pool2d(kept, side).half())
    return Labelled(torch.cat(pixels), torch.cat(logits), torch.cat(hints) if hints else None)


# ---------------------------------------------------------------- losses

def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      temperature: float = 3.0) -> torch.Tensor:
    """T² x KL(softmax(t/T) || softmax(s/T)), averaged over the batch (Hinton et al. 2015).

    The T² keeps the gradient's size independent of T, so the soft targets weigh the same at any temperature.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * temperature**2


def hint_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error to the teacher's map standardised per channel over the batch and grid.

    Standardising makes the hint's weight independent of each Lite0 channel's scale.
    """
    t = target.float()
    dims = (0, 2, 3)
    t = (t - t.mean(dims, keepdim=True)) / (t.std(dims, keepdim=True) + 1e-3)
    return F.mse_loss(predicted.float(), t)


# ---------------------------------------------------------------- training

def _conv5(model: models.ConvNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits and the rectified conv5 map, in one pass."""
    kept = None
    for name, layer in model.features.named_children():
        x = layer(x)
        if name == "relu5":
            kept = x
    return model.classifier(model.flatten(x)), kept


def _jitter(x: torch.Tensor, amount: float, g: torch.Generator) -> torch.Tensor:
    """Per-image brightness, contrast and saturation changes of up to ``amount`` (in model space)."""
    if amount <= 0:
        return x
    n = x.shape[0]

    def draw():
        return 1 + amount * (2 * torch.rand(n, 1, 1, 1, generator=g) - 1)

    grey = x.mean(1, keepdim=True)
    x = grey + (x - grey) * draw()  # saturation
    mean = x.mean((1, 2, 3), keepdim=True)
    x = mean + (x - mean) * draw()  # contrast
    return x + (draw() - 1) * 2  # brightness: model space spans [-1, 1]


def _optimizers(model: nn.Module, adapter: nn.Module | None, cfg: Config) -> list[torch.optim.Optimizer]:
    """AdamW for every layer; conv1's weights by SGD with momentum when ``cfg.conv1_sgd``.

    Adam divides each weight's step by that weight's gradient RMS, which makes every pixel of a
    first-layer filter move by about the same amount whatever its signal: the filters fill with
    high-frequency noise. SGD keeps the gradient's own spectrum, dominated by the low frequencies
    of natural images. Each group carries ``lr_factor``, its learning rate over the schedule's.
    """
    conv1, decay, no_decay = [], [], []
    for name, p in model.named_parameters():
        (conv1 if name.endswith("conv1.weight") else decay if p.dim() > 1 else no_decay).append(p)
    if adapter is not None:
        decay.extend(adapter.parameters())
    groups = [{"params": decay, "lr_factor": 1.0, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "lr_factor": 1.0, "weight_decay": 0.0}]
    first = {"params": conv1, "lr_factor": cfg.conv1_lr, "weight_decay": cfg.weight_decay}
    if not cfg.conv1_sgd:
        return [torch.optim.AdamW([first, *groups], lr=cfg.lr)]
    first["weight_decay"] = 5e-4  # coupled L2, as in the paper's SGD
    return [torch.optim.AdamW(groups, lr=cfg.lr), torch.optim.SGD([first], lr=cfg.lr, momentum=0.9)]


def _lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def fit_student(model: models.ConvNet, data: Labelled, cfg: Config, progress: bool = True,
                on_epoch: Callable[[int, models.ConvNet], None] | None = None) -> list[dict]:
    """Train ``model`` in place on labelled scenes; returns one row per epoch (mean losses).

    ``on_epoch(epoch, model)`` is called before training (epoch 0) and after each epoch: the zoo
    keeps those snapshots for Fig. 4 (how the features evolve). Deterministic: batches, flips and
    jitter of epoch ``e`` come from a generator seeded by ``(cfg.seed, e)``; on one machine and
    thread count a run repeats bit for bit.
    """
    with torch.random.fork_rng(devices=[]):  # dropout draws from the global generator: seed it, then restore it
        torch.manual_seed(cfg.seed + 1)
        return _fit(model, data, cfg, progress, on_epoch or (lambda epoch, model: None))


def _fit(model: models.ConvNet, data: Labelled, cfg: Config, progress: bool,
         on_epoch: Callable[[int, models.ConvNet], None]) -> list[dict]:
    plan = plan_device("cpu", precision=cfg.precision)
    model.train().to(memory_format=plan.memory_format)
    adapter = None
    if cfg.hint:
        if data.hints is None:
            raise ValueError(f"the config names the hint {cfg.hint!r} but the labelled scenes carry no hint maps")
        g0 = torch.Generator().manual_seed(cfg.seed + 7)
        adapter = nn.Conv2d(model.spec.convs[-1].out_channels, data.hints.shape[1], 1)
        models.init_he(adapter, g0)
    opts = _optimizers(model, adapter, cfg)
    n, bs = len(data), cfg.batch_size
    steps_per_epoch = n // bs if n >= bs else 1
    total, warmup = steps_per_epoch * cfg.epochs, max(1, round(cfg.warmup * steps_per_epoch))
    history, step = [], 0
    bar = tqdm(total=total, desc="distilling", unit="batch", disable=not progress, leave=False)
    on_epoch(0, model)
    for epoch in range(1, cfg.epochs + 1):
        g = _generator(cfg.seed, epoch)
        order = torch.randperm(n, generator=g)
        sums = Counter()
        for b in range(steps_per_epoch):
            idx = order[b * bs:(b + 1) * bs]
            x = normalize(data.pixels[idx].float() / 255)
            flip = torch.rand(len(idx), generator=g) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
            x = _jitter(x, cfg.jitter, g).contiguous(memory_format=plan.memory_format)
            for group in (g for opt in opts for g in opt.param_groups):
                group["lr"] = _lr_at(step, total, warmup, cfg.lr) * group["lr_factor"]
            with plan.autocast():
                logits, c5 = _conv5(model, x)
                kd = distillation_loss(logits, data.logits[idx], cfg.temperature)
                loss = kd
                if adapter is not None:
                    target = data.hints[idx].float()
                    target = torch.where(flip.view(-1, 1, 1, 1), target.flip(-1), target)
                    hl = hint_loss(adapter(c5), target)
                    loss = loss + cfg.hint_weight * hl
                    sums["hint"] += float(hl.detach())
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in opts:
                opt.step()
            sums["kd"] += float(kd.detach())
            step += 1
            bar.update()
        history.append({"epoch": epoch, **{f"{k}_loss": v / steps_per_epoch for k, v in sums.items()}})
        on_epoch(epoch, model)
    bar.close()
    model.eval().to(memory_format=torch.contiguous_format)
    return history


@dataclass
class Result:
    """A finished distillation: the student (eval mode) and what the run measured."""

    model: models.ConvNet
    history: list[dict]
    label_seconds: float
    train_seconds: float
    agreement: dict  # on the held-out scenes

    def record(self, cfg: Config) -> dict:
        """The JSON-able part: config, costs, where they were measured, agreement."""
        return {"config": dataclasses.asdict(cfg), "history": self.history,
                "label_seconds": self.label_seconds, "train_seconds": self.train_seconds,
                "train_minutes": (self.label_seconds + self.train_seconds) / 60, "cpu": cpu_name(),
                "threads": torch.get_num_threads(), "held_out": self.agreement}


def distill(cfg: Config, teacher: nn.Module | None = None, progress: bool = True,
            on_epoch: Callable[[int, models.ConvNet], None] | None = None) -> Result:
    """Draw and label ``cfg.scenes`` scenes with Lite0, train the student on them (``on_epoch`` as in
    :func:`fit_student`), score it on held-out scenes."""
    if teacher is None:
        teacher = models.efficientnet_lite0(pretrained=True)
    started = time.perf_counter()
    data = label(cfg, teacher, cfg.scenes, cfg.seed, progress)
    labelled = time.perf_counter()
    model = student(cfg)
    history = fit_student(model, data, cfg, progress, on_epoch)
    trained = time.perf_counter()
    teacher_scenes, student_scenes = held_out(cfg, cfg.val_scenes)
    scores = agreement_on(model, teacher, student_scenes.images, teacher_view(teacher_scenes, cfg.teacher_view),
                          cfg.precision)
    return Result(model, history, labelled - started, trained - labelled, scores)


# ---------------------------------------------------------------- measurements

def held_out(cfg: Config, n: int, seed: int = _VAL_SEED, classified: bool = True,
             teacher_size: int | None = None) -> tuple[Scenes, Scenes]:
    """``n`` scenes no training run draws: at the teacher's size, and the same shrunk to the student's
    (masks resampled by area, kept where at least half covered; boxes scaled).

    ``classified=True`` uses only the objects with an ImageNet class, whose names group the top-9 sets;
    ``teacher_size`` overrides ``cfg.teacher_size`` (224 for the analyses that need Lite0's own input size).
    """
    big = scenes(n, size=teacher_size or cfg.teacher_size, seed=seed, scale=cfg.scale, items=objects(classified=classified))
    factor = cfg.size / big.images.shape[-1]
    masks = F.interpolate(big.masks[:, None].float(), size=(cfg.size, cfg.size), mode="area")[:, 0] >= 0.5
    small = dataclasses.replace(big, images=resize(big.images, cfg.size), masks=masks,
                                boxes=(big.boxes.float() * factor).round().long())
    return big, small


def real_photos(limit: int | None = None) -> torch.Tensor:
    """The real photos the student's agreement with Lite0 is measured on, in Lite0's input space: chapter 11's
    eight, then at most ``limit`` of GCompris' unlabelled photographs (all 244 by default). Whole photos
    with their own backgrounds, none pasted into a scene; no label is needed to compare two models."""
    return torch.cat([photos().images, unlabelled_photos(limit=limit).images])


def agreement(student_logits: torch.Tensor, teacher_logits: torch.Tensor, k: int = 5) -> dict:
    """How often the student says what the teacher says: ``top1`` (same argmax), ``topk_overlap``
    (mean share of the teacher's top k among the student's top k) and ``teacher_top1_in_topk``.

    Chance for 1000 classes: 0.001, 0.005 and 0.005.
    """
    if student_logits.shape != teacher_logits.shape or student_logits.dim() != 2:
        raise ValueError(f"expected two (N, classes) logits of one shape, got {tuple(student_logits.shape)} and "
                         f"{tuple(teacher_logits.shape)}")
    s_top = student_logits.topk(k, dim=1).indices
    t_top = teacher_logits.topk(k, dim=1).indices
    overlap = (s_top[:, :, None] == t_top[:, None, :]).any(2).float().sum(1) / k
    return {"top1": float((s_top[:, 0] == t_top[:, 0]).float().mean()),
            f"top{k}_overlap": float(overlap.mean()),
            f"teacher_top1_in_top{k}": float((s_top == t_top[:, :1]).any(1).float().mean()), "n": len(s_top)}


@torch.no_grad()
def agreement_on(model: nn.Module, teacher: nn.Module, images: torch.Tensor, teacher_images: torch.Tensor | None = None,
                 precision: str = "fp32", k: int = 5) -> dict:
    """:func:`agreement` on images in Lite0's input space: the student sees ``images`` resized to its
    input size, the teacher ``teacher_images`` (default: ``images`` as they are)."""
    teacher_images = images if teacher_images is None else teacher_images
    plan = plan_device("cpu", precision=precision)
    with plan.autocast():
        s = torch.cat([model.eval()(resize(images[i:i + 256], model.input_size)).float()
                       for i in range(0, len(images), 256)])
    t = torch.cat([_teacher_outputs(teacher, teacher_images[i:i + 128], None, plan)[0]
                   for i in range(0, len(teacher_images), 128)])
    return agreement(s, t, k)


def legibility(projections: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The share of each projection's energy on the object's mask, over the mask's share of the image.

    ``projections`` (B, K, C, H, W) (as :meth:`zfkit.deconv.Deconvnet.project` returns) or (B, C, H, W);
    ``masks`` (B, H, W) bool. Energy is the squared signal summed over colour channels. 1 means
    the projection is spread like a uniform one; 1/area share (its maximum) means all of it lies on
    the object. NaN where a projection is all zero (nothing to locate).
    """
    p = projections if projections.dim() == 5 else projections[:, None]
    if masks.dim() != 3 or masks.shape[0] != p.shape[0] or masks.shape[-2:] != p.shape[-2:]:
        raise ValueError(f"masks must be (B, H, W) matching the projections {tuple(projections.shape)}, "
                         f"got {tuple(masks.shape)}")
    m = masks.to(p.dtype)[:, None]  # (B, 1, H, W)
    energy = p.pow(2).sum(2)  # (B, K, H, W)
    on = (energy * m).sum((-2, -1)) / energy.sum((-2, -1))
    area = m.mean((-2, -1))  # (B, 1)
    out = on / area
    return out if projections.dim() == 5 else out[:, 0]


def legibility_scores(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, layer: str,
                      top: int = 8) -> torch.Tensor:
    """Per image, the mean :func:`legibility` of ``layer``'s deconvnet projections (``mode="max"``) of
    its ``top`` channels by strongest activation, as Fig. 2 shows a unit's strongest activations."""
    net = Deconvnet(model)
    acts = layer_activations(model, images, layer)
    strongest = acts.flatten(2).amax(2).topk(min(top, acts.shape[1]), dim=1).indices
    scores = [legibility(net.project(images[i:i + 1], layer, channels=strongest[i].tolist(), mode="max"),
                         masks[i:i + 1])[0] for i in range(len(images))]
    return torch.stack([torch.nanmean(s) for s in scores])


def layer_legibility(model: nn.Module, images: torch.Tensor, masks: torch.Tensor,
                     layers: Sequence[str] = LAYERS, top: int = 8) -> dict[str, float]:
    """Mean :func:`legibility_scores` of each layer over the images."""
    return {layer: float(torch.nanmean(legibility_scores(model, images, masks, layer, top))) for layer in layers}


def purity(indices: torch.Tensor, labels: Sequence, active: torch.Tensor | None = None) -> float:
    """Mean over feature maps of the share of a map's top-k images that show its most common label.

    ``indices`` (C, k): each map's top-k image indices; ``labels``: each image's label (the object's
    name, or the background's to see whether units latch onto wallpapers); ``active`` (C,) bool keeps
    only maps that fire at all (a dead map's "top-9" is an arbitrary tie). 1/k when all differ.
    """
    rows = indices if active is None else indices[active]
    if len(rows) == 0:
        return float("nan")
    shares = [Counter(labels[i] for i in row.tolist()).most_common(1)[0][1] / len(row) for row in rows]
    return float(np.mean(shares))


def scan_purity(scans: dict, images: Scenes, key: str = "object_names") -> dict[str, float]:
    """:func:`purity` per layer of a :func:`zfkit.topk.topk_layers` scan of ``images`` (Scenes), grouped
    by ``key`` (``"object_names"`` or ``"background_names"``): one scan can be grouped several ways."""
    labels = getattr(images, key)
    return {name: purity(t.indices, labels, active=t.values[:, -1] > 0) for name, t in scans.items()}


def layer_purity(model: nn.Module, images: Scenes, layers: Sequence[str] = LAYERS, k: int = 9,
                 key: str = "object_names") -> dict[str, float]:
    """:func:`scan_purity` of ``model``'s top-``k`` scan of ``images`` at ``layers``."""
    return scan_purity(topk_layers(model, images, list(layers), k=k, progress=False), images, key)
