"""Explorers: controls drive the figure; the static figure is displayed before the controls.

The widgets are changed programmatically, as a reader would with the mouse, and the rendered
matplotlib figure is read back (the receptive-field box is the first Rectangle of the left axes).
"""

import matplotlib

matplotlib.use("Agg")

import ipywidgets  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from zfkit import models, viz, widgets  # noqa: E402
from zfkit.profiles import HEADLESS_ENV  # noqa: E402


@pytest.fixture(scope="module")
def zf():
    return models.zfnet()


@pytest.fixture(scope="module")
def photo():
    return viz.astronaut(224)


@pytest.fixture
def explorer(zf, photo):
    return widgets.ReceptiveFieldExplorer(zf, photo, layer="conv5")


def _box(fig: Figure) -> Rectangle:
    return next(p for p in fig.axes[0].patches if isinstance(p, Rectangle))


class _Recorder:
    """Stands in for IPython.display.display: records what is displayed and updated, in order."""

    def __init__(self):
        self.shown, self.updates = [], []

    def __call__(self, obj, display_id=None):
        self.shown.append(obj)
        return self if display_id else None

    def update(self, obj):
        self.updates.append(obj)


@pytest.fixture
def recorder(monkeypatch):
    rec = _Recorder()
    monkeypatch.setattr("IPython.display.display", rec)
    return rec


def test_default_state_is_the_centre_unit_of_conv5(explorer):
    assert explorer.layer == "conv5" and explorer.unit == (6, 6)  # 13x13 map
    assert explorer.controls["y"].max == explorer.controls["x"].max == 12
    # conv5's field is 139 px (Fig. 3 arithmetic), its units 16 px apart, unit 0 centred on pixel 20
    assert explorer.box == (116 - 69, 116 - 69, 116 + 70, 116 + 70)


def test_render_draws_the_box_and_the_patch(explorer, photo):
    fig = explorer.render()
    box = _box(fig)
    assert box.get_xy() == (46.5, 46.5) and box.get_width() == box.get_height() == 139
    patch = fig.axes[1].images[0].get_array()
    assert patch.shape == (139, 139, 3)
    assert torch.equal(explorer.patch, photo[:, 47:186, 47:186])  # exact: the patch is a crop (a copy)


def test_moving_the_unit_moves_the_box_by_the_jump(explorer):
    before = _box(explorer.redraw()).get_xy()
    explorer.controls["x"].value = 7
    after = _box(explorer.figure).get_xy()
    assert after == (before[0] + 16, before[1])
    explorer.controls["y"].value = 4
    assert _box(explorer.figure).get_xy() == (before[0] + 16, before[1] - 32)


def test_changing_the_layer_resizes_box_and_slider_ranges(explorer):
    explorer.controls["layer"].value = "conv1"
    assert explorer.controls["y"].max == explorer.controls["x"].max == 109  # 110x110 map
    assert _box(explorer.figure).get_width() == 7
    # the unit nearest the old centre pixel 116: conv1 unit i is centred on 2 + 2 i
    assert explorer.unit == (57, 57) and explorer.box == (113, 113, 120, 120)
    explorer.controls["layer"].value = "pool1"
    assert explorer.controls["x"].max == 54 and _box(explorer.figure).get_width() == 11
    explorer.controls["layer"].value = "pool5"
    assert explorer.controls["x"].max == 5 and _box(explorer.figure).get_width() == 171


def test_a_field_past_the_border_is_drawn_whole_with_grey_padding(explorer):
    explorer.controls["layer"].value = "conv5"
    explorer.controls["x"].value = 0
    top, left, bottom, right = explorer.box
    assert left == 20 - 69 < 0
    assert explorer.figure.axes[0].get_xlim()[0] <= left - 0.5
    assert torch.all(explorer.patch[:, :, : -left] == 0.5)  # exact: the padding is the grey value itself


def test_layer_choices_are_the_convolutions_and_poolings(explorer):
    assert explorer.controls["layer"].options == ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5")


def test_one_control_change_redraws_once(explorer, monkeypatch):
    calls = []
    render = explorer.render
    monkeypatch.setattr(explorer, "render", lambda: calls.append(1) or render())
    explorer.controls["layer"].value = "conv2"  # also moves both sliders
    assert len(calls) == 1
    with explorer.hold():
        explorer.controls["x"].value = 0
        explorer.controls["y"].value = 0
    assert len(calls) == 2


def test_static_figure_is_displayed_before_the_controls(explorer, recorder):
    explorer.show(live=True)
    assert isinstance(recorder.shown[0], Figure) and recorder.shown[0] is explorer.figure
    assert isinstance(recorder.shown[1], ipywidgets.Box)
    assert list(recorder.shown[1].children) == list(explorer.controls.values())


def test_controls_fall_back_to_a_hint_without_a_kernel(explorer):
    bundle = explorer.panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"].startswith("[interactive controls")


def test_controls_update_the_displayed_figure(explorer, recorder):
    explorer.show(live=True)
    explorer.controls["layer"].value = "conv3"
    assert recorder.updates == [explorer.figure] and _box(recorder.updates[0]).get_width() == 75


def test_outside_a_kernel_the_figure_is_shown_with_a_note_on_how_to_explore(explorer, recorder):
    explorer._ipython_display_()
    assert len(recorder.shown) == 2 and isinstance(recorder.shown[0], Figure)
    note = recorder.shown[1]
    assert isinstance(note, widgets.Note) and "\n" not in note.text
    assert "`make lab`" in note.text and "a layer and a unit" in note.text
    assert repr(note) == note._repr_markdown_() == note.text  # the same line in JupyterLab, HTML and a terminal


def test_live_controls_come_with_a_one_line_hint(explorer, recorder):
    explorer.show(live=True)
    assert [type(x) for x in recorder.shown] == [Figure, widgets.Controls, widgets.Note]
    assert recorder.shown[2].text.startswith("Explorer: pick a layer and a unit") and "\n" not in recorder.shown[2].text


def test_a_headless_kernel_gets_the_note_not_the_controls(explorer, recorder, monkeypatch):
    """The book's runner sets ZFKIT_HEADLESS: its stored notebooks carry no controls that cannot be redrawn."""
    monkeypatch.setattr(widgets, "_in_kernel", lambda: True)
    monkeypatch.setenv(HEADLESS_ENV, "1")
    explorer.show()
    assert [type(x) for x in recorder.shown] == [Figure, widgets.Note] and "make lab" in recorder.shown[1].text
    monkeypatch.delenv(HEADLESS_ENV)
    explorer.show()
    assert isinstance(recorder.shown[3], widgets.Controls)


def test_a_minimal_explorer_subclass_gets_the_whole_mechanism(recorder):
    class Title(widgets.Explorer):
        def __init__(self):
            super().__init__({"n": ipywidgets.IntSlider(value=1, min=0, max=5)})

        def render(self):
            fig, ax = viz.new_figure()
            ax.set_title(f"n={self.controls['n'].value}")
            return fig

    explorer = Title()
    explorer.show(live=False)
    explorer.controls["n"].value = 4
    figures = [f for f in recorder.shown + recorder.updates if isinstance(f, Figure)]
    assert [f.axes[0].get_title() for f in figures] == ["n=1", "n=4"]
    assert recorder.shown[-1].text.endswith("to pick its settings.")


def test_works_on_torchvision_alexnet():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.alexnet(weights=None)
    explorer = widgets.ReceptiveFieldExplorer(model, torch.zeros(3, 224, 224), layer="features.0")
    assert explorer.controls["x"].max == 54 and explorer.field.size == 11
    explorer.controls["layer"].value = "features.12"  # the last max-pool: 6x6
    assert explorer.controls["x"].max == 5 and _box(explorer.figure).get_width() == explorer.field.size


@pytest.mark.parametrize("kwargs, message", [
    ({"layer": "fc6"}, "not among the explorer's layers conv1, pool1, conv2"),
    ({"layer": "fc6", "layers": ["conv1", "fc6"]}, "'fc6' has no spatial output"),
    ({"layer": "conv5", "unit": (13, 0)}, "outside"),
])
def test_bad_arguments_name_the_valid_choices(zf, photo, kwargs, message):
    with pytest.raises(ValueError, match=message):
        widgets.ReceptiveFieldExplorer(zf, photo, **kwargs)


def test_a_batch_is_rejected_with_a_hint(zf, photo):
    with pytest.raises(ValueError, match=r"images\[0\]"):
        widgets.ReceptiveFieldExplorer(zf, photo[None])


def test_layer_explorer_follows_its_controls():
    from zfkit.data import TensorImages
    from zfkit.widgets import LayerExplorer

    torch.manual_seed(0)
    model = models.zfnet_mini(width=0.5).eval()
    ds = TensorImages(torch.randn(30, 1, 32, 32), torch.arange(30) % 10, tuple("abcdefghij"))
    explorer = LayerExplorer(model, ds, layers=("conv1", "conv3"), k=4)
    explorer.redraw()
    first = explorer.figure
    assert explorer.controls["channel"].max == 15  # conv1 of the half-width mini has 16 maps
    explorer.controls["layer"].value = "conv3"
    assert explorer.controls["channel"].max == 63 and explorer.figure is not first
    assert "conv3 map 0" in explorer.figure.subfigs[0]._suptitle.get_text()
    explorer.controls["channel"].value = 5
    assert "conv3 map 5" in explorer.figure.subfigs[0]._suptitle.get_text()
    with pytest.raises(ValueError, match="out of range"):
        LayerExplorer(model, ds, layers=("conv1",), channel=99)


@pytest.fixture(scope="module")
def occlusion_setup():
    from zfkit.data import TensorImages

    torch.manual_seed(0)
    model = models.zfnet_mini(width=0.25).eval()
    ds = TensorImages(torch.randn(4, 1, 32, 32), torch.tensor([3, 1, 4, 1]), tuple("abcdefghij"),
                      mean=torch.full((1, 32, 32), 0.5))
    return model, ds


def _map(fig: Figure, title_start: str):
    ax = next(a for a in fig.axes if a.get_title().startswith(title_start))
    return ax.images[0].get_array()


def test_occlusion_explorer_follows_image_patch_and_stride(occlusion_setup):
    model, ds = occlusion_setup
    explorer = widgets.OcclusionExplorer(model, ds, index=0, patch=8, stride=4)
    fig = explorer.redraw()
    assert _map(fig, "(b)").shape == _map(fig, "(d)").shape == (7, 7)  # range(0, 25, 4)
    assert fig._suptitle.get_text() == "7x7 occluder positions" and "(d) p(d)" in [a.get_title() for a in fig.axes]
    explorer.controls["stride"].value = 2
    assert _map(explorer.figure, "(b)").shape == (13, 13) and explorer.result.ys.tolist() == list(range(0, 25, 2))
    explorer.controls["patch"].value = 16
    assert _map(explorer.figure, "(e)").shape == (9, 9) and explorer.result.patch == 16
    explorer.controls["index"].value = 2
    assert "(a) e" in [a.get_title() for a in explorer.figure.axes] and explorer.result.target == 4
    # the image panel shows display pixels: the model input plus the dataset's mean image
    shown = explorer.figure.axes[0].images[0].get_array()
    assert np.allclose(shown, (ds.images[2, 0] + 0.5).clamp(0, 1).numpy(), atol=1e-6)


def test_occlusion_explorer_reuses_sweeps(occlusion_setup, monkeypatch):
    model, ds = occlusion_setup
    explorer = widgets.OcclusionExplorer(model, ds, stride=8)
    first = explorer.result
    explorer.controls["stride"].value = 4
    explorer.controls["stride"].value = 8
    assert explorer.result is first


def test_occlusion_explorer_shows_the_static_figure_first(occlusion_setup, recorder):
    model, ds = occlusion_setup
    explorer = widgets.OcclusionExplorer(model, ds, stride=8)
    explorer.show(live=True)
    assert isinstance(recorder.shown[0], Figure) and isinstance(recorder.shown[1], ipywidgets.Box)
    explorer.controls["patch"].value = 4
    assert recorder.updates == [explorer.figure] and _map(recorder.updates[0], "(b)").shape == (4, 4)


@pytest.mark.parametrize("kwargs, words", [
    ({"index": 4}, "index must be an int in 0 … 3"),
    ({"patch": 33}, "patch must be an int in 1 … 32"),
    ({"stride": 0}, "stride must be an int in 1 … 32"),
])
def test_occlusion_explorer_bad_arguments(occlusion_setup, kwargs, words):
    model, ds = occlusion_setup
    with pytest.raises(ValueError, match=words):
        widgets.OcclusionExplorer(model, ds, **kwargs)
    with pytest.raises(ValueError, match="TensorImages"):
        widgets.OcclusionExplorer(model, [(torch.zeros(1, 32, 32), 0)])


def test_explorers_take_any_cnn_and_its_layer_names():
    """Issue #17: a ResNet's blocks and convolutions in the dropdowns, its last convolution for occlusion."""
    from zfkit.data import TensorImages

    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=4).eval()
    ds = TensorImages(torch.randn(6, 3, 64, 64), torch.arange(6) % 4, tuple("abcd"))
    fields = widgets.ReceptiveFieldExplorer(model, ds.images[0], layer="layer1", layers=["layer1", "layer2"])
    assert fields.field.size == 43 and fields.controls["x"].max == 15
    fields.controls["layer"].value = "layer2"
    assert fields.field.size == 99 and fields.controls["x"].max == 7
    default = widgets.ReceptiveFieldExplorer(model, ds.images[0])
    assert default.controls["layer"].options[:2] == ("conv1", "maxpool") and default.layer == "layer4.1.conv2"
    maps = widgets.LayerExplorer(model, ds, layers=["layer1", "layer3"], k=2)
    assert maps.widths == {"layer1": 64, "layer3": 256}
    assert "layer1 map 0" in maps.redraw().subfigs[0]._suptitle.get_text()
    sweep = widgets.OcclusionExplorer(model, ds, patch=32, stride=16)
    assert sweep.layer == "layer4.1.conv2" and sweep.result.activity.shape == (3, 3)
