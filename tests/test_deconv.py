"""The deconvnet against independent references: an autograd oracle, Captum, closed forms."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from zfkit import models
from zfkit.deconv import Deconvnet
from zfkit.deconv import _Signal
from zfkit.oracle import autograd_projection
from zfkit.rf import receptive_field


def _cosine(a, b):
    a, b = a.flatten().double(), b.flatten().double()
    return (a @ b / (a.norm() * b.norm())).item()  # no eps: projections of deep random nets are tiny


def _relative_error(ours, ref):
    return ((ours.double() - ref.double()).norm() / ref.double().norm()).item()


def _randomised(model, std):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, std)
    return model.eval()


CASES = {
    "zfnet_mini": (lambda: _randomised(models.zfnet_mini(), 0.05), 32, ["conv1", "pool1", "conv2", "norm2", "conv3", "conv5", "pool5"]),
    "zfnet": (lambda: _randomised(models.zfnet(), 0.02), 224, ["conv2", "conv5"]),
    "tv_alexnet": (lambda: torchvision.models.alexnet().eval(), 224, [4, 10]),
    "tv_vgg11": (lambda: torchvision.models.vgg11().eval(), 64, [3, 13]),
    # modern graphs: in-place, reused ReLU modules and residual additions (resnet18), ReLU6, depthwise
    # convolutions and batch norm (mobilenet_v2), a non-leaf block and a leaf inside a block
    "tv_resnet18": (lambda: torchvision.models.resnet18().eval(), 64, ["maxpool", "layer2", "layer3.0.conv2"]),
    "tv_mobilenet_v2": (lambda: torchvision.models.mobilenet_v2().eval(), 64, ["features.4", "features.11.conv.1"]),
    # the real ImageNet classifier of chapter 11: its own weights, TF "same" padding modules, ReLU6
    "efficientnet_lite0": (lambda: models.efficientnet_lite0(pretrained=True).eval(), 224, ["stage2", "stage4.1.depthwise"]),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    torch.manual_seed(1)
    build, size, layers = CASES[request.param]
    model = build()
    layers = [model.features[i] if isinstance(i, int) else i for i in layers]
    return model, torch.randn(2, _in_channels(model), size, size), layers


def _in_channels(model):
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels


@pytest.mark.parametrize("mode", ["max", "map"])
@pytest.mark.parametrize("rule", ["deconvnet", "guided", "gradient"])
def test_projection_matches_autograd_oracle(case, mode, rule):
    model, images, layers = case
    channels = [0, 7]
    for layer in layers:
        out = Deconvnet(model, rule=rule).project(images, layer, channels=channels, mode=mode)
        assert out.shape == (2, 2, *images.shape[1:])
        # The oracle runs one image. Its forward pass must be the engine's to the last bit, or a ReLU
        # input within rounding of 0 takes the other side of the guided/gradient mask (seen with ATen's
        # scalar kernels, whose sums round differently for a batch of one and of two): each image is
        # therefore also projected alone, and the batch of two must give the same pictures as these.
        alone = torch.cat([Deconvnet(model, rule=rule).project(images[b:b + 1], layer, channels=channels, mode=mode)
                           for b in range(2)])
        for b in range(2):
            for j, ch in enumerate(channels):
                ref = autograd_projection(model, images[b], layer, ch, mode, rule)
                if ref.abs().max() == 0:  # a dead unit projects to exactly 0 on both sides (ReLU)
                    assert alone[b, j].abs().max() == 0
                    continue
                assert _cosine(alone[b, j], ref) >= 0.9999, (layer, b, ch)
                assert _relative_error(alone[b, j], ref) <= 1e-4, (layer, b, ch)
        _same_up_to_mask_flips(out, alone)


def _same_up_to_mask_flips(batched, alone):
    """Batch shape changes only rounding: the pictures agree closely, or a unit within rounding of 0 was
    dead in one pass only (then both are tiny next to the layer's strongest projection)."""
    scale = float(alone.abs().max()) or 1.0
    for a, b in zip(batched.flatten(0, 1), alone.flatten(0, 1)):
        if b.abs().max() <= 1e-5 * scale:
            assert a.abs().max() <= 1e-5 * scale
        else:
            assert _cosine(a, b) >= 0.999


def test_cone_cropping_equals_the_uncropped_walk():
    """Mode "max" walks only the cone; the same seed walked over whole maps gives the same pixels."""
    model = _randomised(models.zfnet_mini(), 0.05)
    x = torch.randn(3, 1, 32, 32)
    d = Deconvnet(model)
    cone = d.project(x, "conv5", mode="max")
    target = d.graph.layer("conv5").op
    forward = d._forward(x, target)
    acts = forward.values[target.node]
    seed = torch.zeros_like(acts).unsqueeze(1).repeat(1, acts.shape[1], 1, 1, 1)
    for b in range(3):
        for c in range(acts.shape[1]):
            pos = acts[b, c].flatten().argmax()
            seed[b, c, c].view(-1)[pos] = acts[b, c].view(-1)[pos]
    img = torch.arange(3).repeat_interleave(acts.shape[1])
    full = d._walk(d.graph.ancestors(target), target, _Signal(seed.flatten(0, 1)), forward, img).g
    assert torch.allclose(cone.flatten(0, 1), full, atol=1e-6, rtol=1e-5)


def test_linear_conv_stack_is_the_chain_of_transposed_convolutions():
    torch.manual_seed(0)
    stack = nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.Conv2d(4, 5, 5, padding=2), nn.Conv2d(5, 3, 3, stride=2))
    x = torch.randn(1, 2, 21, 21)
    out = Deconvnet(stack).project(x, stack[2], mode="map")
    with torch.no_grad():
        a1 = stack[0](x)
        a2 = stack[1](a1)
        a3 = stack[2](a2)
        c1, c2, c3 = stack
        for k in range(3):
            g = torch.zeros_like(a3)
            g[:, k] = a3[:, k]
            g = F.conv_transpose2d(g, c3.weight, stride=2, output_padding=a2.shape[-1] - ((a3.shape[-1] - 1) * 2 + 3))
            g = F.conv_transpose2d(g, c2.weight, padding=2)
            g = F.conv_transpose2d(g, c1.weight, stride=2, padding=1, output_padding=x.shape[-1] - ((a1.shape[-1] - 1) * 2 - 2 + 3))
            assert torch.allclose(out[0, k], g[0], atol=1e-5)


def test_projection_is_zero_outside_the_receptive_field():
    model = _randomised(models.zfnet(), 0.02)
    x = torch.randn(1, 3, 224, 224)
    d = Deconvnet(model)
    for layer in ["conv2", "conv3"]:
        out = d.project(x, layer, channels=range(0, 64, 8))
        target = d.graph.layer(layer).op
        acts = d._forward(x, target).values[target.node]
        rf = receptive_field(model, layer)
        for j, c in enumerate(range(0, 64, 8)):
            y, x_ = divmod(int(acts[0, c].argmax()), acts.shape[-1])
            top, left, bottom, right = rf.box(y, x_)
            mask = torch.ones(224, 224, dtype=torch.bool)
            mask[max(top, 0):bottom, max(left, 0):right] = False
            # exact by construction: mode "max" walks only the unit's cone and pastes it into zeros, so
            # pixels outside the field are never written (nor reached by any product)
            assert out[0, j][:, mask].abs().max() == 0
            assert (out[0, j].abs().max() > 0) == (acts[0, c].max() > 0)


def test_captum_neuron_deconvolution_agrees_without_lrn():
    captum = pytest.importorskip("captum.attr")
    torch.manual_seed(0)
    model = torchvision.models.alexnet().eval()
    x = torch.randn(1, 3, 224, 224)
    conv5 = model.features[10]
    ours = Deconvnet(model).project(x, conv5, channels=[3, 50], mode="max")
    with torch.no_grad():
        act = model.features[:12](x)
    for j, ch in enumerate([3, 50]):
        y, x_ = divmod(int(act[0, ch].argmax()), act.shape[-1])
        attr = captum.NeuronDeconvolution(model, model.features[11]).attribute(x.clone(), neuron_selector=(ch, y, x_))
        assert _cosine(ours[0, j], attr[0]) >= 0.9999


def test_ties_go_to_the_first_unit_in_row_major_order():
    stack = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False))
    with torch.no_grad():
        stack[0].weight.fill_(1.0)
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 2] = x[0, 0, 3, 0] = 5.0
    out = Deconvnet(stack).project(x, stack[0], mode="max")
    # exact on any kernel: a 1x1 convolution with weight 1 and no bias computes 5 * 1, rounding nothing
    assert out[0, 0, 0, 1, 2] == 5.0 and out[0, 0, 0, 3, 0] == 0.0


@pytest.mark.parametrize("call, words", [
    (lambda d: d.project(torch.randn(1, 1, 32, 32), "conv9"), "unknown layer"),
    (lambda d: d.project(torch.randn(1, 1, 32, 32), "fc6"), "no spatial output"),
    (lambda d: d.project(torch.randn(1, 1, 32, 32), "conv6"), "close matches: conv"),
    (lambda d: d.project(torch.randn(1, 1, 32, 32, dtype=torch.float64), "conv1"), "float64.*float32"),
    (lambda d: d.project(torch.randn(1, 1, 32, 32), "conv1", channels=[40]), "out of range"),
    (lambda d: d.project(torch.randn(1, 32, 32), "conv1"), "batch"),
    (lambda d: d.project(torch.randn(1, 3, 32, 32), "conv1"), "channel"),
    (lambda d: d.project(torch.zeros(1, 1, 32, 32, dtype=torch.int64), "conv1"), "floating point"),
    (lambda d: d.project(torch.full((1, 1, 32, 32), float("nan")), "conv1"), "NaN"),
    (lambda d: d.project(torch.randn(1, 1, 32, 32), "conv1", mode="mean"), "mode"),
])
def test_bad_input_is_explained(call, words):
    with pytest.raises(ValueError, match=words):
        call(Deconvnet(models.zfnet_mini(width=0.5)))


def test_unknown_rule_lists_the_three():
    with pytest.raises(ValueError, match="deconvnet, guided, gradient"):
        Deconvnet(models.zfnet_mini(), rule="lrp")


@pytest.mark.parametrize("c_in, c_out, k, stride, size", [(96, 3, 7, 2, 9), (8, 1, 5, 2, 6), (4, 3, 3, 3, 5),
                                                          (4, 2, 1, 2, 4), (6, 3, 4, 2, 1)])
def test_subpixel_transposed_convolution_equals_conv_transpose2d(c_in, c_out, k, stride, size):
    from zfkit.deconv import _subpixel_conv_t

    g = torch.randn(2, c_in, size, size + 1, dtype=torch.float64)
    weight = torch.randn(c_in, c_out, k, k, dtype=torch.float64)
    expected = torch.nn.functional.conv_transpose2d(g, weight, stride=stride)
    torch.testing.assert_close(_subpixel_conv_t(g, weight, stride), expected)


def test_oracle_agreement_is_the_lowest_cosine_and_refuses_all_zero_projections():
    from zfkit.oracle import agreement

    torch.manual_seed(0)
    model = models.zfnet_mini(width=0.25).eval()
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    images = torch.randn(2, 1, 32, 32)
    for rule in ("deconvnet", "guided", "gradient"):
        assert agreement(model, images, "conv3", [0, 1], rule) >= 0.9999
    with torch.no_grad():
        model.features.conv1.weight.zero_(), model.features.conv1.bias.fill_(-1.0)  # every unit dead
    with pytest.raises(ValueError, match="every projection is zero"):
        agreement(model, images, "conv2", [0])


def test_captum_agrees_on_resnet18():
    """Captum's NeuronDeconvolution hooks resnet18's (in-place, reused) ReLU modules, so for a block's
    output it computes the same deconvnet, residual additions and all."""
    captum = pytest.importorskip("captum.attr")
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 96, 96)
    channels = [3, 9]
    ours = Deconvnet(model).project(x, "layer2", channels=channels)
    seen = {}
    handle = model.layer2.register_forward_hook(lambda m, i, o: seen.setdefault("a", o.clone()))
    with torch.no_grad():
        model(x)
    handle.remove()
    for j, ch in enumerate(channels):
        y, x_ = divmod(int(seen["a"][0, ch].argmax()), seen["a"].shape[-1])
        theirs = captum.NeuronDeconvolution(model, model.layer2).attribute(x.clone(), neuron_selector=(ch, y, x_))
        theirs = theirs * seen["a"][0, ch, y, x_]  # Captum seeds the unit with 1, zfkit with its activation
        assert _cosine(ours[0, j], theirs[0]) >= 0.9999
        assert _relative_error(ours[0, j], theirs[0]) <= 1e-4
