"""Receptive fields from the traced graph, against facts computed another way: the Fig. 3 arithmetic
of the paper's nets, ResNet-18's published layer2 field (99 px), the pixels an all-positive copy
of the model sends gradient to, and where the deconvnet's projections land."""

from functools import cache

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from zfkit import models, receptive_field
from zfkit.deconv import Deconvnet
from zfkit.graph import model_graph
from zfkit.rf import ReceptiveField, receptive_fields
from zfkit.topk import layer_activations

pytestmark = pytest.mark.usefixtures("one_thread")


@cache
def resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18().eval()


@cache
def mobilenet_v2():
    torch.manual_seed(0)
    return torchvision.models.mobilenet_v2().eval()


class _Gated(nn.Module):
    """Zero padding, a convolution, then a squeeze-excitation gate: the gate's global pooling
    makes every output unit depend on every pixel, also those of the map after it."""

    def __init__(self):
        super().__init__()
        self.pad, self.conv = nn.ZeroPad2d(1), nn.Conv2d(1, 4, 3)
        self.squeeze, self.excite = nn.AdaptiveAvgPool2d(1), nn.Conv2d(4, 4, 1)
        self.after, self.fc = nn.Conv2d(4, 4, 3), nn.Linear(4, 2)

    def forward(self, x):
        x = self.conv(self.pad(x))
        gated = x * torch.sigmoid(self.excite(self.squeeze(x)))
        return self.fc(self.after(gated).mean((2, 3)))


def test_resnet18_layer2_sees_99_pixels():
    field = receptive_field(resnet18(), "layer2")
    assert (field.size, field.jump) == (99, 8)
    assert receptive_field(resnet18(), resnet18().layer2) == field  # the module itself: the same layer


def test_paper_nets_keep_their_fig3_fields():
    """The values the features-only arithmetic gave before zfkit traced models (start: centre of unit 0)."""
    zf = models.zfnet()
    expected = {"conv1": (7, 2, 2.0), "pool1": (11, 4, 4.0), "conv2": (27, 8, 12.0), "pool2": (43, 16, 20.0),
                "conv3": (75, 16, 20.0), "conv5": (139, 16, 20.0), "pool5": (171, 32, 36.0),
                "fc6": (331, 331, 116.0), "fc8": (331, 331, 116.0)}  # fc: the span of pool5's 6x6 units
    for layer, (size, jump, start) in expected.items():
        assert receptive_field(zf, layer) == ReceptiveField(size, jump, start, whole=layer.startswith("fc")), layer
    fields = receptive_fields(zf)
    assert fields[zf.features.conv1] == ReceptiveField(7, 2, 2.0) and fields[zf.classifier.fc7].size == 331


def test_modules_called_twice_have_no_single_field():
    fields = receptive_fields(resnet18(), (3, 64, 64))
    assert resnet18().layer1[0].relu not in fields  # one ReLU module, called twice per block
    assert fields[resnet18().layer1[0].conv2].size == 27 and fields[resnet18().fc].jump == fields[resnet18().fc].size


def _support(model: nn.Module, layer: str, unit: tuple[int, int], size: tuple[int, int, int]) -> tuple[int, ...]:
    """(top, left, bottom, right) of the input pixels where one unit has non-zero gradient, in a copy
    of the model with positive weights, ReLUs and batch norm bypassed and max-pools averaged: with
    nothing negative, nothing cancels, so the gradient is non-zero exactly on the unit's support."""
    graph = model_graph(model)
    op = graph.layer(layer).op

    def positive(o, args, kwargs):
        m = o.module
        if o.kind in ("relu", "relu6", "bn"):
            return args[0]
        if o.kind == "maxpool":
            return F.avg_pool2d(args[0], m.kernel_size, m.stride, m.padding, m.ceil_mode)
        if o.kind == "conv":
            return F.conv2d(args[0], m.weight.abs().double() + 1e-3, None, m.stride, m.padding, m.dilation, m.groups)
        if isinstance(m, nn.Linear):
            return F.linear(args[0], m.weight.abs().double() + 1e-3)
        return None

    x = torch.ones(1, *size, dtype=torch.float64, requires_grad=True)
    graph.run(x, [op], positive)[op.node][(0, slice(None)) + unit].sum().backward()
    rows, cols = x.grad[0].abs().sum(0).nonzero(as_tuple=True)
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


CASES = [
    (resnet18, (3, 96, 96), ["conv1", "maxpool", "layer1", "layer2", "layer2.0.downsample"]),
    (mobilenet_v2, (3, 96, 96), ["features.1", "features.4", "features.7"]),
    (lambda: models.zfnet_mini().eval(), (1, 32, 32), ["conv1", "pool1", "conv3", "fc6"]),
    (lambda: _Gated().eval(), (1, 16, 16), ["conv", "excite", "after", "fc"]),
]


@pytest.mark.parametrize("build, size, layers", CASES, ids=["resnet18", "mobilenet_v2", "zfnet_mini", "gated"])
def test_the_box_is_exactly_where_gradients_reach(build, size, layers):
    model = build()
    for layer in layers:
        field = receptive_field(model, layer, size)
        acts = layer_activations(model, torch.zeros(1, *size), layer)
        n = acts.shape[-1] if acts.dim() == 4 else 1
        for unit in {(0, 0), (n // 2, n // 2), (n - 1, n - 1), (0, n - 1)}:
            top, left, bottom, right = field.box(*unit)
            inside = (max(top, 0), max(left, 0), min(bottom, size[1]), min(right, size[2]))
            index = unit if acts.dim() == 4 else ()
            assert _support(model, layer, index, size) == inside, (layer, unit)


@pytest.mark.parametrize("build, layer", [(resnet18, "layer2"), (resnet18, "layer1.1"), (mobilenet_v2, "features.6")])
def test_deconvnet_projections_lie_inside_the_box(build, layer):
    model = build()
    torch.manual_seed(1)
    images = torch.randn(2, 3, 128, 128)
    channels = [0, 3, 7]
    field = receptive_field(model, layer, (3, 128, 128))
    acts = layer_activations(model, images, layer)[:, channels]
    projections = Deconvnet(model).project(images, layer, channels=channels)
    for b in range(len(images)):
        for j in range(len(channels)):
            y, x = divmod(int(acts[b, j].flatten().argmax()), acts.shape[-1])
            top, left, bottom, right = field.box(y, x)
            outside = projections[b, j].abs().sum(0)
            outside[max(top, 0):bottom, max(left, 0):right] = 0
            assert projections[b, j].abs().sum() > 0 and outside.max() == 0, (b, j)


class _Factorised(nn.Module):
    """Inception's factorised 7x7: a 1x7 convolution, then a 7x1 one (a field wide, then square)."""

    def __init__(self):
        super().__init__()
        self.wide, self.tall = nn.Conv2d(1, 2, (1, 7), padding=(0, 3)), nn.Conv2d(2, 2, (7, 1), stride=2)

    def forward(self, x):
        return self.tall(torch.relu(self.wide(x)))


@pytest.mark.parametrize("size", [(1, 16, 16), (1, 16, 22)])
def test_a_field_may_differ_between_rows_and_columns(size):
    """A 1x7 convolution sees 1x7 pixels, a non-square image gives maps that mix more columns: the
    columns' field rides in ``cols``, and the box is still exactly where gradients reach."""
    model = _Factorised().eval()
    wide = receptive_field(model, "wide", size)
    assert wide.shape == (1, 7) and wide.cols == ReceptiveField(7, 1, 0.0)
    assert wide.patch(torch.ones(size), 0, 0).shape == (1, 1, 7)
    assert receptive_field(model, "tall", size).shape == (7, 7)
    for layer in ("wide", "tall"):
        field = receptive_field(model, layer, size)
        h, w = layer_activations(model, torch.zeros(1, *size), layer).shape[-2:]
        for unit in {(0, 0), (h // 2, w // 2), (h - 1, w - 1), (0, w - 1)}:
            top, left, bottom, right = field.box(*unit)
            assert _support(model, layer, unit, size) == (max(top, 0), max(left, 0), min(bottom, size[1]),
                                                          min(right, size[2])), (layer, unit)
    assert receptive_fields(model, size)[model.wide].shape == (1, 7)
