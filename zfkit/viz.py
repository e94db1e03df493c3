"""Turning tensors into figures: display normalisation, image grids, boxes and the Fig. 3 diagram.

Every function returns a matplotlib ``Figure`` created through pyplot (which loads the notebook's
display backend) and immediately released from pyplot's registry, so a returned figure shows
exactly once in a notebook and redrawing widgets never accumulate open figures.
"""

from __future__ import annotations

import itertools
import math
import textwrap
from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import Patch, Polygon, Rectangle
from torch import nn

from .arch import FirstLayer, grating_response
from .invariance import InvarianceResult, transform
from .models import Description, describe
from .occlusion import OcclusionResult
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
    "draw_occlusion",
    "draw_invariance",
    "draw_masks",
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
        draw_box(ax, box, colour, label=f"{layer}: {rf.size}x{rf.columns.size} px")
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


def draw_panels(panels: Sequence, ncols: int = 3, size: float = 0.75, labels: Sequence[str] | None = None,
                sides: tuple[str, str] | None = ("projections", "patches")) -> Figure:
    """Fig. 2's layout: per feature map, its top-k projections (left) beside their image patches (right).

    ``panels`` are :class:`zfkit.gallery.Panel` objects; each map becomes one row of the figure. Each
    projection is normalised on its own (its sign and scale are arbitrary), patches are shown as
    mean-subtracted inputs rescaled to their own range. ``sides`` titles the two halves of every
    row (``None`` leaves them untitled): two grids of grey tiles do not say which is which. A row
    whose projections are not the paper's pure deconvnet (SiLU, gates, LayerNorm, another rule)
    says under its title which policy made them (the panel's ``policy``).
    """
    if sides is not None and (len(sides) != 2 or not all(isinstance(s, str) for s in sides)):
        raise ValueError(f"sides must be two titles (left, right), e.g. ('projections', 'patches'), got {sides!r}")
    if len(panels) == 0:
        raise ValueError("draw_panels needs at least one panel")
    k = len(panels[0].values)
    nrows = math.ceil(k / ncols)
    fig = plt.figure(figsize=(size * (2 * ncols + 0.6), size * nrows * len(panels) + 0.3 * len(panels)), layout="constrained")
    plt.close(fig)
    rows = fig.subfigures(len(panels), 1, squeeze=False)[:, 0]
    for sub, panel in zip(rows, panels):
        left, right = sub.subfigures(1, 2, wspace=0.02)
        for side, (half, images) in enumerate(((left, panel.projections), (right, panel.patches))):
            if sides is not None:
                half.suptitle(sides[side], fontsize=6)
            axes = half.subplots(nrows, ncols, squeeze=False)
            for i, ax in enumerate(axes.flat):
                if i < len(images):
                    show_image(ax, images[i], normalize=True)
                    if half is right and labels is not None:
                        ax.set_title(labels[int(panel.labels[i])], fontsize=5, pad=1)
                else:
                    ax.axis("off")
        sub.suptitle(_with_policy(f"{panel.layer} map {panel.channel}", panel.policy), fontsize=8)
    return fig


def _with_policy(title: str, policy: str, width: int = 60) -> str:
    """``title`` and, below it, the policy that made a projection where it is not the paper's deconvnet."""
    return f"{title}\n{textwrap.fill(policy, width)}" if policy else title


def draw_evolution(evolutions: Sequence, size: float = 0.7) -> Figure:
    """Fig. 4's grid: one row per feature map (grouped by layer), one column per training snapshot.

    A snapshot at epoch 0 is titled as the untrained start, the column that shows whether a map
    that looks converged early had anywhere to converge from. Projections made otherwise than by
    the paper's deconvnet say how in the figure's title.
    """
    if len(evolutions) == 0:
        raise ValueError("draw_evolution needs at least one zfkit.gallery.Evolution")
    rows = [(evo, m) for evo in evolutions for m in range(len(evo.channels))]
    epochs = evolutions[0].epochs
    fig, axes = new_figure(len(rows), len(epochs), figsize=(size * len(epochs) + 0.8, size * len(rows) + 0.4), squeeze=False)
    for r, (evo, m) in enumerate(rows):
        for e, epoch in enumerate(epochs):
            show_image(axes[r, e], evo.projections[e, m], normalize=True)
            if r == 0:
                axes[r, e].set_title("ep 0\nuntrained" if epoch == 0 else f"ep {epoch}", fontsize=7)
        axes[r, 0].set_ylabel(f"{evo.layer}\n#{evo.channels[m]}", fontsize=6, rotation=0, ha="right", va="center")
    policies = sorted({f"{evo.layer}: {evo.policy}" for evo in evolutions if evo.policy})
    if policies:
        fig.suptitle("\n".join(textwrap.fill(p, 70) for p in policies), fontsize=6)
    return fig


# ---------------------------------------------------------------- Fig. 7: occlusion

CLASS_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")  # matplotlib's tab10


def _mosaic(tiles: torch.Tensor, ncols: int, normalize: bool | None = True) -> np.ndarray:
    """Tiles (K, C, h, w) in one image, row by row, with 1-pixel white gutters; by default each
    is normalised on its own (projections have arbitrary sign and scale)."""
    shown = [to_display(t, normalize=normalize) for t in tiles]
    h, w = shown[0].shape[:2]
    nrows = math.ceil(len(shown) / ncols)
    out = np.ones((nrows * (h + 1) - 1, ncols * (w + 1) - 1) + shown[0].shape[2:])
    for i, tile in enumerate(shown):
        r, c = divmod(i, ncols)
        out[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = tile
    return out


def _occlusion_map(ax: Axes, result: OcclusionResult, values: torch.Tensor, image_size: tuple[int, int], **imshow) -> AxesImage:
    """``values`` (n_y, n_x) drawn over the image's pixel frame, each cell centred on its occluder's centre."""
    centre = (result.patch - 1) / 2
    ys, xs = result.ys.double() + centre, result.xs.double() + centre
    step_y = float(ys[1] - ys[0]) if len(ys) > 1 else float(result.patch)
    step_x = float(xs[1] - xs[0]) if len(xs) > 1 else float(result.patch)
    extent = (float(xs[0]) - step_x / 2, float(xs[-1]) + step_x / 2, float(ys[-1]) + step_y / 2, float(ys[0]) - step_y / 2)
    artist = ax.imshow(values.detach().cpu().numpy(), extent=extent, interpolation="nearest", **imshow)
    ax.set_xlim(-0.5, image_size[1] - 0.5)
    ax.set_ylim(image_size[0] - 0.5, -0.5)
    ax.set_facecolor("0.85")
    ax.set_xticks([])
    ax.set_yticks([])
    return artist


def _occlusion_projection(ax: Axes, result: OcclusionResult) -> None:
    """Panel (c): the projection with the policy that made it, or, without one, why not (the result's note)."""
    if result.projection is None:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("(c) no projection", fontsize=9)
        note = textwrap.shorten(result.projection_note, 200, placeholder=" …")  # the result holds all of it
        ax.text(0.5, 0.5, textwrap.fill(note, 32), transform=ax.transAxes, ha="center", va="center", fontsize=5)
        return
    show_image(ax, result.projection, "(c) its projection", normalize=True)
    if result.projection_note:
        ax.set_xlabel(textwrap.fill(result.projection_note, 32), fontsize=6)


def draw_occlusion(result: OcclusionResult, image: torch.Tensor, classes: Sequence[str] | None = None,
                   others: torch.Tensor | None = None, size: float = 1.9) -> Figure:
    """One row of Fig. 7 from a :class:`zfkit.occlusion.OcclusionResult`.

    The panels: ``image`` (C, H, W, display pixels) with the occluder at its most damaging
    position; the total activity of the strongest feature map; that map's deconv projection
    (and, given ``others`` (K, C, h, w), the same map projected from other images); p(correct
    class); the most probable class with a legend. Maps are placed on the image's pixel frame,
    each cell at the centre of its occluder. A projection made otherwise than by the paper's
    deconvnet says how under it; a result without one (``projection`` None) says why in its place.
    """
    name = (lambda c: classes[c]) if classes is not None else str  # noqa: E731
    height, width = image.shape[-2:]
    panels = 5 + (others is not None)
    fig, axes = new_figure(1, panels, figsize=(size * panels + 1.6, size + 0.5))
    worst = int(result.prob.flatten().argmin())
    y, x = int(result.ys[worst // len(result.xs)]), int(result.xs[worst % len(result.xs)])
    show_image(axes[0], image, f"(a) {name(result.target)}")
    axes[0].add_patch(Rectangle((x - 0.5, y - 0.5), result.patch, result.patch, facecolor="0.5", edgecolor="#ffd400"))
    axes[0].set_xlabel(f"{result.patch}x{result.patch} occluder (worst place)", fontsize=7)
    activity = _occlusion_map(axes[1], result, result.activity, (height, width), cmap="viridis")
    fig.colorbar(activity, ax=axes[1], shrink=0.8).ax.tick_params(labelsize=6)
    axes[1].set_title(f"(b) {result.layer} map {result.channel} activity", fontsize=9)
    _occlusion_projection(axes[2], result)
    if others is not None:
        show_image(axes[3], _mosaic(others, math.ceil(math.sqrt(len(others)))), "(c) map on other images")
    prob = _occlusion_map(axes[-2], result, result.prob, (height, width), cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(prob, ax=axes[-2], shrink=0.8).ax.tick_params(labelsize=6)
    axes[-2].set_title(f"(d) p({name(result.target)})", fontsize=9)
    present = sorted(set(result.top_class.flatten().tolist()))
    colours = [CLASS_COLOURS[c % len(CLASS_COLOURS)] for c in range(max(present) + 1)]
    _occlusion_map(axes[-1], result, result.top_class, (height, width), cmap=ListedColormap(colours),
                   vmin=-0.5, vmax=len(colours) - 0.5)
    axes[-1].set_title("(e) most probable class", fontsize=9)
    axes[-1].legend(handles=[Patch(color=colours[c], label=name(c)) for c in present], loc="upper left",
                    bbox_to_anchor=(1.02, 1), fontsize=7, frameon=False)
    fig.suptitle(f"{len(result.ys)}x{len(result.xs)} occluder positions", fontsize=9)
    return fig


# ---------------------------------------------------------------- Fig. 5: invariance

SWEEP_LABELS = {"translate": "vertical shift (px)", "scale": "scale factor", "rotate": "rotation (degrees)"}


def draw_invariance(sweeps: Sequence[InvarianceResult], images: torch.Tensor,
                    display: Callable[[torch.Tensor], torch.Tensor] | None = None, examples: int = 5,
                    layers: Sequence[str] = ("conv1", "fc7"), classes: Sequence[str] | None = None,
                    strip: int = 5, size: float = 2.3) -> Figure:
    """Fig. 5: a row per :class:`zfkit.invariance.InvarianceResult` (translation, scale, rotation).

    Column 1: the first ``examples`` of ``images`` (the sweep's model inputs) at ``strip`` amounts
    across the sweep, through ``display`` (e.g. ``dataset.display``) when given. Then, per layer,
    the distance to the untransformed features relative to their norm, and p(true label): thin
    coloured lines for the examples, a thick black line for the mean over every image swept.
    """
    if len(sweeps) == 0:
        raise ValueError("draw_invariance needs at least one sweep")
    show = display if display is not None else (lambda x: x)
    fig, axes = new_figure(len(sweeps), 2 + len(layers), figsize=(size * (2.4 + len(layers)), size * len(sweeps)),
                           squeeze=False, width_ratios=(1.4, *([1] * (len(layers) + 1))))
    colours = [CLASS_COLOURS[i % len(CLASS_COLOURS)] for i in range(examples)]
    for row, sweep in zip(axes, sweeps):
        picks = sorted(set(np.linspace(0, len(sweep.amounts) - 1, strip).round().astype(int).tolist()))
        amounts = [float(sweep.amounts[i]) for i in picks]
        tiles = torch.stack([show(transform(images[:examples], sweep.kind, a)) for a in amounts], 1).flatten(0, 1)
        show_image(row[0], _mosaic(tiles, len(picks), normalize=None))
        row[0].set_xlabel(f"{SWEEP_LABELS[sweep.kind]}: " + ", ".join(f"{a:.3g}" for a in amounts), fontsize=7)
        curves = [(sweep.normalized[layer], f"{layer}: distance / norm") for layer in layers] + [(sweep.prob, "p(true class)")]
        for ax, (values, title) in zip(row[1:], curves):
            x = sweep.amounts.numpy()
            for i in range(min(examples, len(values))):
                label = classes[int(sweep.labels[i])] if classes is not None else f"image {i}"
                ax.plot(x, values[i].numpy(), color=colours[i], linewidth=1, label=label)
            ax.plot(x, values.double().nanmean(0).numpy(), color="k", linewidth=2.2, label=f"mean of {len(values)}")
            ax.set_title(title, fontsize=8)
            ax.set_xlabel(SWEEP_LABELS[sweep.kind], fontsize=7)
            ax.tick_params(labelsize=6)
        row[-1].set_ylim(-0.02, 1.02)
    axes[0, -1].legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=7, frameon=False)
    return fig


# ---------------------------------------------------------------- Fig. 8: masked parts

def draw_masks(images: torch.Tensor, masks: dict[str, torch.Tensor],
               display: Callable[[torch.Tensor], torch.Tensor] | None = None, fill: float = 0.0, size: float = 1.1) -> Figure:
    """Fig. 8's layout: a row per image (N, C, H, W, model input), the intact image first, then a
    column per entry of ``masks`` (name -> (N, H, W) bool) with those pixels set to ``fill``
    (model-input space; 0.0 is the dataset mean), shown through ``display`` when given."""
    if not masks:
        raise ValueError("draw_masks needs at least one set of masks")
    show = display if display is not None else (lambda x: x)
    columns = [images] + [torch.where(m[:, None], torch.as_tensor(fill, dtype=images.dtype), images) for m in masks.values()]
    tiles = torch.stack([show(c) for c in columns], 1).flatten(0, 1)
    titles = ["original", *masks] + [""] * (len(tiles) - len(columns))
    return image_grid(tiles, ncols=len(columns), titles=titles, size=size, normalize=None if display else True)


# ---------------------------------------------------------------- chapter 11: photos and single-unit projections

def draw_photos(photos, rows: Sequence[dict] | None = None, size: float = 1.9):
    """The photos in a row with their object boxes (yellow) and, given :func:`top5` rows, the top class."""
    titles = list(photos.names) if rows is None else [f"{r['photo']}\n→ {r['classes'][0]}" for r in rows]
    fig = image_grid(photos.display(), ncols=len(photos), titles=titles, size=size)
    for ax, (x0, y0, x1, y1) in zip(fig.axes, photos.boxes.tolist()):
        draw_box(ax, (y0, x0, y1, x1), linewidth=1.5)
    return fig


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
