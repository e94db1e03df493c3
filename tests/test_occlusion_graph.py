"""The graph engine of occlusion (any traced CNN) against whole forward passes of the occluded images."""

from functools import cache

import pytest
import torch
import torchvision
from torch import nn

from zfkit.graph import model_graph
from zfkit.occlusion import occlusion
from zfkit.topk import layer_activations


def brute_force(model, image, target, patch, stride, layer, channel, fill=0.0):
    """activity, p(target) and top-class maps from whole forward passes of every occluded image,
    and every class's probability (positions, classes)."""
    ys, xs = range(0, image.shape[-2] - patch + 1, stride), range(0, image.shape[-1] - patch + 1, stride)
    batch = image.repeat(len(ys) * len(xs), 1, 1, 1)
    for n, (y, x) in enumerate((y, x) for y in ys for x in xs):
        batch[n, :, y:y + patch, x:x + patch] = fill
    with torch.no_grad():
        activity = layer_activations(model, batch, layer)[:, channel].sum((1, 2))
        p = model(batch).softmax(-1)
    shape = (len(ys), len(xs))
    return activity.view(shape), p[:, target].view(shape), p.argmax(-1).view(shape), p


def assert_matches(r, model, image, target, patch, stride, layer, fill=0.0):
    """Exact up to float rounding: activity and p(target) to 1e-4 relative, top classes equal but for ties."""
    activity, prob, top, every = brute_force(model, image, target, patch, stride, layer, r.channel, fill)
    assert (r.activity - activity).abs().max() <= 1e-4 * activity.abs().max()
    assert torch.allclose(r.prob, prob, rtol=1e-4, atol=1e-9)
    differ = (r.top_class != top).flatten().nonzero().flatten()
    assert torch.all(every[differ, top.flatten()[differ]] - every[differ, r.top_class.flatten()[differ]] <= 1e-5)


@cache
def torchvision_net(name: str) -> nn.Module:
    torch.manual_seed(0)
    return getattr(torchvision.models, name)(weights=None).eval()


def op_order(model) -> list[str]:
    """The names ``whole_from`` uses, in forward order: modules by qualified name, functions by node."""
    return [str(o.node.target) if o.module is not None else o.node.name for o in model_graph(model).ops]


NETS = {"resnet18": "layer2", "mobilenet_v2": "features.6", "densenet121": "features.denseblock2",
        "efficientnet_b0": "features.3"}


@pytest.mark.parametrize("name", list(NETS))
def test_the_graph_engine_equals_whole_forward_passes(name):
    model, layer = torchvision_net(name), NETS[name]
    image = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(1))
    r = occlusion(model, image, 3, 16, 8, layer=layer, projection=False)
    assert r.activity.shape == r.prob.shape == r.top_class.shape == (7, 7)
    assert_matches(r, model, image, 3, 16, 8, layer)
    assert r.macs < r.full_macs and op_order(model).index(r.whole_from) > 1  # windows below it, whole maps above


def test_a_layer_read_by_a_batch_norm_keeps_its_own_value():
    """resnet18's conv1 feeds bn1: the engine folds norms into convolutions, but not into the chosen layer."""
    model = torchvision_net("resnet18")
    image = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(2))
    r = occlusion(model, image, 0, 12, 10, layer="conv1", fill=0.7, projection=False)
    assert_matches(r, model, image, 0, 12, 10, "conv1", fill=0.7)


def test_where_the_window_covers_the_map_early_the_result_says_from_where():
    model = torchvision_net("resnet18")
    image = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(3))
    r = occlusion(model, image, 5, 16, 8, layer="layer1", projection=False)
    order = op_order(model)  # 32 px: layer1's maps are 8x8, which the occluder's field covers within the stage
    assert order.index("layer1.0.conv1") <= order.index(r.whole_from) < order.index("layer2.0.conv1")
    assert_matches(r, model, image, 5, 16, 8, "layer1")
    gated = occlusion(torchvision_net("efficientnet_b0"), torch.randn(3, 64, 64), 5, 16, 8, layer="features.1",
                      projection=False)
    assert gated.whole_from == "features.1.0.block.1.avgpool"  # squeeze-excitation pools the whole map
    everything = occlusion(model, image, 5, 32, 8, layer="layer1", projection=False)  # the occluder is the image
    assert everything.whole_from == "x" and everything.activity.shape == (1, 1)
    assert_matches(everything, model, image, 5, 32, 8, "layer1")


def test_positions_batched_equal_positions_one_at_a_time():
    model = torchvision_net("mobilenet_v2")
    image = torch.randn(3, 48, 48, generator=torch.Generator().manual_seed(4))
    batched = occlusion(model, image, 1, 12, 6, layer="features.4", projection=False)
    alone = occlusion(model, image, 1, 12, 6, layer="features.4", projection=False, batch_size=1)
    torch.testing.assert_close(alone.activity, batched.activity, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(alone.prob, batched.prob, rtol=1e-5, atol=1e-9)
    assert torch.equal(alone.top_class, batched.top_class) and alone.macs == batched.macs


class _Residual(nn.Module):
    """Dilation, 'same' padding, a strided 1x1 convolution that skips rows, a ceil-mode max-pool, a
    padded average pool, branches concatenated and summed: geometry the torchvision nets lack."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        self.dilated = nn.Conv2d(4, 3, 3, padding=2, dilation=2)
        self.same = nn.Conv2d(4, 3, 4, padding="same")
        self.skip = nn.Conv2d(6, 5, 1, stride=2)
        self.pool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
        self.mix = nn.Conv2d(6, 5, 1)
        self.smooth = nn.AvgPool2d(3, 1, 1)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.cat([torch.tanh(self.dilated(x)), self.same(x) * 0.5], 1)
        y = self.smooth(self.skip(x) + self.mix(self.pool(x)))
        return self.fc(nn.functional.adaptive_avg_pool2d(y, 1).flatten(1))


@pytest.mark.parametrize("size, patch, stride, layer", [(17, 5, 3, "smooth"), (21, 7, 2, "same"), (15, 3, 4, "skip")])
def test_uncommon_geometry_is_exact_in_float64(size, patch, stride, layer):
    torch.manual_seed(size)
    model = _Residual().double().eval()
    image = torch.randn(2, size, size, dtype=torch.float64)
    r = occlusion(model, image, 2, patch, stride, layer=layer, fill=-0.3, projection=False)
    activity, prob, *_ = brute_force(model, image, 2, patch, stride, layer, r.channel, -0.3)
    assert torch.allclose(r.activity, activity, rtol=1e-10, atol=1e-10)
    assert torch.allclose(r.prob, prob, rtol=1e-10, atol=1e-12)
    assert r.macs < r.full_macs and model_graph(model).layer(layer).name == layer
