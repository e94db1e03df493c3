"""The traced model view (zfkit.graph) and the deconvnet on graphs no Sequential describes."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from zfkit import models
from zfkit.deconv import Deconvnet
from zfkit.graph import KINDS, layer_names, model_graph
from zfkit.oracle import autograd_projection


class _Branches(nn.Module):
    """Inception-style: two branches concatenated, functional and in-place ReLUs, ``+=``, padding,
    average pooling, ReLU6 as hardtanh, a reshape round trip: every op kind a walk must reverse."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.left = nn.Conv2d(6, 4, 1)
        self.right = nn.Sequential(nn.Conv2d(6, 4, 3, padding=2, dilation=2), nn.BatchNorm2d(4), nn.ReLU6())
        self.merge = nn.Conv2d(8, 8, 3, stride=2, groups=2)
        self.pool = nn.AvgPool2d(2)
        self.top = nn.Conv2d(8, 5, 3, padding=1)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = F.pad(x, (1, 1, 1, 1))
        block = torch.cat([self.left(x).relu_(), self.right(x)], dim=1)
        block += torch.cat([x[:, :4], x[:, 2:6]], 1) * 0.5
        y = self.pool(F.hardtanh(self.merge(block), 0.0, 6.0))
        y = y.reshape(y.shape[0], -1).view(y.shape[0], 8, y.shape[2], y.shape[3])
        return F.relu(self.top(y), inplace=True)


def _batchnorm_statistics(model):
    torch.manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("rule", ["deconvnet", "guided", "gradient"])
@pytest.mark.parametrize("mode", ["max", "map"])
@pytest.mark.parametrize("layer", ["right", "merge", "top"])
def test_every_op_kind_equals_the_oracle(rule, mode, layer):
    torch.manual_seed(0)
    model = _batchnorm_statistics(_Branches())
    images = torch.randn(2, 3, 17, 17) * 3
    channels = [0, 3]
    out = Deconvnet(model, rule).project(images, layer, channels=channels, mode=mode)
    for b in range(2):
        for j, c in enumerate(channels):
            ref = autograd_projection(model, images[b], layer, c, mode, rule)
            torch.testing.assert_close(out[b, j], ref, atol=1e-5 * float(ref.abs().max()) + 1e-7, rtol=1e-4)


@pytest.mark.parametrize("rule, expected", [("deconvnet", [0.0, 3.0, 6.0]), ("guided", [0.0, 3.0, 0.0]),
                                            ("gradient", [0.0, 3.0, 0.0])])
def test_relu6_rules_in_closed_form(rule, expected):
    """x = (-1, 3, 7) through an identity 1x1 conv and ReLU6: the map (0, 3, 6) goes back rectified
    (deconvnet), or masked where 0 < x < 6 (guided, gradient): the clipped unit passes nothing."""
    net = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.ReLU6())
    nn.init.ones_(net[0].weight)
    x = torch.tensor([-1.0, 3.0, 7.0]).view(1, 1, 1, 3)
    out = Deconvnet(net, rule).project(x, "1", mode="map")
    assert out[0, 0, 0, 0].tolist() == expected  # exact: products by 1 and 0 round nothing


class _Gate(nn.Module):
    """Squeeze-excitation: a sigmoid of pooled features scales the features, then a head."""

    def __init__(self, product: bool = False):
        super().__init__()
        self.product = product
        self.conv, self.squeeze, self.head = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 2, 1)

    def forward(self, x):
        x = F.relu(self.conv(x))
        if self.product:  # fixed at construction, so the trace has one branch
            return self.head(x * F.relu(self.squeeze(x)))
        return self.head(x * torch.sigmoid(self.squeeze(x.mean((2, 3), keepdim=True))))


def test_a_gate_is_refused_by_name_when_strict():
    """strict=True keeps the refusals zfkit made before policies; the default projects (zfkit.policies)."""
    with pytest.raises(ValueError, match=r"cannot reverse sigmoid \(call_function\)"):
        Deconvnet(_Gate(), strict=True).project(torch.randn(1, 3, 8, 8), "head")
    with pytest.raises(ValueError, match="multiplies two signals"):
        Deconvnet(_Gate(product=True), strict=True).project(torch.randn(1, 3, 8, 8), "head")
    with pytest.raises(ValueError, match="gates='refuse'"):
        Deconvnet(_Gate(product=True), gates="refuse").project(torch.randn(1, 3, 8, 8), "head")
    assert Deconvnet(_Gate(), strict=True).project(torch.randn(1, 3, 8, 8), "conv").shape == (1, 4, 3, 8, 8)
    assert Deconvnet(_Gate()).project(torch.randn(1, 3, 8, 8), "head").policy == "deconvnet; 1 gate frozen"


def test_unsupported_module_is_named_with_its_place():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.GELU(), nn.Conv2d(4, 4, 1)))
    with pytest.raises(ValueError, match=r"cannot reverse GELU module '1.0' in '1.0'.*activations='rule'"):
        Deconvnet(net, strict=True).project(torch.randn(1, 3, 8, 8), "1")
    # below the refused op, projecting works; by default the GELU gets relu(g)
    assert Deconvnet(net, strict=True).project(torch.randn(1, 3, 8, 8), "0").shape == (1, 4, 3, 8, 8)
    assert Deconvnet(net).project(torch.randn(1, 3, 8, 8), "1").policy == "deconvnet; GELU: relu(g)"
    softmax = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.Softmax(dim=1), nn.Conv2d(4, 4, 1)))
    with pytest.raises(ValueError, match=r"cannot reverse Softmax module '1.0' in '1.0': it has no agreed"):
        Deconvnet(softmax).project(torch.randn(1, 3, 8, 8), "1")  # no policy makes a softmax elementwise


def test_layer_names_of_a_resnet():
    model = torchvision.models.resnet18()
    names = layer_names(model)
    for name in ["conv1", "maxpool", "layer1.0.conv2", "layer3", "layer3.1", "layer4", "fc"]:
        assert name in names
    assert "layer3.1.relu" not in names  # called twice per block: ambiguous
    graph = model_graph(model)
    assert graph.layer(model.layer3).name == "layer3"
    assert graph.layer("layer3").op is graph.layer(model.layer3).op
    with pytest.raises(ValueError, match="runs 2 times"):
        graph.layer("layer3.1.relu")
    with pytest.raises(ValueError, match="close matches: layer3"):
        graph.layer("layer33")
    with pytest.raises(ValueError, match="not part of this ResNet"):
        graph.layer(nn.ReLU())


def test_paper_names_of_zfkit_nets_mean_the_rectified_output():
    model = models.zfnet_mini()
    graph = model_graph(model)
    assert graph.layer("conv5").op.module is model.features.relu5
    assert graph.layer(model.features.conv5).name == "conv5"
    assert graph.layer("pool2").op.module is model.features.pool2
    assert layer_names(model)[:4] == ["conv1", "relu1", "pool1", "norm1"]


def test_a_block_output_equals_a_forward_hook_despite_in_place_relus():
    """ResNet's ReLUs run in place; the view runs them out of place, so the recorded output of a
    block is the value PyTorch's own forward gives it (a hook on the block), not a later overwrite."""
    torch.manual_seed(0)
    model = _batchnorm_statistics(torchvision.models.resnet18())
    x = torch.randn(2, 3, 64, 64)
    seen = {}
    handle = model.layer2.register_forward_hook(lambda m, i, o: seen.setdefault("out", o.clone()))
    with torch.no_grad():
        model(x)
    handle.remove()
    graph = model_graph(model)
    op = graph.layer("layer2").op
    with torch.no_grad():
        ours = graph.run(x, [op])[op.node]
    torch.testing.assert_close(ours, seen["out"])


def test_the_trace_is_reused_until_the_module_tree_changes():
    model = models.zfnet_mini()
    first = model_graph(model)
    assert model_graph(model) is first
    model.features.conv1 = nn.Conv2d(1, 32, 5, padding=2)
    assert model_graph(model) is not first


def test_every_kind_is_documented():
    graph = model_graph(_Branches())
    assert {op.kind for op in graph.ops} <= set(KINDS)


def test_the_readme_example_runs_offline():
    """README's "Your own model" example, as a user would paste it: resnet18 with random weights."""
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme[readme.index("## Your own model"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["maps"].shape == (2, 2, 3, 224, 224)
    assert scope["field"].size == 99
    assert scope["scan"].values.shape == (256, 2)
