"""Interactive explorers that never show as an empty box.

A notebook executed headless (papermill, nbval) and rendered to HTML keeps no live widgets, so an
explorer first displays a static figure of its default state, which is what the book shows. In a
kernel it then displays its controls, and every change redraws *that same figure output* through
its display id: the reader gets one figure that follows the controls instead of a stale copy above
a live one. A one-line note follows: without controls it says how to get them (``make lab``), with
them what they pick. The book's runner sets ``$ZFKIT_HEADLESS`` for its kernels: no browser draws
their widgets, so a stored notebook gets the note rather than controls that cannot be redrawn.
The drawing itself is a plain method, ``render() -> Figure``, so tests drive the
controls programmatically and inspect the figure without any kernel.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import ipywidgets
import torch
from matplotlib.figure import Figure
from torch import nn

from . import viz
from .graph import eval_mode, model_graph
from .profiles import HEADLESS_ENV
from .occlusion import OcclusionResult, occlusion
from .rf import ReceptiveField, receptive_field

__all__ = ["Controls", "Note", "Explorer", "ReceptiveFieldExplorer", "LayerExplorer", "OcclusionExplorer"]


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (where widget controls can be shown)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None


def _live() -> bool:
    """True where a reader can use controls: inside a kernel that a browser shows."""
    return _in_kernel() and not os.environ.get(HEADLESS_ENV)


@dataclass(frozen=True)
class Note:
    """One line shown under an explorer, as Markdown in Jupyter and as the same text elsewhere."""

    text: str

    def _repr_markdown_(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text


class Controls(ipywidgets.HBox):
    """A row of controls whose text fallback says how to use them.

    Viewers without a kernel (nbviewer, GitHub, a notebook reopened without running it) show a
    widget's ``text/plain`` form, which ipywidgets makes a truncated ``HBox(children=...`` repr.
    """

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = "[interactive controls: run this notebook in Jupyter to use them]"
        return bundle


class Explorer:
    """Base class: ``controls`` (name -> widget), ``render()`` for their values, static-first display.

    Subclasses build their widgets, call ``super().__init__(controls)`` and implement ``render``;
    they may override ``sync`` to adjust dependent controls (e.g. slider ranges) before a redraw,
    and set ``picks`` (what the controls choose, for the note under the figure).
    """

    picks = "its settings"

    def __init__(self, controls: dict[str, ipywidgets.ValueWidget]):
        self.controls = controls
        self.figure: Figure | None = None  # the figure for the current control values
        self._handle = None  # display handle of the shown figure (None until shown in IPython)
        self._holding = False
        for control in controls.values():
            control.observe(self._on_change, names="value")

    def render(self) -> Figure:
        """A new figure for the current control values."""
        raise NotImplementedError

    def sync(self, name: str, old, new) -> None:
        """Adjust other controls after control ``name`` changed from ``old`` to ``new`` (default: nothing)."""

    def redraw(self) -> Figure:
        """Render the current state into ``figure`` and, once shown, into the notebook output."""
        self.figure = self.render()
        if self._handle is not None:
            self._handle.update(self.figure)
        return self.figure

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Change several controls with a single redraw at the end."""
        if self._holding:
            yield
            return
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
        self.redraw()

    def _on_change(self, change) -> None:
        if self._holding:
            return
        name = next(n for n, c in self.controls.items() if c is change["owner"])
        with self.hold():
            self.sync(name, change["old"], change["new"])

    @property
    def panel(self) -> Controls:
        """The controls laid out in one row."""
        return Controls(list(self.controls.values()))

    def note(self, live: bool) -> Note:
        """The line under the figure: what the controls pick (``live``), else how to get them."""
        if live:
            return Note(f"Explorer: pick {self.picks} with the controls above; "
                        "run this cell again if they are missing.")
        return Note(f"Explorer: run this notebook in JupyterLab (`make lab`) to pick {self.picks}.")

    def show(self, live: bool | None = None) -> None:
        """Display the static figure, then the controls (``live``, default: in a kernel a browser shows),
        then the one-line :meth:`note`."""
        from IPython.display import display

        live = _live() if live is None else live
        self._handle = display(self.redraw(), display_id=True)
        if live:
            display(self.panel)
        display(self.note(live))

    def _ipython_display_(self) -> None:
        self.show()


def _layers_of(model: nn.Module, kinds: tuple[type[nn.Module], ...]) -> list[str]:
    """The names of ``model``'s layers whose module is one of ``kinds``, in forward order: an
    explorer's default choices (``conv1`` … ``conv5`` for zfkit nets, every convolution of a ResNet)."""
    graph = model_graph(model)
    return [n for n in graph.names() if isinstance(graph.model.get_submodule(graph.aliases.get(n, n)), kinds)]


def _map_shapes(model: nn.Module, image: torch.Tensor, layers: list[str], layer: str) -> dict[str, tuple[int, ...]]:
    """The (C, h, w) shape of each of ``layers`` for one image, from one forward pass; ValueError
    unless ``layer`` is among them and each has feature maps (what an explorer shows)."""
    if layer not in layers:
        raise ValueError(f"layer {layer!r} is not among the explorer's layers {', '.join(map(str, layers))}; "
                         "pass layers= to offer it")
    graph = model_graph(model)
    chosen = [graph.layer(name) for name in layers]
    with torch.no_grad(), eval_mode(model):
        values = graph.run(image[None], [c.op for c in chosen], keep=False)
    shapes = {}
    for name, c in zip(layers, chosen):
        value = values[c.op.node]
        shapes[name] = tuple(value.shape[1:]) if isinstance(value, torch.Tensor) else ()
        if len(shapes[name]) != 3:
            raise ValueError(f"layer {name!r} has no spatial output (shape {shapes[name]}); an explorer shows "
                             "feature maps (C, H, W): offer convolutional layers or blocks")
    return shapes


class ReceptiveFieldExplorer(Explorer):
    """Pick a layer and a unit; see its receptive field on the image and the patch it sees.

    ``image`` is one (C, H, W) tensor of the model's input size (e.g. ``viz.astronaut(224)``).
    ``layers`` (default: every convolution and pooling, e.g. ``conv1`` … ``pool5``) are any of
    the model's layers with feature maps; ``unit`` is (y, x) in the layer's map, by default its
    centre. Switching layers keeps the box centred on the same place.
    """

    picks = "a layer and a unit"

    def __init__(self, model: nn.Module, image: torch.Tensor, layer: str | None = None,
                 unit: tuple[int, int] | None = None, layers: list[str] | None = None):
        if not isinstance(image, torch.Tensor) or image.dim() != 3:
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(f"image must be one (C, H, W) tensor, got {shape}; "
                             "index a batch with images[0]")
        self.model, self.image = model, image
        input_size = tuple(image.shape)
        choices = list(layers) if layers is not None else _layers_of(model, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d))
        layer = layer if layer is not None else ("conv5" if "conv5" in choices else choices[-1])
        self.map_sizes = {n: shape[-1] for n, shape in _map_shapes(model, image, choices, layer).items()}
        self.fields: dict[str, ReceptiveField] = {n: receptive_field(model, n, input_size) for n in choices}
        size = self.map_sizes[layer]
        y, x = unit if unit is not None else ((size - 1) // 2, (size - 1) // 2)
        if not (0 <= y < size and 0 <= x < size):
            raise ValueError(f"unit {unit} is outside {layer}'s {size}x{size} map; use 0 <= y, x < {size}")
        style = {"continuous_update": False}
        super().__init__({
            "layer": ipywidgets.Dropdown(options=choices, value=layer, description="layer"),
            "y": ipywidgets.IntSlider(value=y, min=0, max=size - 1, description="unit y", **style),
            "x": ipywidgets.IntSlider(value=x, min=0, max=size - 1, description="unit x", **style),
        })

    @property
    def layer(self) -> str:
        return self.controls["layer"].value

    @property
    def unit(self) -> tuple[int, int]:
        return self.controls["y"].value, self.controls["x"].value

    @property
    def field(self) -> ReceptiveField:
        return self.fields[self.layer]

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of the current unit's receptive field on the image."""
        return self.field.box(*self.unit)

    @property
    def patch(self) -> torch.Tensor:
        """The input patch the current unit sees, mid-grey where its field reaches past the image."""
        return self.field.patch(self.image, *self.unit, fill=0.5)

    def sync(self, name: str, old, new) -> None:
        """On a layer change: new slider ranges, and the unit nearest the old unit's centre."""
        if name != "layer":
            return
        before, after, size = self.fields[old], self.fields[new], self.map_sizes[new]
        for axis, was, now in (("y", before, after), ("x", before.columns, after.columns)):
            slider = self.controls[axis]
            value = min(max(round((was.start + slider.value * was.jump - now.start) / now.jump), 0), size - 1)
            slider.max = max(slider.max, size - 1)  # widen first so the value is never clamped twice
            slider.value = value
            slider.max = size - 1

    def render(self) -> Figure:
        fig, (left, right) = viz.new_figure(1, 2, figsize=(8.5, 4.2), width_ratios=(1.6, 1))
        viz.show_image(left, self.image)
        top, lft, bottom, rgt = box = self.box
        viz.draw_box(left, box)
        centre_y, centre_x = (top + bottom - 1) / 2, (lft + rgt - 1) / 2
        left.plot([centre_x], [centre_y], "+", color="#ffd400", markersize=8)
        height, width = self.image.shape[-2:]
        left.set_xlim(min(-0.5, lft - 0.5), max(width - 0.5, rgt - 0.5))
        left.set_ylim(max(height - 0.5, bottom - 0.5), min(-0.5, top - 0.5))
        left.set_facecolor("0.85")
        size = self.map_sizes[self.layer]
        y, x = self.unit
        left.set_title(f"{self.layer} unit (y={y}, x={x}) of its {size}x{size} map", fontsize=9)
        rows, cols = self.field, self.field.columns
        apart = rows.jump if rows.jump == cols.jump else f"{rows.jump}x{cols.jump}"
        viz.show_image(right, self.patch, f"what it sees: {rows.size}x{cols.size} px (units {apart} px apart)")
        return fig


class LayerExplorer(Explorer):
    """Pick a layer and a feature map; see its top-k projections beside their image patches (Fig. 2).

    ``layers`` (default: every convolution, ``conv1`` … ``conv5`` for zfkit nets) are any of the
    model's layers with feature maps. The top-k scan of a layer runs once, the first time the layer is picked, and is kept; each map
    then costs only k deconvnet projections.
    """

    picks = "a layer and a feature map"

    def __init__(self, model: nn.Module, dataset, layers: list[str] | None = None, layer: str | None = None,
                 channel: int = 0, k: int = 9):
        layers = list(layers) if layers is not None else _layers_of(model, (nn.Conv2d,))
        layer = layer if layer is not None else layers[0]
        self.model, self.dataset, self.k = model, dataset, k
        self.classes = getattr(dataset, "classes", None)
        self.widths = {name: shape[0] for name, shape in _map_shapes(model, dataset.images[0], layers, layer).items()}
        if not 0 <= channel < self.widths[layer]:
            raise ValueError(f"channel {channel} is out of range for {layer} (0 … {self.widths[layer] - 1})")
        self._scans: dict = {}
        super().__init__({
            "layer": ipywidgets.Dropdown(options=list(layers), value=layer, description="layer"),
            "channel": ipywidgets.IntSlider(value=channel, min=0, max=self.widths[layer] - 1, description="map",
                                            continuous_update=False),
        })

    def sync(self, name: str, old, new) -> None:
        if name == "layer":
            slider = self.controls["channel"]
            slider.value = min(slider.value, self.widths[new] - 1)
            slider.max = self.widths[new] - 1

    def panel_for(self, layer: str, channel: int):
        """The :class:`zfkit.gallery.Panel` of one map (scanning the layer on first use)."""
        from .gallery import top_projections
        from .topk import topk

        if layer not in self._scans:
            self._scans[layer] = topk(self.model, self.dataset, layer, k=self.k, progress=False)
        return top_projections(self.model, self.dataset, layer, channel, k=self.k, scan=self._scans[layer])[0]

    def render(self) -> Figure:
        panel = self.panel_for(self.controls["layer"].value, self.controls["channel"].value)
        return viz.draw_panels([panel], labels=self.classes, size=1.0)


class OcclusionExplorer(Explorer):
    """Pick an image of ``dataset``, the occluder's size and its stride; see Fig. 7's row for it.

    ``dataset`` is a :class:`zfkit.data.TensorImages` (model inputs, labels, ``display`` for
    pixels); the target is each image's true label. ``layer`` is the one whose strongest map's
    activity is mapped (default ``conv5``, else the model's last convolution). Every sweep is
    kept, so going back to an earlier setting redraws without recomputing.
    """

    picks = "an image, the occluder's size and its stride"

    def __init__(self, model: nn.Module, dataset, index: int = 0, patch: int = 8, stride: int = 2,
                 layer: str | None = None):
        images = getattr(dataset, "images", None)
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            raise ValueError("dataset must hold its model inputs as .images (N, C, H, W) and labels as .targets, "
                             "like zfkit.data.TensorImages")
        if layer is None:  # the paper's conv5, else the model's last convolution
            convs = _layers_of(model, (nn.Conv2d,))
            layer = "conv5" if "conv5" in convs else convs[-1]
        _map_shapes(model, images[0], [layer], layer)
        side = min(images.shape[-2:])
        for name, value, high in (("index", index, len(images) - 1), ("patch", patch, side), ("stride", stride, side)):
            low = 0 if name == "index" else 1
            if not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be an int in {low} … {high}, got {value!r}")
        self.model, self.dataset, self.layer = model, dataset, layer
        self.classes = getattr(dataset, "classes", None)
        self._sweeps: dict[tuple[int, int, int], OcclusionResult] = {}
        style = {"continuous_update": False}
        super().__init__({
            "index": ipywidgets.BoundedIntText(value=index, min=0, max=len(images) - 1, description="image"),
            "patch": ipywidgets.IntSlider(value=patch, min=1, max=side, description="occluder", **style),
            "stride": ipywidgets.IntSlider(value=stride, min=1, max=side, description="stride", **style),
        })

    @property
    def result(self) -> OcclusionResult:
        """The occlusion sweep for the current controls (computed once per setting)."""
        key = tuple(self.controls[name].value for name in ("index", "patch", "stride"))
        if key not in self._sweeps:
            index, patch, stride = key
            self._sweeps[key] = occlusion(self.model, self.dataset.images[index], int(self.dataset.targets[index]),
                                          patch, stride, layer=self.layer)
        return self._sweeps[key]

    def render(self) -> Figure:
        index = self.controls["index"].value
        image = self.dataset.images[index]
        display = getattr(self.dataset, "display", None)
        pixels = display(image[None])[0] if display is not None else image
        return viz.draw_occlusion(self.result, pixels, classes=self.classes)
