"""Feature visualisation (zfkit.featureviz) against facts that do not come from its own code.

The closed form: a linear unit's best unit-norm input is its filter (Cauchy-Schwarz). The
parameterisation: a 1/f spectrum has a log-log amplitude slope of -1, white noise of 0. On a
random ZFNet-mini: each unit's image beats noise and the other units' images for that unit, and a
unit's image does not depend on the batch it was optimised in.
"""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from zfkit import models
from zfkit.featureviz import MIN_SIZE, FeatureVisualization, visualize
from zfkit.topk import layer_activations

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mini():
    """ZFNet-mini on RGB with N(0, 0.05) weights: units that respond, no training."""
    torch.manual_seed(0)
    model = models.zfnet_mini(num_classes=10, in_channels=3, width=0.5).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return model


def _unit_norm(x: torch.Tensor) -> torch.Tensor:
    """Centre the pixels on grey and scale each image to unit L2 norm: the bound of the closed form."""
    x = x - 0.5
    return x / (x.flatten(1).norm(dim=1)[:, None, None, None] + 1e-12)


@pytest.mark.parametrize("parameterization", ["pixel", "fourier"])
def test_a_linear_unit_wants_its_own_filter(parameterization):
    # one 16x16 filter over a 16x16 image: the unit is <w, x>, maximised over ||x|| = 1 by x = w / ||w||
    torch.manual_seed(1)
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 1, 16, bias=False)))
    w = model.conv.weight.detach()[0]
    result = visualize(model, "conv", 0, size=16, steps=150, parameterization=parameterization,
                       transforms=False, position="centre", normalize=_unit_norm, progress=False)
    image = result.images[0] - 0.5
    cosine = torch.cosine_similarity(image.flatten(), w.flatten(), dim=0)
    assert cosine > 0.99
    assert result.objective[0] == pytest.approx(w.norm().item(), rel=0.01)


def test_each_unit_image_beats_noise_and_the_other_units_images(mini):
    channels = [0, 5, 10, 20]
    result = visualize(mini, "conv3", channels, size=32, steps=256, progress=False)
    acts = layer_activations(mini, result.images, "conv3")[:, channels].mean((2, 3))  # image i, unit j
    torch.manual_seed(2)
    noise = layer_activations(mini, torch.rand(32, 3, 32, 32), "conv3")[:, channels].mean((2, 3))
    own = acts.diagonal()
    assert torch.allclose(own, result.objective, rtol=1e-4, atol=1e-6)  # the objective is the unit's activation
    assert (own - noise.mean(0) > 10 * noise.std(0)).all()  # far above random images (biases set their floor)
    others = acts.masked_fill(torch.eye(len(channels), dtype=torch.bool), float("-inf")).max(0).values
    assert (own > others).all()  # specific: another unit's image excites this unit less


def test_the_centre_objective_and_a_layer_without_a_map(mini):
    centre = visualize(mini, "conv5", [1, 2], size=32, steps=4, position="centre", progress=False)
    acts = layer_activations(mini, centre.images, "conv5")
    h, w = acts.shape[-2:]
    assert torch.allclose(centre.objective, acts[[0, 1], [1, 2], h // 2, w // 2], atol=1e-6)
    fc = visualize(mini, "fc6", [3], size=32, steps=4, progress=False)
    assert torch.allclose(fc.objective, layer_activations(mini, fc.images, "fc6")[:, 3], atol=1e-6)


def _slope(images: torch.Tensor) -> float:
    """Log-log slope of the mean Fourier amplitude against spatial frequency (excluding DC and the corners)."""
    amplitude = torch.fft.rfft2(images - images.mean((-2, -1), keepdim=True)).abs().mean((0, 1))
    size = images.shape[-2]
    f = (torch.fft.fftfreq(size)[:, None] ** 2 + torch.fft.rfftfreq(size)[None] ** 2).sqrt()
    keep = (f > 0) & (f < 0.5)
    x, y = f[keep].log(), amplitude[keep].log()
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / (x * x).sum())


def test_the_fourier_image_has_a_natural_1_over_f_spectrum_and_pixels_are_white(mini):
    start = dict(size=64, steps=1, lr=1e-6, transforms=False, progress=False)
    fourier = visualize(mini, "conv1", list(range(8)), parameterization="fourier", **start)
    pixel = visualize(mini, "conv1", list(range(8)), parameterization="pixel", **start)
    assert _slope(fourier.images) == pytest.approx(-1.0, abs=0.15)
    assert _slope(pixel.images) == pytest.approx(0.0, abs=0.15)
    assert "Fourier" in fourier.caption and "pixel" in pixel.caption and "no transforms" in pixel.caption


def test_deterministic_for_a_seed_and_independent_of_the_batch(mini):
    kwargs = dict(size=32, steps=12, progress=False)
    batch = visualize(mini, "conv2", [4, 7, 9], **kwargs)
    assert isinstance(batch, FeatureVisualization) and batch.channels == (4, 7, 9) and batch.layer == "conv2"
    assert batch.images.shape == (3, 3, 32, 32) and 0 <= batch.images.min() and batch.images.max() <= 1
    again = visualize(mini, "conv2", [4, 7, 9], **kwargs)
    assert torch.equal(batch.images, again.images)
    alone = visualize(mini, "conv2", 7, **kwargs)
    reordered = visualize(mini, "conv2", [9, 4, 7], **kwargs)
    assert torch.allclose(alone.images[0], batch.images[1], atol=1e-5)
    assert torch.allclose(reordered.images[[1, 2, 0]], batch.images, atol=1e-5)
    other_seed = visualize(mini, "conv2", [4, 7, 9], seed=1, **kwargs)
    assert (other_seed.images - batch.images).abs().max() > 0.01


@pytest.mark.parametrize("kwargs, message", [
    (dict(layer="conv9"), "unknown layer 'conv9'"),
    (dict(channels=[0, 48]), r"channel\(s\) \[48\] out of range: layer 'conv1' has 16 channels"),
    (dict(channels=-1), "out of range"),
    (dict(channels=[]), "non-empty sequence"),
    (dict(channels=1.5), "channel index"),
    (dict(size=8), f"at least {MIN_SIZE} pixels"),
    (dict(layer="fc6", size=64), "cannot run 64x64 images up to layer 'fc6'.*size=model.input_size"),
    (dict(steps=0), "steps must be a positive int"),
    (dict(lr=0.0), "lr must be a positive number"),
    (dict(parameterization="fft"), "parameterization must be one of"),
    (dict(position="max"), "position must be one of"),
    (dict(normalize="imagenet"), "normalize must map"),
])
def test_bad_inputs_say_what_is_wrong(mini, kwargs, message):
    args = dict(layer="conv1", channels=0, size=32, steps=1, progress=False) | kwargs
    with pytest.raises(ValueError, match=message):
        visualize(mini, args.pop("layer"), args.pop("channels"), **args)
