"""Turning tensors into figures: display normalisation, image grids, boxes and the Fig. 3 diagram.

Every function returns a matplotlib ``Figure`` created through pyplot (which loads the notebook's
display backend) and immediately released from pyplot's registry, so a returned figure shows
exactly once in a notebook and redrawing widgets never accumulate open figures.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Polygon, Rectangle
from torch import nn

from .arch import FirstLayer, grating_response
from .models import Description, describe
from .rf import receptive_field

__all__ = [
    "new_figure",
    "astronaut",
    "to_display",
    "show_image",
    "image_grid",
    "draw_box",
    "draw_receptive_fields",
    "draw_architecture",
    "draw_grating_responses",
    "draw_panels",
    "draw_evolution",
]

LAYER_COLOURS = ("#ffd400", "#ff7f0e", "#e6194b", "#3cb44b", "#4363d8", "#911eb4", "#42d4f4", "#f032e6")


def new_figure(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (6, 4), **kwargs) -> tuple[Figure, np.ndarray | Axes]:
    """``plt.subplots`` whose figure is closed in pyplot at once (see the module docstring)."""
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, layout="constrained", **kwargs)
    plt.close(fig)
    return fig, axes


def astronaut(size: int = 224) -> torch.Tensor:
    """scikit-image's astronaut photo (ships with the wheel, no download) as (3, size, size) in [0, 1]."""
    from skimage.data import astronaut as photo

    image = torch.from_numpy(photo()).permute(2, 0, 1).float().div(255)
    return F.interpolate(image[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)


def to_display(image: torch.Tensor | np.ndarray, normalize: bool | None = None) -> np.ndarray:
    """An image ready for ``imshow``: (H, W) for one channel, (H, W, 3) for three, values in [0, 1].

    Tensors are read as (C, H, W) (torch's layout), arrays as (H, W[, C]) (matplotlib's).
    ``normalize=None`` rescales min..max to 0..1 only when values leave [0, 1] (mean-subtracted
    inputs, deconvnet projections, filters); a constant image becomes mid-grey.
    """
    if isinstance(image, torch.Tensor):
        array = image.detach().cpu().double().numpy()
        if array.ndim == 3:
            array = array.transpose(1, 2, 0)
    else:
        array = np.asarray(image, dtype=np.float64)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3):
        raise ValueError(f"expected an image with 1 or 3 channels, got shape {tuple(np.shape(image))}")
    low, high = float(array.min()), float(array.max())
    if normalize is None:
        normalize = low < 0 or high > 1
    if normalize:
        array = (array - low) / (high - low) if high > low else np.full_like(array, 0.5)
    return np.clip(array, 0, 1)


def show_image(ax: Axes, image: torch.Tensor | np.ndarray, title: str | None = None, normalize: bool | None = None) -> None:
    """``imshow`` an image (grey colormap for one channel) without ticks."""
    array = to_display(image, normalize)
    ax.imshow(array, cmap="gray" if array.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def image_grid(images: Sequence[torch.Tensor | np.ndarray] | torch.Tensor, ncols: int | None = None,
               titles: Sequence[str] | None = None, size: float = 1.6, normalize: bool | None = None) -> Figure:
    """Images in a grid (the layout of the paper's 3x3 top-9 figures); each normalised on its own."""
    n = len(images)
    if n == 0:
        raise ValueError("image_grid needs at least one image")
    if titles is not None and len(titles) != n:
        raise ValueError(f"got {len(titles)} titles for {n} images")
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    fig, axes = new_figure(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < n:
            show_image(ax, images[i], titles[i] if titles else None, normalize)
        else:
            ax.axis("off")
    return fig


def draw_box(ax: Axes, box: tuple[int, int, int, int], color: str = "#ffd400", linewidth: float = 2.0,
             label: str | None = None) -> Rectangle:
    """Outline a (top, left, bottom, right) pixel box (bottom/right exclusive, as ``rf.box`` gives it).

    Pixel centres sit on integer coordinates in ``imshow``, so the box's edges are at -0.5 offsets.
    """
    top, left, bottom, right = box
    rect = Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False, edgecolor=color,
                     linewidth=linewidth, label=label)
    ax.add_patch(rect)
    return rect


def draw_receptive_fields(model: nn.Module, image: torch.Tensor, layers: Sequence[str] = ("conv1", "conv2", "conv3", "conv4", "conv5"),
                          size: float = 5.0) -> Figure:
    """The image with the receptive field of each layer's centre unit, nested (grows with depth)."""
    input_size = tuple(image.shape)
    sizes = {r.name: r.output_shape[-1] for r in describe(model, input_size) if len(r.output_shape) == 3}
    unknown = [layer for layer in layers if layer not in sizes]
    if unknown:
        raise ValueError(f"no spatial layer {', '.join(map(repr, unknown))}; choose from {', '.join(sizes)}")
    fig, ax = new_figure(figsize=(size, size))
    show_image(ax, image)
    height, width = image.shape[-2:]
    low, high = -0.5, max(height, width) - 0.5
    for layer, colour in zip(layers, itertools.cycle(LAYER_COLOURS)):
        rf = receptive_field(model, layer, input_size)
        centre = (sizes[layer] - 1) // 2
        box = rf.box(centre, centre)
        draw_box(ax, box, colour, label=f"{layer}: {rf.size}x{rf.size} px")
        low, high = min(low, box[0] - 0.5, box[1] - 0.5), max(high, box[2] - 0.5, box[3] - 0.5)
    ax.set_xlim(low, high)
    ax.set_ylim(high, low)
    ax.set_facecolor("0.85")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    ax.set_title("receptive field of each layer's centre unit", fontsize=9)
    return fig


# ---------------------------------------------------------------- the Fig. 3 block diagram

def _stages(rows: Description) -> list[dict]:
    """Group layer rows into conv/fc stages, recovering kernel and stride from the field arithmetic.

    A conv or pool of kernel k and stride s grows the field by (k - 1) * jump and multiplies the
    jump by s, so k and s follow from consecutive rows: no access to the modules is needed.
    """
    stages: list[dict] = []
    prev_size, prev_jump = 1, 1
    for r in rows:
        if r.kind in ("Conv2d", "MaxPool2d", "AvgPool2d"):
            kernel, stride = (r.rf_size - prev_size) // prev_jump + 1, r.rf_jump // prev_jump
            prev_size, prev_jump = r.rf_size, r.rf_jump
        if r.kind in ("Conv2d", "Linear"):
            stages.append({"name": r.name, "shape": r.output_shape, "ops": []})
        if not stages or r.kind in ("ReLU", "Flatten", "Dropout"):
            continue
        stage = stages[-1]
        if r.kind == "Conv2d":
            stage["ops"].append(f"conv {kernel}×{kernel}, stride {stride} → {r.output_shape[-1]}")
        elif r.kind in ("MaxPool2d", "AvgPool2d"):
            stage["ops"].append(f"{'max' if r.kind == 'MaxPool2d' else 'avg'} pool {kernel}×{kernel}, stride {stride} → {r.output_shape[-1]}")
        elif r.kind == "LocalResponseNorm":
            stage["ops"].append("contrast norm.")
        elif r.kind == "Linear":
            stage["ops"].append("fully connected")
        stage["shape"] = r.output_shape
    return stages


def _slab(ax: Axes, x: float, width: float, height: float, depth: float, colour: str) -> float:
    """A stack of maps in oblique projection (front face, top, side); returns the top edge's y."""
    dx, dy = depth, 0.7 * depth
    top, bottom, right = height / 2, -height / 2, x + width
    style = {"facecolor": colour, "edgecolor": "k", "linewidth": 0.8}
    ax.add_patch(Polygon([(x, top), (x + dx, top + dy), (right + dx, top + dy), (right, top)], alpha=0.7, **style))
    ax.add_patch(Polygon([(right, bottom), (right + dx, bottom + dy), (right + dx, top + dy), (right, top)], alpha=0.5, **style))
    ax.add_patch(Rectangle((x, bottom), width, height, **style))
    return top + dy


def draw_architecture(model: nn.Module | Description, input_size: tuple[int, int, int] | None = None,
                      title: str | None = None) -> Figure:
    """Fig. 3 as a block diagram: one slab per stage, its output shape above, its operations below.

    Slab height grows with the map's side and thickness with log2(channels), so the shrinking maps
    and widening stacks of a convnet read at a glance. Accepts a model or its ``describe`` rows;
    ``input_size`` (C, H, W) is needed for rows and for models not built by zfkit.
    """
    if isinstance(model, Description):
        if input_size is None:
            raise ValueError("draw_architecture(describe(...)) needs input_size=(C, H, W): the rows do not record it")
        rows = model
    else:
        input_size = input_size or (getattr(model, "in_channels", None), getattr(model, "input_size", None),
                                    getattr(model, "input_size", None))
        if None in input_size:
            raise ValueError("draw_architecture needs input_size=(C, H, W) for models not built by zfkit")
        rows = describe(model, input_size)
    stages = _stages(rows)
    if not stages:
        raise ValueError("draw_architecture found no Conv2d or Linear layers to draw")
    side = input_size[-1]
    step = 1.5
    items = [{"name": "input", "shape": tuple(input_size), "ops": []}, *stages]
    fig, ax = new_figure(figsize=(step * len(items), 3.4))
    previous_right = 0.0
    for i, stage in enumerate(items):
        x, shape = i * step, stage["shape"]
        if len(shape) == 3:  # a square face for the maps, depth for the channels
            width = height = 0.25 + 0.85 * math.sqrt(shape[-1] / side)
            depth, colour = 0.05 * math.log2(shape[0]), "#f4c2c2" if i == 1 else "#cfe2f3"
        else:  # a fully connected layer: a bar whose height grows with its width
            width, height, depth, colour = 0.12, 0.3 + 0.13 * math.log2(shape[0]), 0.08, "#d9ead3"
        x -= width / 2
        top = _slab(ax, x, width, height, depth, colour)
        centre = x + (width + depth) / 2
        ax.text(centre, top + 0.08, "×".join(map(str, shape)), ha="center", va="bottom", fontsize=7.5)
        ax.text(centre, -height / 2 - 0.12, stage["name"], ha="center", va="top", fontsize=9, weight="bold")
        ax.text(centre, -height / 2 - 0.42, "\n".join(stage["ops"]), ha="center", va="top", fontsize=6.5, linespacing=1.5)
        if i:
            ax.annotate("", xy=(x - 0.05, 0), xytext=(previous_right + 0.05, 0), arrowprops={"arrowstyle": "->", "color": "0.4"})
        previous_right = x + width + depth
    ax.set_xlim(-0.9, (len(items) - 0.4) * step)
    ax.set_ylim(-2.1, 1.6)
    ax.axis("off")
    name = getattr(getattr(model, "spec", None), "name", None)
    ax.set_title(title or (f"{name}: layers and output shapes" if name else "layers and output shapes"), fontsize=10)
    return fig


def draw_grating_responses(frequency: float, layers: Sequence[FirstLayer], width: int = 64) -> Figure:
    """A grating and each first layer's sampled response: the aliasing of §4.1 made visible."""
    fig, ax = new_figure(figsize=(8, 2.8))
    x = np.linspace(0, width, 20 * width)
    ax.plot(x, np.cos(2 * np.pi * frequency * x), color="0.75", linewidth=1, label=f"input: {frequency:g} cycles/px")
    for layer, colour in zip(layers, itertools.cycle(("#e6194b", "#4363d8", "#3cb44b", "#911eb4"))):
        positions, response = grating_response(frequency, layer.kernel, layer.stride)
        keep = positions <= width
        values = (response / response.abs().max())[keep]
        ax.plot(positions[keep], values, "o-", color=colour, markersize=4,
                label=f"{layer.model} conv1 ({layer.kernel}x{layer.kernel}, stride {layer.stride})")
    ax.set_xlabel("input column (px)")
    ax.set_ylabel("response (normalised)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return fig


def draw_panels(panels: Sequence, ncols: int = 3, size: float = 0.75, labels: Sequence[str] | None = None) -> Figure:
    """Fig. 2's layout: per feature map, its top-k projections (left) beside their image patches (right).

    ``panels`` are :class:`zfkit.gallery.Panel` objects; each map becomes one row of the figure. Each
    projection is normalised on its own (its sign and scale are arbitrary), patches are shown as
    mean-subtracted inputs rescaled to their own range.
    """
    if len(panels) == 0:
        raise ValueError("draw_panels needs at least one panel")
    k = len(panels[0].values)
    nrows = math.ceil(k / ncols)
    fig = plt.figure(figsize=(size * (2 * ncols + 0.6), size * nrows * len(panels) + 0.3 * len(panels)), layout="constrained")
    plt.close(fig)
    rows = fig.subfigures(len(panels), 1, squeeze=False)[:, 0]
    for sub, panel in zip(rows, panels):
        left, right = sub.subfigures(1, 2, wspace=0.02)
        for half, images in ((left, panel.projections), (right, panel.patches)):
            axes = half.subplots(nrows, ncols, squeeze=False)
            for i, ax in enumerate(axes.flat):
                if i < len(images):
                    show_image(ax, images[i], normalize=True)
                    if half is right and labels is not None:
                        ax.set_title(labels[int(panel.labels[i])], fontsize=5, pad=1)
                else:
                    ax.axis("off")
        sub.suptitle(f"{panel.layer} map {panel.channel}", fontsize=8)
    return fig


def draw_evolution(evolutions: Sequence, size: float = 0.7) -> Figure:
    """Fig. 4's grid: one row per feature map (grouped by layer), one column per training snapshot."""
    if len(evolutions) == 0:
        raise ValueError("draw_evolution needs at least one zfkit.gallery.Evolution")
    rows = [(evo, m) for evo in evolutions for m in range(len(evo.channels))]
    epochs = evolutions[0].epochs
    fig, axes = new_figure(len(rows), len(epochs), figsize=(size * len(epochs) + 0.8, size * len(rows) + 0.4), squeeze=False)
    for r, (evo, m) in enumerate(rows):
        for e, epoch in enumerate(epochs):
            show_image(axes[r, e], evo.projections[e, m], normalize=True)
            if r == 0:
                axes[r, e].set_title(f"ep {epoch}", fontsize=7)
        axes[r, 0].set_ylabel(f"{evo.layer}\n#{evo.channels[m]}", fontsize=6, rotation=0, ha="right", va="center")
    return fig
