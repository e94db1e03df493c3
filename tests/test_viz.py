"""Figure helpers: display normalisation, grids, boxes, the Fig. 3 diagram, receptive fields."""

from dataclasses import replace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from zfkit import arch, models, viz  # noqa: E402


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_astronaut_is_an_offline_rgb_tensor_in_unit_range():
    image = viz.astronaut(64)
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert 0 <= image.min() < 0.1 and 0.9 < image.max() <= 1
    assert viz.astronaut().shape == (3, 224, 224)


def test_to_display_keeps_unit_range_images_and_reorders_tensors():
    image = torch.rand(3, 5, 7)
    shown = viz.to_display(image)
    assert shown.shape == (5, 7, 3)
    np.testing.assert_allclose(shown, image.permute(1, 2, 0).numpy(), atol=1e-7)


def test_to_display_rescales_out_of_range_values():
    shown = viz.to_display(torch.tensor([[[-2.0, 0.0], [1.0, 6.0]]]))
    assert shown.shape == (2, 2)  # one channel -> a 2-D image
    np.testing.assert_allclose(shown, [[0, 0.25], [0.375, 1]])
    np.testing.assert_allclose(viz.to_display(np.full((3, 3), 7.0)), 0.5)  # constant: mid-grey
    np.testing.assert_allclose(viz.to_display(np.array([[0.2, 0.4]]), normalize=True), [[0, 1]])


def test_to_display_reads_arrays_as_height_width_channels():
    assert viz.to_display(np.zeros((4, 6, 3))).shape == (4, 6, 3)


@pytest.mark.parametrize("shape", [(2, 4, 4), (4,), (1, 2, 3, 4)])
def test_to_display_rejects_other_shapes(shape):
    with pytest.raises(ValueError, match="channels"):
        viz.to_display(torch.zeros(shape))


def test_new_figure_is_not_left_open_in_pyplot():
    before = plt.get_fignums()
    fig, ax = viz.new_figure()
    assert plt.get_fignums() == before and fig.axes == [ax]


def test_image_grid_shows_each_image_and_hides_spare_axes():
    fig = viz.image_grid([torch.rand(1, 8, 8) for _ in range(5)], titles=list("abcde"))
    shown = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 6 and len(shown) == 5
    assert [ax.get_title() for ax in shown] == list("abcde")
    assert not fig.axes[-1].axison


def test_image_grid_validates_its_arguments():
    with pytest.raises(ValueError, match="at least one"):
        viz.image_grid([])
    with pytest.raises(ValueError, match="titles"):
        viz.image_grid([torch.rand(3, 4, 4)], titles=["a", "b"])


def test_draw_box_outlines_pixel_edges():
    fig, ax = viz.new_figure()
    rect = viz.draw_box(ax, (10, 20, 17, 27))
    assert rect.get_xy() == (19.5, 9.5) and (rect.get_width(), rect.get_height()) == (7, 7)
    assert not rect.get_fill()


def test_receptive_fields_figure_nests_one_box_per_layer():
    fig = viz.draw_receptive_fields(models.zfnet(), viz.astronaut(224))
    boxes = [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]
    assert [b.get_width() for b in boxes] == [7, 27, 75, 107, 139]
    centres = {b.get_x() + b.get_width() / 2 for b in boxes}
    assert max(centres) - min(centres) <= 8  # all centred near the image centre


def test_receptive_fields_figure_names_the_valid_layers():
    with pytest.raises(ValueError, match="conv5"):
        viz.draw_receptive_fields(models.zfnet_mini(), torch.rand(1, 32, 32), layers=("fc6",))


def test_architecture_diagram_recovers_kernels_and_strides():
    fig = viz.draw_architecture(models.zfnet())
    texts = "\n".join(_texts(fig))
    for fact in ("conv 7×7, stride 2 → 110", "max pool 3×3, stride 2 → 55",
                 "conv 5×5, stride 2 → 26", "max pool 3×3, stride 2 → 13", "256×6×6", "3×224×224"):
        assert fact in texts
    names = [t for t in _texts(fig) if t in {"input", "conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"}]
    assert names == ["input", "conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]


def test_architecture_diagram_from_rows_needs_the_input_size():
    rows = models.describe(models.alexnet_mini())
    with pytest.raises(ValueError, match="input_size"):
        viz.draw_architecture(rows)
    texts = "\n".join(_texts(viz.draw_architecture(rows, input_size=(1, 32, 32))))
    assert "conv 7×7, stride 2 → 16" in texts


def test_grating_figure_draws_input_and_each_layer():
    layers = [arch.first_layer(models.alexnet_mini()), arch.first_layer(models.zfnet_mini())]
    fig = viz.draw_grating_responses(0.2, layers)
    assert len(fig.axes[0].lines) == 3


def _occlusion_result(stride: int):
    from zfkit.occlusion import occlusion

    torch.manual_seed(0)
    model = models.zfnet_mini(width=0.25).eval()
    return occlusion(model, torch.randn(1, 32, 32), 2, 8, stride)


def test_occlusion_row_has_the_five_panels_of_fig7():
    result = _occlusion_result(stride=4)
    fig = viz.draw_occlusion(result, torch.rand(1, 32, 32), classes=[f"class {i}" for i in range(10)])
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[0] == "(a) class 2" and titles[1] == f"(b) conv5 map {result.channel} activity"
    assert titles[2:] == ["(c) its projection", "(d) p(class 2)", "(e) most probable class"]
    # the occluder is drawn where p(correct) is lowest
    worst = int(result.prob.flatten().argmin())
    square = fig.axes[0].patches[0]
    assert square.get_xy() == (int(result.xs[worst % 7]) - 0.5, int(result.ys[worst // 7]) - 0.5) and square.get_width() == 8
    # maps on the image's pixel frame: cells centred on occluder centres 3.5, 7.5, ..., 27.5
    b = next(ax for ax in fig.axes if ax.get_title().startswith("(b)"))
    assert b.images[0].get_array().shape == (7, 7) and b.images[0].get_extent() == [1.5, 29.5, 29.5, 1.5]
    e = next(ax for ax in fig.axes if ax.get_title().startswith("(e)"))
    legend = [t.get_text() for t in e.get_legend().get_texts()]
    assert legend == [f"class {c}" for c in sorted(set(result.top_class.flatten().tolist()))]
    assert fig._suptitle.get_text() == "7x7 occluder positions"


def test_occlusion_row_reflects_the_stride_and_shows_other_images():
    result = _occlusion_result(stride=2)
    fig = viz.draw_occlusion(result, torch.rand(1, 32, 32), others=torch.randn(4, 1, 12, 12))
    assert fig._suptitle.get_text() == "13x13 occluder positions"
    others = next(ax for ax in fig.axes if ax.get_title() == "(c) map on other images")
    assert others.images[0].get_array().shape == (25, 25)  # 2x2 tiles of 12 px with a 1 px gutter
    d = next(ax for ax in fig.axes if ax.get_title().startswith("(d)"))
    assert d.images[0].get_array().shape == (13, 13) and d.images[0].get_clim() == (0, 1)


def test_invariance_figure_has_a_row_per_sweep_and_a_curve_per_example():
    from zfkit.invariance import invariance

    torch.manual_seed(0)
    model = models.zfnet_mini(width=0.25).eval()
    images, labels = torch.randn(7, 1, 32, 32), torch.arange(7)
    sweeps = [invariance(model, images, labels, "translate", [-2, 0, 2]),
              invariance(model, images, labels, "rotate", [0, 90, 180, 270])]
    fig = viz.draw_invariance(sweeps, images, examples=5, classes=list("abcdefghij"), strip=3)
    assert len(fig.axes) == 2 * 4
    conv1 = fig.axes[1]
    assert conv1.get_title() == "conv1: distance / norm" and len(conv1.lines) == 6  # 5 examples + the mean
    assert conv1.lines[-1].get_label() == "mean of 7"
    assert [t.get_text() for t in fig.axes[3].get_legend().get_texts()] == ["a", "b", "c", "d", "e", "mean of 7"]
    strip = fig.axes[4].images[0].get_array()  # 5 images x 3 rotations of 32 px, 1 px gutters
    assert strip.shape == (5 * 33 - 1, 3 * 33 - 1)
    assert "rotation (degrees): 0, 180, 270" in fig.axes[4].get_xlabel()
    with pytest.raises(ValueError, match="at least one sweep"):
        viz.draw_invariance([], images)


def test_masks_figure_has_the_original_then_a_column_per_mask():
    images = torch.rand(3, 1, 8, 8)
    part = torch.zeros(3, 8, 8, dtype=torch.bool)
    part[:, :2, :2] = True
    fig = viz.draw_masks(images, {"corner": part, "all": torch.ones_like(part)}, display=lambda x: x / 2 + 0.25, fill=0.0)
    assert len(fig.axes) == 9 and [ax.get_title() for ax in fig.axes[:3]] == ["original", "corner", "all"]
    assert fig.axes[3].get_title() == ""  # titles on the first row only
    corner = fig.axes[4].images[0].get_array()  # second image with its corner set to the fill, then displayed
    assert np.allclose(corner[:2, :2], 0.25) and np.allclose(corner[2:, 2:], images[1, 0, 2:, 2:] / 2 + 0.25)
    with pytest.raises(ValueError, match="at least one"):
        viz.draw_masks(images, {})


def _panel(channel, k=9, size=5):
    from zfkit.gallery import Panel

    return Panel("conv2", channel, torch.linspace(2, 1, k), torch.arange(k), torch.randn(k, 1, size, size),
                 torch.rand(k, 1, size, size), torch.arange(k) % 3)


def _subfigure_titles(fig):
    found, stack = [], list(fig.subfigs)
    while stack:
        sub = stack.pop(0)
        found.append(sub.get_suptitle())
        stack.extend(sub.subfigs)
    return found


def test_panels_say_which_side_is_projections_and_which_patches():
    panels = [_panel(3), _panel(7)]
    fig = viz.draw_panels(panels, labels=["a", "b", "c"])  # by default: every Fig. 2 panel says which is which
    titles = _subfigure_titles(fig)
    assert titles.count("projections") == 2 and titles.count("patches") == 2  # every map's row, both halves
    assert "conv2 map 3" in titles and "conv2 map 7" in titles
    assert len(fig.axes) == 2 * 2 * 9
    plain = _subfigure_titles(viz.draw_panels(panels, sides=None))
    assert "projections" not in plain and "patches" not in plain
    with pytest.raises(ValueError, match="sides"):
        viz.draw_panels(panels, sides=("projections",))


def test_evolution_grid_has_a_column_per_snapshot_and_marks_the_untrained_start():
    from zfkit.gallery import Evolution

    epochs, maps = [0, 1, 4], 2
    evo = Evolution("conv1", epochs, [5, 9], torch.ones(3, maps), torch.zeros(3, maps, dtype=torch.long),
                    torch.randn(3, maps, 1, 5, 5))
    fig = viz.draw_evolution([evo, evo.head(1)])
    assert len(fig.axes) == 3 * len(epochs)
    assert [ax.get_title() for ax in fig.axes[:3]] == ["ep 0\nuntrained", "ep 1", "ep 4"]
    assert [ax.get_ylabel() for ax in fig.axes[::3]] == ["conv1\n#5", "conv1\n#9", "conv1\n#5"]
    assert fig.get_suptitle() == ""  # the paper's deconvnet: nothing to say
    silu = replace(evo, policy="deconvnet; SiLU: relu(g); 2 gates frozen")
    assert viz.draw_evolution([silu]).get_suptitle() == "conv1: deconvnet; SiLU: relu(g); 2 gates frozen"
