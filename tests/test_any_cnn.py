"""Issue #17: every engine on any traceable CNN, not only ``model.features`` nets.

torchvision's ResNet-18 (residual additions, a reused ReLU, functional flatten) and MobileNetV2
(depthwise convolutions, ReLU6, functional pooling), random weights, 64x64 inputs. Each engine is
checked against a computation that does not go through zfkit's graph: forward hooks on the
model's own modules, full forward passes one occluded image at a time, a sort over the dataset.
"""

import importlib
from collections import deque
from functools import cache

import pytest
import torch
import torchvision
from torch import nn

import zfkit
from zfkit import (Deconvnet, correspondence, invariance, layer_activations, layer_names, model_graph, occlusion,
                   receptive_field, topk)
from zfkit.data import TensorImages
from zfkit.gallery import top_projections
from zfkit.sanity import cascade, project, weight_layers
from zfkit.topk import topk_layers

pytestmark = pytest.mark.usefixtures("one_thread")


@cache
def resnet18() -> nn.Module:
    """Random weights, the classifier scaled so that p(class) varies across occluder positions."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    with torch.no_grad():
        model.fc.weight.mul_(3)
    return model


@cache
def mobilenet_v2() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.mobilenet_v2(num_classes=10).eval()


@cache
def dataset() -> TensorImages:
    g = torch.Generator().manual_seed(0)
    return TensorImages(torch.randn(12, 3, 64, 64, generator=g), torch.arange(12) % 10, tuple("abcdefghij"))


def hooked(model: nn.Module, images: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The output of submodule ``name`` and the logits, by a forward hook on the model's own forward."""
    found = {}
    handle = model.get_submodule(name).register_forward_hook(lambda m, i, o: found.setdefault("out", o.clone()))
    try:
        with torch.no_grad():
            logits = model(images)
    finally:
        handle.remove()
    return found["out"], logits


def test_the_public_api_is_in_one_place():
    assert zfkit.Deconvnet is Deconvnet and zfkit.occlusion is occlusion and zfkit.topk is topk
    assert zfkit.layer_names(resnet18())[:4] == ["conv1", "bn1", "relu", "maxpool"] == layer_names(resnet18())[:4]
    assert model_graph(resnet18()) is zfkit.model_graph(resnet18())  # traced once, cached
    for name in ("occlusion", "topk", "invariance", "correspondence", "rf", "deconv", "graph", "layers"):
        assert importlib.import_module(f"zfkit.{name}").__name__ == f"zfkit.{name}"  # submodules stay importable
    assert zfkit.receptive_field(resnet18(), "layer2").size == 99


@pytest.mark.parametrize("build, layer", [(resnet18, "layer2"), (resnet18, "layer3.1"), (resnet18, "fc"),
                                          (mobilenet_v2, "features.7"), (mobilenet_v2, "classifier")])
def test_layer_activations_are_the_module_outputs(build, layer):
    images = dataset().images[:3]
    expected, _ = hooked(build(), images, layer)
    assert torch.equal(layer_activations(build(), images, layer), expected)


def test_topk_on_resnet_equals_a_sort_over_the_dataset():
    model, ds = resnet18(), dataset()
    scans = topk_layers(model, ds, ["layer3", "fc"], k=3, batch_size=5, progress=False)
    for layer, scan in scans.items():
        assert all(torch.equal(getattr(scan, f), getattr(topk(model, ds, layer, k=3, batch_size=5, progress=False), f))
                   for f in ("values", "indices", "ys", "xs"))  # one pass for both = one pass each, bit for bit
        acts, _ = hooked(model, ds.images, layer)
        per_image = acts.flatten(2).amax(2) if acts.dim() == 4 else acts
        atol = 1e-5 * float(per_image.abs().max())
        for c in range(0, per_image.shape[1], 7):
            expected = sorted(range(len(ds)), key=lambda i: -per_image[i, c].item())[:3]
            assert torch.allclose(scan.values[c], per_image[expected, c], rtol=1e-5, atol=atol)
    assert scans["fc"].ys.max() == 0 and scans["fc"].values.shape == (10, 3)  # fc units: one location each


def brute_force(model, image, layer, patch, stride, channel):
    """Activity of ``channel`` of submodule ``layer`` and every class's probability, each occluded
    image through the model's own forward, one at a time."""
    activity, probs = [], []
    for y in range(0, image.shape[-2] - patch + 1, stride):
        for x in range(0, image.shape[-1] - patch + 1, stride):
            occluded = image.clone()
            occluded[:, y:y + patch, x:x + patch] = 0.0
            acts, logits = hooked(model, occluded[None], layer)
            activity.append(acts[0, channel].sum())
            probs.append(logits.softmax(-1)[0])
    return torch.stack(activity), torch.stack(probs)


@pytest.mark.parametrize("build, layer", [(resnet18, "layer3"), (mobilenet_v2, "features.7")])
def test_occlusion_equals_one_forward_pass_per_position(build, layer):
    model, image = build(), dataset().images[0]
    r = zfkit.occlusion(model, image, 3, 16, 8, layer=layer, batch_size=16)
    activity, probs = brute_force(model, image, layer, 16, 8, r.channel)
    assert r.activity.shape == (7, 7) and 0 < r.macs <= r.full_macs  # the graph engine recomputes what changed
    assert (r.activity.flatten() - activity).abs().max() <= 1e-5 * activity.abs().max()
    assert (r.prob.flatten() - probs[:, 3]).abs().max() <= 1e-5
    differ = (r.top_class.flatten() != probs.argmax(-1)).nonzero().flatten()  # only where two classes tie
    assert torch.all(probs[differ].max(-1).values - probs[differ, r.top_class.flatten()[differ]] <= 1e-5)
    if build is resnet18:
        assert r.prob.max() - r.prob.min() > 0.01  # the map has something to compare
    assert r.projection.shape == image.shape and r.projection.abs().sum() > 0


def test_invariance_and_correspondence_on_resnet():
    model, ds = resnet18(), dataset()
    images, labels = ds.images[:3], ds.targets[:3]
    sweep = invariance(model, images, labels, "translate", [0, 4], layers=("layer1", "fc"))
    feats, logits = hooked(model, images, "layer1")
    assert torch.allclose(sweep.normalized["layer1"][:, 0], torch.zeros(3), atol=1e-5)
    assert (sweep.normalized["layer1"][:, 1] > 0.01).all()
    expected = logits.softmax(-1)[torch.arange(3), labels]
    assert torch.allclose(sweep.prob[:, 0], expected, atol=1e-5) and feats.shape[1:] == (64, 16, 16)
    masks = torch.zeros(3, 64, 64, dtype=torch.bool)
    masks[:, 20:30, 20:30] = True
    result = correspondence(model, images, masks, layers=("layer2", model.fc))
    assert result.layers == ["layer2", "fc"] and all(0 <= d.mean <= 1 for d in result.delta.values())


def test_fig2_panels_of_a_resnet_block_are_cut_to_its_field():
    panels = top_projections(resnet18(), dataset(), "layer2", [0, 5], k=2, progress=False)
    size = receptive_field(resnet18(), "layer2", (3, 64, 64)).size
    assert [p.projections.shape for p in panels] == [(2, 3, size, size)] * 2 == [p.patches.shape for p in panels]


def test_cascading_randomisation_of_a_resnet():
    model = resnet18()
    layers = weight_layers(model)
    modules = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert list(layers.items()) == modules  # qualified names, forward order (ResNet defines them in that order)
    (name, last), = deque(cascade(model), maxlen=1)
    assert name == "conv1"  # top down: fc first, the stem last
    for (n, original), (_, randomised) in zip(modules, weight_layers(last).items()):
        assert not torch.equal(original.weight, randomised.weight), n
    images = dataset().images[:2]
    assert project(model, images, "fc", [1, 2]).shape == images.shape
    assert project(model, images, "layer2", 4).abs().sum() > 0
