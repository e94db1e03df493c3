"""Issue #24: the deconvnet, its autograd oracle and tracing on modern torchvision CNNs.

SiLU and squeeze-excitation (efficientnet_b0), Hardswish and Hardsigmoid gates (mobilenet_v3_large),
LayerNorm, layer scale and stochastic depth (convnext_tiny), channel shuffle's shape arithmetic
(shufflenet_v2_x1_0), functional max-pooling (inception_v3). Random weights as built, small inputs.
Each policy of zfkit.policies is checked in closed form on a one-unit net, then the engine against
the oracle, which implements the policies with autograd rather than the engine's steps.
"""

from functools import cache

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.ops import StochasticDepth

from zfkit import layer_activations, model_graph, occlusion
from zfkit.deconv import Deconvnet
from zfkit.oracle import autograd_projection
from zfkit.policies import Policy

pytestmark = pytest.mark.usefixtures("one_thread")

RULES = ("deconvnet", "guided", "gradient")


def _cosine(a, b):
    a, b = a.flatten().double(), b.flatten().double()
    return (a @ b / (a.norm() * b.norm())).item()


def _relative_error(ours, ref):
    return ((ours.double() - ref.double()).norm() / ref.double().norm()).item()


# ---------------------------------------------------------------- the rules in closed form

X = torch.tensor([-2.0, -0.5, 0.5, 2.0])


def _unit_net(middle: nn.Module) -> nn.Sequential:
    """Identity 1x1 convolution, ``middle``, then a 1x1 convolution adding 1: projecting the last in
    mode "map" sends g = act(x) + 1 (positive at x = -2, negative at x = -0.5 for SiLU) down to
    ``middle``, and its signal below comes back unchanged through the first convolution."""
    net = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), middle, nn.Conv2d(1, 1, 1))
    with torch.no_grad():
        net[0].weight.fill_(1.0), net[2].weight.fill_(1.0), net[2].bias.fill_(1.0)
    return net.eval()


def _silu_slope(x):
    s = torch.sigmoid(x)
    return s * (1 + x * (1 - s))


SLOPES = {"SiLU": (nn.SiLU(), _silu_slope),
          "Hardswish": (nn.Hardswish(), lambda x: torch.where(x.abs() < 3, (2 * x + 3) / 6, (x >= 3).float())),
          "LeakyReLU": (nn.LeakyReLU(0.1), lambda x: torch.where(x > 0, 1.0, 0.1)),
          "ELU": (nn.ELU(), lambda x: torch.where(x > 0, 1.0, torch.exp(x)))}


@pytest.mark.parametrize("name", list(SLOPES))
@pytest.mark.parametrize("rule", RULES)
def test_activation_rules_in_closed_form(name, rule):
    """deconvnet relu(g) (the forward ignored), guided relu(g)·φ'(x)·[x>0], gradient g·φ'(x); the
    oracle implements the same."""
    act, slope = SLOPES[name]
    net = _unit_net(act)
    x = X.view(1, 1, 1, 4)
    g = act(X) + 1
    expected = {"deconvnet": g.clamp(min=0), "guided": g.clamp(min=0) * slope(X) * (X > 0),
                "gradient": g * slope(X)}[rule]
    ours = Deconvnet(net, rule).project(x, "2", mode="map")[0, 0, 0, 0]
    torch.testing.assert_close(ours, expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(autograd_projection(net, x[0], "2", 0, "map", rule)[0, 0], expected, rtol=1e-6, atol=1e-7)
    if rule == "deconvnet":
        assert ours[0] > 0  # x = -2 < 0 yet g > 0 passes: the deconvnet's rectification ignores the forward


class _SelfGate(nn.Module):
    """SiLU written as a gate: ``x * sigmoid(x)``, the sigmoid computed from x."""

    def forward(self, x):
        return x * torch.sigmoid(x)


@pytest.mark.parametrize("rule", RULES)
def test_a_frozen_gate_scales_by_its_forward_value(rule):
    """Frozen (deconvnet, guided): g·σ(x), nothing into the gate's branch, no rectification (a gate
    is no activation); the gradient's product rule gives g·SiLU'(x)."""
    net = _unit_net(_SelfGate())
    x = X.view(1, 1, 1, 4)
    g = F.silu(X) + 1
    expected = g * _silu_slope(X) if rule == "gradient" else g * torch.sigmoid(X)
    out = Deconvnet(net, rule).project(x, "2", mode="map")
    torch.testing.assert_close(out[0, 0, 0, 0], expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(autograd_projection(net, x[0], "2", 0, "map", rule)[0, 0], expected, rtol=1e-6, atol=1e-7)
    # the product rule also reaches the gate's sigmoid, where the gradient is the gradient
    assert out.policy == ("gradient; sigmoid: g·φ'(x); 1 gate by the product rule" if rule == "gradient" else
                          f"{rule}; 1 gate frozen")


def test_a_frozen_layer_norm_transposes_the_mean_subtraction():
    """LayerNorm over 3 channels (channels last) with σ frozen: h = g·w/σ, then h minus its mean over the channels."""
    norm = nn.LayerNorm(3)
    net = nn.Sequential(nn.Conv2d(3, 3, 1, bias=False), _ChannelsLast(norm), nn.Conv2d(3, 1, 1, bias=False)).eval()
    x = torch.tensor([1.0, 2.0, 4.0]).view(1, 3, 1, 1)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, -1.0])), norm.bias.copy_(torch.tensor([0.5, 0.0, 1.0]))
        net[0].weight.copy_(torch.eye(3).view(3, 3, 1, 1)), net[2].weight.fill_(1.0)
        g = net(x).flatten()  # mode "map" seeds the single unit with its activation
    h = g * norm.weight.detach() / torch.sqrt(x.flatten().var(unbiased=False) + norm.eps)
    expected = (h - h.mean()).view(3, 1, 1)
    torch.testing.assert_close(Deconvnet(net).project(x, "2", mode="map")[0, 0], expected)
    torch.testing.assert_close(autograd_projection(net, x[0], "2", 0, "map"), expected)


class _ChannelsLast(nn.Module):
    """``inner`` applied channels last, as ConvNeXt applies its LayerNorm."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _GroupNormNet(nn.Module):
    """GroupNorm as a module and as a function, Mish between: the norms of ResNet-GN-style nets."""

    def __init__(self):
        super().__init__()
        self.stem, self.norm, self.mid, self.top = (nn.Conv2d(3, 8, 3), nn.GroupNorm(4, 8), nn.Conv2d(8, 6, 3, stride=2),
                                                    nn.Conv2d(6, 4, 3, padding=1))
        self.weight = nn.Parameter(torch.linspace(0.5, 2.0, 6))

    def forward(self, x):
        x = F.mish(self.norm(self.stem(x)))
        return self.top(F.group_norm(self.mid(x), 3, self.weight, None, 1e-3))


@pytest.mark.parametrize("norms", ["freeze", "gradient"])
@pytest.mark.parametrize("rule", RULES)
def test_group_norm_equals_the_oracle(rule, norms):
    torch.manual_seed(0)
    model, x = _GroupNormNet().eval(), torch.randn(2, 3, 13, 13)
    for mode in ("max", "map"):
        out = Deconvnet(model, rule, norms=norms).project(x, "top", channels=[0, 3], mode=mode)
        for b in range(2):
            for j, c in enumerate([0, 3]):
                ref = autograd_projection(model, x[b], "top", c, mode, rule, norms=norms)
                torch.testing.assert_close(out[b, j], ref, atol=1e-5 * float(ref.abs().max()) + 1e-7, rtol=1e-4)
    assert ("GroupNorm, group_norm σ frozen" in out.policy) == (norms == "freeze")


def test_policies_are_named_and_checked():
    assert Policy.of() == Policy("deconvnet", "rule", "freeze", "freeze")
    assert Policy.of("gradient") == Policy("gradient", "rule", "gradient", "gradient")
    assert Policy.of("guided", strict=True) == Policy("guided", "refuse", "refuse", "refuse")
    assert Policy.of(strict=True, gates="freeze").gates == "freeze"
    with pytest.raises(ValueError, match="unknown gates policy 'split'; choose one of freeze, gradient, refuse"):
        Deconvnet(nn.Conv2d(3, 1, 1), gates="split")
    with pytest.raises(ValueError, match="strict must be True or False"):
        Deconvnet(nn.Conv2d(3, 1, 1), strict="yes")


# ---------------------------------------------------------------- tracing


class _Shapes(nn.Module):
    """Every piece of shape arithmetic and functional call issue #24 lists, in one net: channel shuffle
    (size(), floordiv, view, transpose, chunk), split, reshape/permute/flatten round trips, layer
    scale, dropout and stochastic depth written as functions (traced in train mode), functional
    max/avg/adaptive pooling, torch.mean over space and torch.flatten."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.branch = nn.Conv2d(4, 4, 3, padding=1)
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, 8).view(8, 1, 1))
        self.drop_path = StochasticDepth(0.5, "row")  # torchvision's module: its function is fx-wrapped
        self.mix = nn.Conv2d(8, 6, 3, padding=1)
        self.top = nn.Conv2d(6, 6, 1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.stem(x), kernel_size=3, stride=2, ceil_mode=True))
        keep, rest = x.chunk(2, dim=1)
        x = torch.cat([keep, F.relu(self.branch(rest))], 1)
        b, c, h, w = x.size()
        x = x.view(b, 2, c // 2, h, w).transpose(1, 2).contiguous().view(b, -1, h, w)  # channel shuffle
        a, z = torch.split(x, [3, 5], dim=1)
        x = torch.cat([z, a], 1).permute(0, 2, 3, 1).reshape(x.shape[0], h * w, c).permute(0, 2, 1).view(b, c, h, w)
        x = x + self.drop_path(self.scale * F.dropout(x, 0.5, self.training))
        x = F.avg_pool2d(F.relu(self.mix(x)), 2)
        y = F.adaptive_avg_pool2d(self.top(x), 2)
        return self.fc(torch.flatten(y, 1) [:, :6] + torch.mean(y, (2, 3)))


def test_shape_arithmetic_and_functional_ops_trace_and_project():
    torch.manual_seed(0)
    model = _Shapes()  # traced in train mode: the functional dropouts must still be off
    graph = model_graph(model)
    kinds = {op.kind for op in graph.ops}
    assert "unsupported" not in kinds and {"split", "maxpool", "identity", "shape", "scale"} <= kinds
    x = torch.randn(2, 3, 15, 15)
    model.eval()
    with torch.no_grad():
        expected = model(x)
        ours = graph.run(x, [graph.ops[-1]])[graph.ops[-1].node]
    torch.testing.assert_close(ours, expected)
    for rule in RULES:
        for mode in ("max", "map"):
            out = Deconvnet(model, rule).project(x, "mix", channels=[0, 4], mode=mode)
            for b in range(2):
                for j, c in enumerate([0, 4]):
                    ref = autograd_projection(model, x[b], "mix", c, mode, rule)
                    torch.testing.assert_close(out[b, j], ref, atol=1e-5 * float(ref.abs().max()) + 1e-7, rtol=1e-4)


# ---------------------------------------------------------------- torchvision's families


@cache
def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    extra = {"init_weights": False, "aux_logits": False} if name == "inception_v3" else {}
    return getattr(torchvision.models, name)(weights=None, **extra).eval()


#: Per model: a layer whose projection crosses each of its policies, the input size, two live channels.
EXACT = {"efficientnet_b0": ("features.4", 64, [1, 5]),  # SiLU, SE gates (sigmoid), stochastic depth
         "mobilenet_v3_large": ("features.7", 64, [1, 5]),  # Hardswish, SE gates (hardsigmoid)
         "convnext_tiny": ("features.3", 64, [1, 5])}  # GELU, LayerNorm (module and functional), layer scale
#: Policy mixes beyond each rule's default, on the model that has the op.
MIXES = [("efficientnet_b0", "deconvnet", {"gates": "gradient"}), ("convnext_tiny", "guided", {"norms": "gradient"}),
         ("convnext_tiny", "gradient", {"norms": "freeze"})]


def _check_against_oracle(name, layer, size, channels, rule, mode, policies):
    model = build(name)
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    for b in range(2):  # one image per call: the oracle's forward is then the engine's to the last bit
        out = Deconvnet(model, rule, **policies).project(images[b:b + 1], layer, channels=channels, mode=mode)
        for j, c in enumerate(channels):
            ref = autograd_projection(model, images[b], layer, c, mode, rule, **policies)
            assert ref.abs().max() > 0, (name, b, c)
            assert _cosine(out[0, j], ref) >= 0.9999, (name, layer, b, c)
            assert _relative_error(out[0, j], ref) <= 1e-4, (name, layer, b, c)
    return out.policy


@pytest.mark.parametrize("mode", ["max", "map"])
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("name", list(EXACT))
def test_projection_equals_the_oracle(name, rule, mode):
    policy = _check_against_oracle(name, *EXACT[name], rule, mode, {})
    assert policy.startswith(rule) and ("frozen" in policy) == (rule != "gradient")


@pytest.mark.parametrize("name, rule, policies", MIXES)
def test_mixed_policies_equal_the_oracle(name, rule, policies):
    _check_against_oracle(name, *EXACT[name], rule, "max", policies)


@pytest.mark.parametrize("name, words", [("efficientnet_b0", r"SiLU module .*activations='refuse'"),
                                         ("convnext_tiny", r"layer_norm \(call_function\) in 'features.0.1'.*norms='refuse'")])
def test_strict_refuses_as_before(name, words):
    with pytest.raises(ValueError, match=words):
        Deconvnet(build(name), strict=True).project(torch.randn(1, 3, 64, 64), EXACT[name][0])


SMOKE = {"regnet_y_400mf": ("trunk_output.block2", 64, "deconvnet; 4 gates frozen"),
         "shufflenet_v2_x1_0": ("stage3", 64, ""),  # ReLU only: the paper's deconvnet, through channel shuffles
         "inception_v3": ("Mixed_6a", 75, "")}  # F.max_pool2d inside Mixed_6a


@pytest.mark.parametrize("name", list(SMOKE))
def test_other_families_trace_and_project(name):
    layer, size, caption = SMOKE[name]
    model = build(name)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(2))
    assert "unsupported" not in {op.kind for op in model_graph(model).ops}
    seen = {}
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: seen.setdefault("out", o.clone()))
    with torch.no_grad():
        model(x)
    handle.remove()
    acts = layer_activations(model, x, layer)
    torch.testing.assert_close(acts, seen["out"])
    channel = int(acts[0].flatten(1).amax(1).argmax())
    for mode in ("max", "map"):
        out = Deconvnet(model).project(x, layer, channels=[channel], mode=mode)
        assert out.policy == caption
        ref = autograd_projection(model, x[0], layer, channel, mode)
        assert _cosine(out[0, 0], ref) >= 0.9999 and _relative_error(out[0, 0], ref) <= 1e-4


# ---------------------------------------------------------------- occlusion


def test_occlusion_projects_when_it_can_and_says_how():
    model, image = build("mobilenet_v3_large"), torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(3))
    r = occlusion(model, image, 1, 16, 16, layer="features.4")
    assert r.activity.shape == (2, 2) and r.projection.shape == image.shape
    assert r.projection_note == Deconvnet(model).caption("features.4") == "deconvnet; Hardswish: relu(g); 1 gate frozen"
    skipped = occlusion(model, image, 1, 16, 16, layer="features.4", projection=False)
    assert skipped.projection is None and skipped.projection_note == "not computed (projection=False)"
    assert torch.equal(skipped.activity, r.activity)


class _Softmax(nn.Module):
    """A spatial softmax: no elementwise activation, no policy, so no deconvnet above it."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 3)
        self.attend = nn.Sequential(nn.Flatten(2), nn.Softmax(-1), nn.Unflatten(2, (6, 6)))

    def forward(self, x):
        return self.fc(self.attend(self.conv(x)).mean((2, 3)))


def test_occlusion_without_a_deconvnet_still_sweeps():
    model, image = _Softmax().eval(), torch.randn(3, 8, 8)
    r = occlusion(model, image, 0, 4, 4, layer="conv")
    assert r.projection is not None and r.projection_note == ""  # below the softmax: the paper's deconvnet
    r = occlusion(model, image, 0, 4, 4, layer="attend")
    assert r.projection is None and r.activity.shape == (2, 2)
    assert r.projection_note.startswith("not computed: Deconvnet cannot reverse Softmax module 'attend.1'")
    with pytest.raises(ValueError, match="cannot reverse Softmax"):
        occlusion(model, image, 0, 4, 4, layer="attend", projection=True)
    with pytest.raises(ValueError, match="projection must be True"):
        occlusion(model, image, 0, 4, 4, layer="conv", projection="yes")


class _GatedConv(nn.Module):
    """A gated convolution, conv(x) * sigmoid(conv'(x)): two branches, neither computed from the other."""

    def __init__(self):
        super().__init__()
        self.value, self.gate, self.top = nn.Conv2d(3, 4, 3), nn.Conv2d(3, 4, 3), nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.top(self.value(x) * torch.sigmoid(self.gate(x)))


def test_a_product_with_no_gate_to_freeze_is_refused_unless_by_the_product_rule():
    torch.manual_seed(0)
    model, x = _GatedConv().eval(), torch.randn(1, 3, 9, 9)
    with pytest.raises(ValueError, match="neither computed from the other.*gates='gradient'"):
        Deconvnet(model).project(x, "top")
    out = Deconvnet(model, gates="gradient").project(x, "top", channels=[1])
    assert out.policy == "deconvnet; sigmoid: relu(g); 1 gate by the product rule"
    torch.testing.assert_close(out[0, 0], autograd_projection(model, x[0], "top", 1, gates="gradient"))
