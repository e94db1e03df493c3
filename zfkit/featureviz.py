"""What a unit wants: feature visualisation by optimisation (Olah, Mordvintsev & Schubert, Distill 2017).

Zeiler & Fergus show what excites a unit by searching a dataset (top-k) and projecting the winners
back to pixels (the deconvnet). Feature visualisation asks the unit directly: start from noise and
follow the gradient of the unit's activation with respect to the image. Done naively in pixel space
the result is high-frequency noise that fools the network; "Feature Visualization" (Distill 2017)
gets images by two priors, both reproduced here as lucid (its reference code) has them:

- **Decorrelated parameterisation** (``parameterization="fourier"``): the image is the inverse FFT of
  a learned spectrum scaled by 1/frequency, so that gradient steps are whitened (every frequency moves
  equally fast) instead of being dominated by high frequencies; colours are mixed by the square root of
  ImageNet's colour correlation (:data:`COLOR_CORRELATION`), then squashed into [0, 1] by a sigmoid.
  ``"pixel"`` is the naive baseline: raw pixels through the sigmoid.
- **Transformation robustness** (``transforms=True``): each step sees the image jittered, scaled and
  rotated by a small random amount on a grey background, so only patterns that survive such changes
  are reinforced. The ranges are lucid's ``standard_transforms`` (±10° rotation, scale 0.9-1.1),
  its jitter expressed as a fraction of the image (±8 px at 128 px).

Every requested unit gets its own image in one batch, optimised with Adam. Each unit's start noise and
transforms come from a generator seeded by ``(seed, channel)``, and in eval mode no image of the batch
affects another's gradient, so a unit's visualisation does not depend on which units share its batch.
The layer is read where :mod:`zfkit.graph` says it is (a zfkit name like ``"conv5"`` or a qualified
module name like ``"stage5"``), running the model only as far as that layer.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from .graph import GraphLayer, ModelGraph, eval_mode, model_graph

__all__ = ["FeatureVisualization", "visualize", "COLOR_CORRELATION", "PARAMETERIZATIONS", "POSITIONS", "MIN_SIZE"]

#: lucid's square root (by SVD) of ImageNet's RGB colour correlation; columns scaled to norm <= 1 below.
COLOR_CORRELATION = torch.tensor([[0.26, 0.09, 0.02],
                                  [0.27, 0.00, -0.05],
                                  [0.27, -0.09, 0.03]])
PARAMETERIZATIONS = ("fourier", "pixel")
POSITIONS = ("mean", "centre")
#: The smallest image side, so that the jitter (size // 16 pixels) is at least one pixel.
MIN_SIZE = 16
ROTATION = 10.0  # degrees either way (lucid: -10..10)
SCALE = (0.9, 1.1)  # lucid: 1 + (i - 5) / 50 for i in 0..10
INIT_STD = 0.01  # lucid's start: N(0, 0.01) spectrum or pixels (pre-sigmoid)


@dataclass
class FeatureVisualization:
    """One optimised image per unit: ``images`` (N, 3, H, W) in [0, 1], ``objective`` (N,) on the final images."""

    images: torch.Tensor
    objective: torch.Tensor
    layer: str
    channels: tuple[int, ...]
    caption: str


def visualize(model: nn.Module, layer: str | nn.Module, channels: int | Sequence[int], size: int = 128,
              steps: int = 256, lr: float = 0.05, seed: int = 0, parameterization: str = "fourier",
              transforms: bool = True, position: str = "mean", normalize: Callable | None = None,
              progress: bool = True) -> FeatureVisualization:
    """The image each unit of ``layer`` wants: one per channel in ``channels``, optimised together.

    The objective is the unit's mean activation over its map (``position="mean"``) or at the map's
    centre (``"centre"``); a layer without rows and columns (``fc7``) has one value per unit.
    ``normalize`` maps [0, 1] pixels to the model's input (e.g. ``torchvision.transforms.v2.Normalize(MEAN, STD)``
    of :mod:`zfkit.efficientnet`); ``None`` feeds [0, 1] pixels. ``objective`` is each unit's activation
    on its final, untransformed image. Deterministic for a ``seed``; a unit's image does not depend on
    the other units requested with it.
    """
    graph = model_graph(model)
    target = graph.layer(layer)
    units = _check_args(channels, size, steps, lr, seed, parameterization, position, normalize)
    normalize = (lambda x: x) if normalize is None else normalize
    weight = next(model.parameters(), torch.empty(0))  # images follow the model's device and dtype
    with eval_mode(model):
        _check_channels(units, _width(graph, target, size, normalize, weight), target.name)
        generators = [_generator(seed, c) for c in units]
        image = _Image(parameterization, size, generators).to(device=weight.device, dtype=weight.dtype)
        optimizer = torch.optim.Adam(image.parameters(), lr=lr)
        for _ in tqdm(range(steps), desc=f"feature visualisation {target.name}", disable=not progress):
            pixels = _transform(image(), generators) if transforms else image()
            loss = -_objective(graph, target, normalize(pixels), units, position).sum()
            optimizer.zero_grad()
            loss.backward(inputs=list(image.parameters()))
            optimizer.step()
        with torch.no_grad():
            final = image()
            objective = _objective(graph, target, normalize(final), units, position)
    return FeatureVisualization(final, objective, target.name, units,
                                _caption(parameterization, transforms, position, target.name, steps, lr))


# ---------------------------------------------------------------- the image


class _Image(nn.Module):
    """N images in [0, 1], parameterised as a 1/f-scaled spectrum (``fourier``) or as raw pixels (``pixel``)."""

    def __init__(self, parameterization: str, size: int, generators: list[torch.Generator]):
        super().__init__()
        self.fourier = parameterization == "fourier"
        shape = (3, size, size // 2 + 1, 2) if self.fourier else (3, size, size)
        self.size = size
        self.param = nn.Parameter(torch.stack([torch.randn(shape, generator=g) * INIT_STD for g in generators]))
        if self.fourier:
            self.register_buffer("scale", _spectrum_scale(size))
            self.register_buffer("colors", COLOR_CORRELATION / COLOR_CORRELATION.norm(dim=0).max())

    def forward(self) -> torch.Tensor:
        if not self.fourier:
            return torch.sigmoid(self.param)
        spectrum = torch.view_as_complex(self.param) * self.scale
        image = torch.fft.irfft2(spectrum, s=(self.size, self.size)) / 4  # lucid's 1/4: a good start contrast
        return torch.sigmoid(torch.einsum("nchw,dc->ndhw", image, self.colors))


def _spectrum_scale(size: int) -> torch.Tensor:
    """lucid's 1/frequency amplitude (floored at the lowest frequency), times sqrt(pixels)."""
    fy = torch.fft.fftfreq(size)[:, None]
    fx = torch.fft.rfftfreq(size)[None, :]
    frequency = (fx**2 + fy**2).sqrt().clamp(min=1.0 / size)
    return size / frequency


def _generator(seed: int, channel: int) -> torch.Generator:
    """A unit's own random stream: keyed by (seed, channel), never by its place in the batch."""
    state = np.random.SeedSequence([seed, channel]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _transform(images: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """Each image jittered, scaled and rotated by its own unit's random draw, on a grey background."""
    size = images.shape[-1]
    jitter = size // 16
    out = []
    for image, g in zip(images, generators):
        angle, scale = (torch.rand(2, generator=g) * 2 - 1).tolist()
        dx, dy = torch.randint(-jitter, jitter + 1, (2,), generator=g).tolist()
        # torchvision fills with 0; shifting by 0.5 makes that the grey of lucid's padding.
        moved = TF.affine(image - 0.5, angle=angle * ROTATION, translate=[dx, dy],
                          scale=(SCALE[0] + SCALE[1]) / 2 + scale * (SCALE[1] - SCALE[0]) / 2, shear=[0.0, 0.0],
                          interpolation=TF.InterpolationMode.BILINEAR)
        out.append(moved + 0.5)
    return torch.stack(out)


# ---------------------------------------------------------------- the objective


def _objective(graph: ModelGraph, target: GraphLayer, x: torch.Tensor, units: tuple[int, ...],
               position: str) -> torch.Tensor:
    """Each image's own unit: its mean over the map or its value at the centre, shape (N,)."""
    acts = graph.run(x, [target.op], keep=False)[target.op.node]
    mine = acts[torch.arange(len(units), device=acts.device), torch.tensor(units, device=acts.device)]
    if mine.dim() == 1:
        return mine
    if position == "centre":
        return mine[:, mine.shape[1] // 2, mine.shape[2] // 2]
    return mine.flatten(1).mean(1)


def _width(graph: ModelGraph, target: GraphLayer, size: int, normalize: Callable, like: torch.Tensor) -> int:
    """The layer's channel count, from one grey image: also proves the model takes ``size`` x ``size`` images."""
    grey = torch.full((1, 3, size, size), 0.5, device=like.device, dtype=like.dtype)
    try:
        with torch.no_grad():
            acts = graph.run(normalize(grey), [target.op], keep=False)[target.op.node]
    except RuntimeError as err:
        raise ValueError(f"{type(graph.model).__name__} cannot run {size}x{size} images up to layer "
                         f"{target.name!r} ({err}); pass the size it takes, e.g. size=model.input_size") from err
    if not isinstance(acts, torch.Tensor) or acts.dim() not in (2, 4):
        shape = tuple(acts.shape) if isinstance(acts, torch.Tensor) else type(acts).__name__
        raise ValueError(f"layer {target.name!r} outputs {shape}; feature visualisation needs (B, C) or "
                         "(B, C, H, W) units: pick a layer or block that returns one such tensor")
    return acts.shape[1]


# ---------------------------------------------------------------- checks and caption


def _check_args(channels, size, steps, lr, seed, parameterization, position, normalize) -> tuple[int, ...]:
    """Every argument but the layer and channel range, checked before any work; the channels as a tuple."""
    units = _channel_tuple(channels)
    if not _is_int(size) or size < MIN_SIZE:
        raise ValueError(f"size must be an int of at least {MIN_SIZE} pixels (the jitter is size // 16), got {size!r}")
    if not _is_int(steps) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}")
    if position not in POSITIONS:
        raise ValueError(f"position must be one of {POSITIONS}, got {position!r}")
    if normalize is not None and not callable(normalize):
        raise ValueError(f"normalize must map a (N, 3, H, W) batch in [0, 1] to the model's input, or be None; "
                         f"got {type(normalize).__name__}")
    return units


def _channel_tuple(channels) -> tuple[int, ...]:
    units = (channels,) if _is_int(channels) else tuple(channels) if isinstance(channels, Sequence) else None
    if not units or not all(_is_int(c) for c in units):
        raise ValueError(f"channels must be a channel index or a non-empty sequence of them, got {channels!r}")
    return tuple(operator.index(c) for c in units)


def _check_channels(units: tuple[int, ...], width: int, name: str) -> None:
    bad = [c for c in units if not 0 <= c < width]
    if bad:
        raise ValueError(f"channel(s) {bad} out of range: layer {name!r} has {width} channels (0 to {width - 1})")


def _is_int(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def _caption(parameterization: str, transforms: bool, position: str, layer: str, steps: int, lr: float) -> str:
    image = ("decorrelated Fourier image (1/f spectrum, ImageNet colour decorrelation)" if parameterization == "fourier"
             else "pixel image")
    robust = (f"random jitter (size/16), scale {SCALE[0]}-{SCALE[1]}, rotation ±{ROTATION:g}°, grey padding"
              if transforms else "no transforms")
    where = "centre activation" if position == "centre" else "mean activation"
    return f"{layer}: each unit's {where}, maximised over a {image}; {robust}; Adam lr {lr:g}, {steps} steps"
