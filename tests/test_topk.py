"""Streaming top-k against a brute-force sort over the whole dataset."""

import pytest
import torch

from zfkit.data import TensorImages
from zfkit.topk import layer_activations, topk
from helpers import random_mini


@pytest.fixture(scope="module")
def setup():
    model = random_mini()
    ds = TensorImages(torch.randn(70, 1, 32, 32), torch.zeros(70, dtype=torch.long), ("x",))
    return model, ds


@pytest.mark.parametrize("layer", ["conv1", "conv3", "pool5", "fc7"])
@pytest.mark.parametrize("batch_size", [1, 16, 256])
def test_topk_equals_brute_force(setup, layer, batch_size):
    model, ds = setup
    result = topk(model, ds, layer, k=9, batch_size=batch_size, progress=False)
    acts = layer_activations(model, ds.images, layer)
    if acts.dim() == 2:
        acts = acts[:, :, None, None]
    per_image = acts.flatten(2).amax(2)  # (N, C)
    # Batch sizes change the kernels and so the rounding: compare values, not near-tied orders, to
    # 1e-5 of each value plus 1e-5 of the layer's largest (rounding scales with the layer, not with
    # each small value; a few float32 ulps there). A wrong image or location is off by far more.
    atol = 1e-5 * float(per_image.abs().max())
    for c in range(acts.shape[1]):
        expected = sorted(range(len(ds)), key=lambda i: (-per_image[i, c].item(), i))[:9]
        assert torch.allclose(result.values[c], per_image[expected, c], rtol=1e-5, atol=atol)
        assert torch.allclose(per_image[result.indices[c], c], result.values[c], rtol=1e-5, atol=atol)
        for j, i in enumerate(result.indices[c].tolist()):  # the recorded location holds the value
            assert torch.isclose(acts[i, c, result.ys[c, j], result.xs[c, j]], result.values[c, j], rtol=1e-5, atol=atol)
    if batch_size == 256:  # one batch of all 70 images, as acts: the same kernel calls, so the order itself must match
        assert all(result.indices[c].tolist() == sorted(range(len(ds)), key=lambda i: (-per_image[i, c].item(), i))[:9]
                   for c in range(acts.shape[1]))


def test_memory_is_channels_by_k(setup):
    model, ds = setup
    r = topk(model, ds, "conv2", k=4, batch_size=8, progress=False)
    assert r.values.shape == r.indices.shape == (48, 4)


@pytest.mark.parametrize("kwargs, words", [({"k": 71}, "larger than the dataset"), ({"k": 0}, "positive"),
                                           ({"layer": "conv7"}, "unknown layer")])
def test_bad_input(setup, kwargs, words):
    model, ds = setup
    args = {"layer": "conv1", **kwargs}
    with pytest.raises(ValueError, match=words):
        topk(model, ds, progress=False, **args)


def test_empty_dataset(setup):
    model, _ = setup
    empty = TensorImages(torch.zeros(0, 1, 32, 32), torch.zeros(0, dtype=torch.long), ("x",))
    with pytest.raises(ValueError, match="empty"):
        topk(model, empty, "conv1", progress=False)
