"""Issue #24: no engine fails for want of a deconvnet, on every modern torchvision family.

efficientnet_b0 (SiLU, squeeze-excitation), mobilenet_v3_large (Hardswish, Hardsigmoid gates),
regnet_y_400mf (SE gates), convnext_tiny (LayerNorm, GELU, layer scale), shufflenet_v2_x1_0
(channel shuffle) and inception_v3 (functional pooling, factorised 1x7 convolutions), each as its
default builder makes it (random weights, ten classes), built once, on small random images. Top-k,
Fig. 2's panels, invariance, correspondence, the sanity checks and the explorers run on each, and
every figure of a projection says which policy made it where that is not the paper's deconvnet.
"""

from dataclasses import dataclass

import pytest
import torch
import torchvision
from torch import nn

from zfkit import Deconvnet, correspondence, invariance, layer_activations, occlusion, receptive_field, topk, viz
from zfkit.gallery import top_projections
from zfkit.images import TensorImages
from zfkit.sanity import cascade, draw_rules, project, sweep, weight_layers
from zfkit.widgets import LayerExplorer, OcclusionExplorer, ReceptiveFieldExplorer

pytestmark = pytest.mark.usefixtures("one_thread")

# family: (image side, a shallow layer, a deeper block, what its projections' caption names; () for pure ReLU nets)
FAMILIES = {
    "efficientnet_b0": (64, "features.1", "features.4", ("SiLU: relu(g)", "gates frozen")),
    "mobilenet_v3_large": (64, "features.1", "features.5", ("Hardswish: relu(g)", "gates frozen")),
    "regnet_y_400mf": (64, "stem", "trunk_output.block2", ("gates frozen",)),
    "convnext_tiny": (64, "features.0", "features.3", ("GELU: relu(g)", "σ frozen")),
    "shufflenet_v2_x1_0": (64, "conv1", "stage3", ()),
    "inception_v3": (75, "Conv2d_2b_3x3", "Mixed_6c", ()),
}


@dataclass
class Family:
    name: str
    model: nn.Module
    data: TensorImages
    shallow: str
    layer: str
    caption: tuple[str, ...]


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request) -> Family:
    """One family's model, built once for the module, and six images of its side."""
    side, shallow, layer, caption = FAMILIES[request.param]
    torch.manual_seed(0)
    extra = {"init_weights": False} if request.param == "inception_v3" else {}  # the builder's warning, not its net
    model = getattr(torchvision.models, request.param)(weights=None, num_classes=10, **extra).eval()
    images = torch.randn(6, 3, side, side, generator=torch.Generator().manual_seed(0))
    return Family(request.param, model, TensorImages(images, torch.arange(6) % 10, tuple("abcdefghij")), shallow,
                  layer, caption)


def _suptitles(fig) -> list[str]:
    return [sub.get_suptitle() for sub in fig.subfigs]


def test_the_caption_names_each_policy_that_acts(family):
    caption = Deconvnet(family.model).caption(family.layer)
    assert all(part in caption for part in family.caption), caption
    assert (caption == "") == (not family.caption)  # a pure ReLU net is the paper's deconvnet: nothing to say


def test_topk_keeps_each_maps_strongest_images(family):
    scan = topk(family.model, family.data, family.layer, k=3, progress=False)
    per_image = layer_activations(family.model, family.data.images, family.layer).flatten(2).amax(2)
    expected = per_image.sort(0, descending=True).values[:3].T
    torch.testing.assert_close(scan.values, expected, rtol=1e-5, atol=1e-5 * float(per_image.abs().max()))


def test_gallery_panels_are_cut_to_the_field_and_say_their_policy(family):
    panels = top_projections(family.model, family.data, family.layer, [0, 1], k=2, progress=False)
    field = receptive_field(family.model, family.layer, tuple(family.data.images.shape[1:]))
    caption = Deconvnet(family.model).caption(family.layer)
    for panel in panels:
        assert panel.projections.shape == panel.patches.shape == (2, 3, *field.shape)
        assert panel.projections.abs().sum() > 0 and panel.policy == caption
    title = _suptitles(viz.draw_panels(panels))[0]
    assert title.replace("\n", " ") == f"{family.layer} map 0 {caption}".strip()  # the caption only when there is one
    rules = draw_rules({"deconvnet": panels})
    assert (rules.get_suptitle() if caption else "") == caption == rules.get_suptitle()


def test_invariance_and_correspondence_run(family):
    images, labels = family.data.images[:3], family.data.targets[:3]
    result = invariance(family.model, images, labels, "translate", [0, 4], layers=(family.shallow, family.layer))
    assert torch.allclose(result.normalized[family.shallow][:, 0], torch.zeros(3), atol=1e-4)
    assert (result.normalized[family.layer][:, 1] > 0).all() and ((0 <= result.prob) & (result.prob <= 1)).all()
    masks = torch.zeros(3, *images.shape[-2:], dtype=torch.bool)
    masks[:, 8:24, 8:24] = True
    delta = correspondence(family.model, images, masks, layers=(family.shallow, family.layer)).delta
    assert all(0 <= d.mean <= 1 for d in delta.values())


def test_sanity_projects_maps_and_logits_and_sweeps_a_cascade(family):
    images = family.data.images[:2]
    top = list(weight_layers(family.model))[-1]  # the classifier
    assert project(family.model, images, top, [1, 2]).abs().sum() > 0
    result = sweep(family.model, [next(cascade(family.model))], images, family.layer, [0, 1], rules=("deconvnet",))
    assert result.steps == [top] and result.examples["deconvnet"].shape == (2, 2, *images.shape[1:])


def test_the_explorers_run_and_caption_their_projections(family):
    caption = Deconvnet(family.model).caption(family.layer)
    maps = LayerExplorer(family.model, family.data, layers=[family.shallow, family.layer], layer=family.layer, k=2)
    assert _suptitles(maps.redraw())[0].endswith(caption)
    side = family.data.images.shape[-1]
    sweeps = OcclusionExplorer(family.model, family.data, patch=side // 2, stride=side // 4, layer=family.layer)
    fig = sweeps.redraw()
    assert sweeps.result.activity.shape == (3, 3) and sweeps.result.projection_note == caption
    projection = next(ax for ax in fig.axes if ax.get_title() == "(c) its projection")
    assert projection.get_xlabel().replace("\n", " ") == caption


def test_factorised_convolutions_get_rectangular_fields():
    """Inception's 1x7 convolutions see wider than tall: Fig. 2's patches and the field explorer keep that shape."""
    model = torchvision.models.inception_v3(weights=None, num_classes=10, init_weights=False).eval()
    data = TensorImages(torch.randn(3, 3, 75, 75), torch.arange(3), tuple("abcdefghij"))
    wide = "Mixed_6b.branch7x7_2.conv"
    (panel,) = top_projections(model, data, wide, [0], k=2, progress=False)
    height, width = receptive_field(model, wide, (3, 75, 75)).shape
    assert height < width and panel.patches.shape == panel.projections.shape == (2, 3, height, width)
    fields = ReceptiveFieldExplorer(model, data.images[0], layer=wide, layers=[wide, "Mixed_6b.branch7x7_3.conv"])
    assert fields.patch.shape == (3, height, width)
    fields.controls["layer"].value = "Mixed_6b.branch7x7_3.conv"  # then 7x1: square again
    assert fields.field.shape[0] == fields.field.shape[1] and fields.patch.shape[1:] == fields.field.shape


class _Upsampling(nn.Module):
    """A convolution, then a nearest-neighbour upsampling (no deconvnet rule), then a classifier."""

    def __init__(self):
        super().__init__()
        self.conv, self.up, self.head = nn.Conv2d(1, 4, 3), nn.Upsample(scale_factor=2), nn.Conv2d(4, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.head(self.up(self.conv(x).relu())).mean((2, 3)))


@pytest.mark.parametrize("projection", [None, False])
def test_an_occlusion_figure_without_a_projection_says_why(projection):
    torch.manual_seed(0)
    result = occlusion(_Upsampling().eval(), torch.randn(1, 16, 16), 1, 4, 4, layer="head", projection=projection)
    assert result.projection is None
    fig = viz.draw_occlusion(result, torch.rand(1, 16, 16))
    panel = next(ax for ax in fig.axes if ax.get_title() == "(c) no projection")
    text = " ".join(panel.texts[0].get_text().split())  # the note, shortened to fit: the result keeps all of it
    if projection is False:
        assert text == result.projection_note == "not computed (projection=False)"
    else:
        assert text.startswith("not computed: Deconvnet cannot reverse Upsample module 'up' in 'up'") and text[-1] == "…"
