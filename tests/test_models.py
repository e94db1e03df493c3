"""The paper's networks: Fig. 3 shapes, parameter counts, receptive fields, Table 3 variants."""

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from zfkit import models
from zfkit.layers import resolve
from zfkit.rf import receptive_field

# Fig. 3 of the ECCV paper: output (channels, height, width) after each named stage.
ZFNET_SHAPES = {
    "conv1": (96, 110, 110), "pool1": (96, 55, 55), "norm1": (96, 55, 55),
    "conv2": (256, 26, 26), "pool2": (256, 13, 13), "norm2": (256, 13, 13),
    "conv3": (384, 13, 13), "conv4": (384, 13, 13), "conv5": (256, 13, 13),
    "pool5": (256, 6, 6), "fc6": (4096,), "fc7": (4096,), "fc8": (1000,),
}
ALEXNET_SHAPES = {
    "conv1": (96, 55, 55), "pool1": (96, 27, 27), "conv2": (256, 27, 27), "pool2": (256, 13, 13),
    "conv3": (384, 13, 13), "conv4": (384, 13, 13), "conv5": (256, 13, 13), "pool5": (256, 6, 6),
    "fc6": (4096,), "fc7": (4096,), "fc8": (1000,),
}
# Receptive-field sizes stated by the foundation issue (from Fig. 3's kernel/stride arithmetic).
ZFNET_RF = {"conv1": 7, "pool1": 11, "conv2": 27, "pool2": 43, "conv3": 75, "conv4": 107, "conv5": 139, "pool5": 171}


def _count(model):
    return sum(p.numel() for p in model.parameters())


def test_zfnet_parameter_count(zf):
    assert _count(zf) == 62_357_608
    assert models.describe(zf).total_params == 62_357_608


def test_alexnet_parameter_count(alex):
    assert _count(alex) == 62_378_344


@pytest.mark.parametrize("build, shapes", [(models.zfnet, ZFNET_SHAPES), (models.alexnet, ALEXNET_SHAPES)])
def test_output_shapes_follow_the_paper(build, shapes):
    rows = models.describe(build(), (3, 224, 224))
    for name, shape in shapes.items():
        assert rows.row(name).output_shape == shape, name
    flat = rows.row("pool5").output_shape
    assert flat[0] * flat[1] * flat[2] == 9216


def test_forward_gives_logits_per_class():
    torch.manual_seed(0)
    model = models.zfnet(num_classes=7).eval()
    assert model(torch.randn(2, 3, 224, 224)).shape == (2, 7)


def test_receptive_fields_match_fig3_arithmetic(zf):
    rows = models.describe(zf)
    for name, size in ZFNET_RF.items():
        assert rows.row(name).rf_size == size, name
        assert receptive_field(zf, name).size == size
    assert rows.row("conv1").rf_jump == 2 and rows.row("conv5").rf_jump == 16


def test_receptive_field_is_where_gradients_reach():
    """Independent check: input pixels with non-zero gradient of a conv3 unit lie inside its box."""
    torch.manual_seed(0)
    model = models.zfnet_mini().eval()
    x = torch.randn(1, 1, 32, 32, requires_grad=True)
    acts = {}
    h = resolve(model, "conv3").module.register_forward_hook(lambda m, i, o: acts.setdefault("a", o))
    model(x)
    h.remove()
    channel = acts["a"][0].flatten(1).amax(1).argmax()
    y, x_ = divmod(int(acts["a"][0, channel].argmax()), acts["a"].shape[-1])
    acts["a"][0, channel, y, x_].backward()
    # Exact zeros outside the field, on any kernel: the gradient starts from one unit, and a direct or
    # GEMM convolution's backward (oneDNN or ATen's; one image rules out NNPACK, which needs 16) sums
    # products with exact zeros there. A Winograd kernel could leave rounding noise; none runs here.
    ys, xs = (x.grad[0, 0].abs() > 0).nonzero(as_tuple=True)
    assert len(ys) > 0
    top, left, bottom, right = receptive_field(model, "conv3").box(y, x_)
    assert ys.min() >= top and ys.max() < bottom and xs.min() >= left and xs.max() < right


def test_macs_agree_with_torch_flop_counter():
    for model, size in [(models.zfnet(), (3, 224, 224)), (models.zfnet_mini(), (1, 32, 32))]:
        model.eval()
        with FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *size))
        per_module = counter.get_flop_counts()
        weighted = [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        # LRN's channel sums are a small GEMM too (zfkit.lrn); the paper's MACs count conv and fc layers.
        assert 2 * models.describe(model).total_macs == sum(sum(per_module[f"ConvNet.{n}"].values()) for n in weighted)


def test_layer_names_and_rectified_outputs(zf):
    names = [n for n, _ in zf.features.named_children()] + [n for n, _ in zf.classifier.named_children()]
    for name in ["conv1", "pool1", "norm1", "conv2", "pool2", "norm2", "conv3", "conv4", "conv5", "pool5", "fc6", "fc7", "fc8"]:
        assert name in names
    assert isinstance(resolve(zf, "conv5").module, torch.nn.ReLU)  # "conv5" means the rectified output
    assert isinstance(resolve(zf, "fc8").module, torch.nn.Linear)


def test_paper_initialisation(zf):
    w = zf.features.conv2.weight
    assert abs(w.std().item() - 1e-2) < 5e-4 and abs(w.mean().item()) < 5e-4
    assert all((m.bias == 0).all() for m in zf.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))


@pytest.mark.parametrize("build", [models.zfnet_mini, models.alexnet_mini])
def test_minis_take_32x32_and_share_the_upper_layers(build):
    model = build().eval()
    assert model(torch.zeros(3, 1, 32, 32)).shape == (3, 10)
    rows = models.describe(model)
    assert rows.row("pool2").output_shape == (96, 4, 4)
    assert rows.row("conv5").output_shape == (96, 4, 4)


def test_alexnet_mini_samples_the_input_twice_as_coarsely():
    zf, ax = models.zfnet_mini(), models.alexnet_mini()
    assert ax.features.conv1.stride[0] == 2 * zf.features.conv1.stride[0]
    assert ax.features.conv1.kernel_size[0] > zf.features.conv1.kernel_size[0]


def test_width_scales_the_convolutions():
    half = models.zfnet_mini(width=0.5)
    assert half.features.conv1.out_channels == 16 and half.features.conv3.out_channels == 64


def test_spec_round_trip_rebuilds_the_same_architecture():
    model = models.variant(models.zfnet_mini(), remove=("fc7",), conv_widths={"conv4": 40})
    spec = models.ArchSpec.from_dict(model.spec.to_dict())
    assert spec == model.spec
    assert [p.shape for p in models.build(spec).parameters()] == [p.shape for p in model.parameters()]


# ---------------------------------------------------------------- Table 3 variants

def _fc_names(model):
    return [n for n, m in model.classifier.named_children() if isinstance(m, torch.nn.Linear)]


def test_variant_removes_middle_convolutions():
    m = models.variant(models.alexnet(), remove=("conv3", "conv4"))
    assert [n for n, c in m.features.named_children() if isinstance(c, torch.nn.Conv2d)] == ["conv1", "conv2", "conv5"]
    assert m.features.conv5.in_channels == 256
    assert m(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)


@pytest.mark.parametrize("remove, fcs", [(("fc7",), ["fc6", "fc8"]), (("fc6", "fc7"), ["fc8"])])
def test_variant_removes_fully_connected_layers(remove, fcs):
    m = models.variant(models.zfnet_mini(), remove=remove)
    assert _fc_names(m) == fcs
    assert m(torch.zeros(1, 1, 32, 32)).shape == (1, 10)


def test_variant_four_layer_net():
    m = models.variant(models.zfnet_mini(), remove=("conv3", "conv4", "fc6", "fc7"))
    assert len([c for c in m.modules() if isinstance(c, (torch.nn.Conv2d, torch.nn.Linear))]) == 4


def test_variant_widths():
    base = models.zfnet()
    wide_fc = models.variant(base, fc_width=8192)
    assert wide_fc.classifier.fc6.out_features == 8192 and wide_fc.classifier.fc7.in_features == 8192
    wide_conv = models.variant(base, conv_widths={"conv3": 512, "conv4": 1024, "conv5": 512})
    rows = models.describe(wide_conv)
    assert rows.row("conv4").output_shape == (1024, 13, 13)
    assert wide_conv.classifier.fc6.in_features == 512 * 6 * 6


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs, words", [
    ({"remove": ("conv9",)}, "conv9"),
    ({"remove": ("conv1",)}, "removable"),
    ({"conv_widths": {"conv7": 10}}, "conv7"),
    ({"fc_width": 0}, "fc_width"),
])
def test_variant_rejects_bad_requests(kwargs, words):
    with pytest.raises(ValueError, match=words):
        models.variant(models.zfnet_mini(), **kwargs)


@pytest.mark.parametrize("x, words", [
    (torch.zeros(1, 1, 28, 28), "32x32"),
    (torch.zeros(1, 3, 32, 32), "1 input channel"),
    (torch.zeros(1, 32, 32), "batch"),
    (torch.zeros(1, 1, 32, 32, dtype=torch.uint8), "floating-point"),
])
def test_forward_rejects_wrong_input_with_a_fix(x, words):
    with pytest.raises(ValueError, match=words):
        models.zfnet_mini()(x)


def test_unknown_layer_lists_the_real_ones(zf):
    with pytest.raises(ValueError, match="conv5"):
        resolve(zf, "conv6")


def test_torchvision_models_resolve_by_module():
    tv = torchvision.models.alexnet()
    layer = resolve(tv, tv.features[10])
    assert isinstance(layer.module, torch.nn.ReLU) and layer.index == 11
    assert models.describe(tv, (3, 224, 224)).row("features.12").output_shape == (256, 6, 6)
    assert receptive_field(tv, tv.features[10], (3, 224, 224)).size == 163


def test_ensemble_averages_the_members_softmax():
    torch.manual_seed(0)
    members = [models.zfnet_mini(width=0.25).eval() for _ in range(3)]
    x = torch.randn(4, 1, 32, 32)
    expected = torch.stack([m(x).softmax(1) for m in members]).mean(0)
    assert torch.allclose(models.Ensemble(members)(x).softmax(1), expected, atol=1e-6)
    with pytest.raises(ValueError, match="at least one"):
        models.Ensemble([])


# ---------------------------------------------------------------- where dropout acts

def test_dropout_acts_on_the_units_of_fc6_and_fc7_as_in_the_paper():
    """§3: "Dropout is used in the fully connected layers (6 and 7)": their rectified outputs are
    dropped; pool5's units reach fc6 whole, and fc8 sees fc7's dropped units."""
    net = models.zfnet_mini().train()
    assert [n for n, _ in net.classifier.named_children()] == ["fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8"]
    seen = {}
    net.classifier.fc6.register_forward_pre_hook(lambda m, args: seen.__setitem__("fc6_in", args[0].clone()))
    net.classifier.fc8.register_forward_pre_hook(lambda m, args: seen.__setitem__("fc8_in", args[0].clone()))
    x = torch.randn(4, 1, 32, 32)
    net(x)
    first = dict(seen)
    net(x)  # another dropout draw
    # exact: the same input through the same layers in the same batch shape and process repeats bit for bit
    assert torch.equal(first["fc6_in"], seen["fc6_in"])  # pool5 is never dropped
    assert not torch.equal(first["fc8_in"], seen["fc8_in"])  # fc7's units are
    assert (seen["fc8_in"] == 0).float().mean() > 0.4


def test_fc_inputs_dropout_is_torchvision_alexnets_layout():
    ours = models.build(models.ArchSpec(**{**models.zfnet().spec.__dict__, "dropout_site": "fc_inputs"}))
    theirs = torchvision.models.alexnet()
    assert [type(m) for m in ours.classifier] == [type(m) for m in theirs.classifier]
    with pytest.raises(ValueError, match="dropout_site must be one of 'fc_outputs', 'fc_inputs', got 'fc8'"):
        models.ArchSpec(**{**models.zfnet().spec.__dict__, "dropout_site": "fc8"})
