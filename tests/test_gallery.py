"""Fig. 2 panels: the projection crop keeps all of the projection; patches are the unit's view."""

import json

import pytest
import torch

from zfkit import models
from zfkit.data import TensorImages
from zfkit.deconv import Deconvnet
from zfkit.gallery import Panel, coherence, evolution, label_diversity, top_projections
from zfkit.rf import receptive_field
from zfkit.topk import layer_activations
from helpers import random_mini


def test_panels_hold_the_top_images_their_projections_and_patches():
    model = random_mini()
    ds = TensorImages(torch.randn(40, 1, 32, 32), torch.arange(40) % 10, tuple("0123456789"))
    panels = top_projections(model, ds, "conv2", channels=[1, 4], k=5, progress=False)
    field = receptive_field(model, "conv2")
    acts = layer_activations(model, ds.images, "conv2")
    for panel in panels:
        assert panel.projections.shape == panel.patches.shape == (5, 1, field.size, field.size)
        per_image = acts[:, panel.channel].flatten(1).amax(1)
        assert torch.allclose(panel.values, per_image.sort(descending=True).values[:5])
        full = Deconvnet(model).project(ds.images[panel.indices], "conv2", channels=[panel.channel])[:, 0]
        # the crop loses nothing: the projection is zero outside the receptive field
        assert torch.allclose(panel.projections.abs().sum((1, 2, 3)), full.abs().sum((1, 2, 3)), rtol=1e-5)
        assert torch.equal(panel.labels, ds.targets[panel.indices])
        y, x = divmod(int(acts[panel.indices[0], panel.channel].argmax()), acts.shape[-1])
        # exact: topk scans the 40 images as one batch (batch_size 256), the very computation of acts
        # above, so it finds the same argmax; the patch is then a copy of the image's pixels
        assert torch.equal(panel.patches[0], field.patch(ds.images[panel.indices[0]], y, x))


def _panel(patches, labels, channel=0):
    k = len(patches)
    return Panel("conv1", channel, torch.ones(k), torch.arange(k), patches, patches, torch.tensor(labels))


def test_coherence_closed_form():
    a = torch.tensor([[1.0, 0.0]]).repeat(3, 1).view(3, 1, 1, 2)  # three identical patches
    b = torch.tensor([[0.0, 1.0]]).repeat(3, 1).view(3, 1, 1, 2)  # orthogonal to a
    scores = coherence([_panel(a, [0, 0, 0]), _panel(b, [0, 0, 0], 1)])
    assert scores == {"within": pytest.approx(1.0), "across": pytest.approx(0.0)}
    with pytest.raises(ValueError, match="two maps"):
        coherence([_panel(a, [0, 0, 0])])


def test_label_diversity_counts_distinct_labels():
    p = torch.zeros(4, 1, 2, 2)
    assert label_diversity([_panel(p, [1, 1, 2, 3]), _panel(p, [5, 5, 5, 5])]) == 2.0


def test_evolution_tracks_snapshots_and_settles():
    torch.manual_seed(0)
    ds = TensorImages(torch.randn(20, 1, 32, 32), torch.arange(20) % 10, tuple("0123456789"))
    base = models.zfnet_mini(width=0.5).eval()
    with torch.no_grad():
        for p in base.parameters():
            p.normal_(0, 0.05)
    other = models.build(base.spec).eval()
    with torch.no_grad():
        for p in other.parameters():
            p.normal_(0, 0.05)
    evo = evolution({1: other, 2: base, 5: base}, ds, "conv2", [0, 3])
    assert evo.projections.shape[:2] == (3, 2) and evo.epochs == [1, 2, 5]
    assert torch.allclose(evo.similarity_to_final()[1:], torch.ones(2, 2, dtype=torch.float64))
    settled = evo.settled_epoch()  # epochs 2 and 5 are the same model, so each map settles by epoch 2
    assert all(s in (1, 2) for s in settled)
    assert settled == [1 if evo.indices[0, m] == evo.indices[-1, m] else 2 for m in range(2)]
    summary = evo.summary()
    assert summary["settled"] == settled and summary["epochs"] == [1, 2, 5] and summary["maps"] == [0, 3]
    assert summary["similarity_to_final"][1:] == pytest.approx([1.0, 1.0])  # the final model is epochs 2 and 5
    json.dumps(summary)  # what a chapter saves
