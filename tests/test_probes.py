"""Linear probes and few-shot curves (zfkit.probes) on tiny synthetic data with known answers."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from zfkit import models
from zfkit.data import TensorImages
from zfkit.probes import FewShotCurve, features, few_shot_curve, layer_probes, linear_probe, train_scratch
from zfkit.topk import layer_activations


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    """A tiny random ZFNet-mini, He-initialised so that every layer's activations are O(1)
    (from the paper's N(0, 1e-2) init, fc7's would be ~1e-7 and hide dropout below any tolerance)."""
    torch.manual_seed(0)
    net = models.zfnet_mini(num_classes=10, in_channels=1, width=0.25)
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return net.eval()


def _close_at_scale(actual, expected, rel=1e-5) -> bool:
    """Equal up to ``rel`` of the largest magnitude in ``expected``: float32 results of one layer
    computed in different batch shapes differ by a few roundings of the layer's scale."""
    return bool(np.abs(actual - expected).max() <= rel * np.abs(expected).max())


def brightness(per_class, offsets=(-1.0, 0.0, 1.0), noise=0.2, seed=0, labels=None):
    """Classes that differ only by a constant brightness offset: linearly separable in pixel space."""
    g = torch.Generator().manual_seed(seed)
    counts = [per_class] * len(offsets) if isinstance(per_class, int) else list(per_class)
    targets = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    images = torch.tensor(offsets)[targets].view(-1, 1, 1, 1) + noise * torch.randn(len(targets), 1, 32, 32, generator=g)
    if labels is not None:
        targets = torch.as_tensor(labels)[targets]
    return TensorImages(images, targets, tuple("abcdefghij"))


@pytest.mark.parametrize("classifier", ["svm", "softmax"])
def test_separable_classes_are_probed_perfectly(model, classifier):
    result = linear_probe(model, "conv1", brightness(20, seed=1), brightness(30, seed=2), classifier=classifier)
    assert result.classifier == classifier
    assert result.accuracy >= 0.98 and result.per_class_accuracy >= 0.98


def test_random_labels_give_chance(model):
    g = torch.Generator().manual_seed(3)
    data = lambda n: TensorImages(torch.randn(n, 1, 32, 32, generator=g),  # noqa: E731
                                  torch.randint(0, 4, (n,), generator=g), tuple("abcd"))
    result = linear_probe(model, "fc7", data(200), data(600), classifier="softmax")
    assert abs(result.accuracy - 0.25) < 0.08
    assert abs(result.per_class_accuracy - 0.25) < 0.08


def test_per_class_accuracy_is_the_mean_of_class_accuracies(model):
    # overlapping classes (errors happen) and an imbalanced test set (so the two metrics differ)
    test = brightness((5, 40, 80), offsets=(0.0, 0.1, 0.2), noise=0.3, seed=5)
    train = brightness(20, offsets=(0.0, 0.1, 0.2), noise=0.3, seed=4)
    result = linear_probe(model, "conv2", train, test, classifier="softmax")
    y = test.targets.numpy()
    by_hand = np.mean([np.mean(result.predictions[y == c] == c) for c in range(3)])
    assert result.per_class_accuracy == pytest.approx(by_hand)
    assert result.accuracy == pytest.approx(np.mean(result.predictions == y))
    assert result.accuracy != pytest.approx(result.per_class_accuracy)  # the data set really is imbalanced


def test_features_shapes_pooling_and_frozen_mode(model):
    ds = brightness(4)
    assert features(model, ds, "conv1").shape == (12, 8 * 4 * 4)  # 8 maps of 32x32, max-pooled to 4x4
    assert features(model, ds, "conv1", grid=None).shape == (12, 8 * 32 * 32)
    assert features(model, ds, "pool5").shape == (12, 24 * 2 * 2)  # already smaller than the grid
    expected = nn.functional.adaptive_max_pool2d(layer_activations(model.eval(), ds.images, "conv2"), 4).flatten(1)
    # Batches of 5 and of 12 may run on different kernels: their rounding differs by a few float32
    # ulps of the layer's scale (not of each value: small features come out of cancellation), so
    # the tolerance is 1e-5 of the largest feature (~2.9 here), 80 ulps there.
    assert _close_at_scale(features(model, ds, "conv2", batch_size=5), expected.numpy())
    model.train()  # dropout would make fc7 random: features() must switch it off and restore the mode
    try:
        first, second = features(model, ds, "fc7"), features(model, ds, "fc7", batch_size=5)
        assert model.training
    finally:
        model.eval()
    assert first.shape == (12, 512) and _close_at_scale(first, second)  # batches of 12 and 5, as above
    generic = TensorDataset(ds.images, ds.targets)  # any map-style dataset of (image, label)
    # exact: the same pixels in the same batches through the same layers, in one process
    assert np.array_equal(features(model, generic, "conv3"), features(model, ds, "conv3"))


class Constant(nn.Module):
    """A 'trained' model that always predicts class 0: its per-class-averaged accuracy is exactly 1/K."""

    def __init__(self, classes):
        super().__init__()
        self.classes = classes

    def forward(self, x):
        out = torch.zeros(len(x), self.classes)
        out[:, 0] = 1
        return out


def test_few_shot_curve_shapes_splits_and_scratch_hook(model):
    ds = brightness(12, labels=[5, 7, 9])  # non-contiguous labels, as in a class-split Fashion-MNIST
    calls = []

    def scratch(images, labels, seed):
        calls.append((images.shape, labels.tolist(), seed))
        return Constant(3)

    curve = few_shot_curve(model, ds, shots=[1, 3, 5], folds=3, layer="conv2", test_per_class=4, scratch=scratch,
                           progress=False)
    assert curve.pretrained.shape == curve.scratch.shape == (3, 3) and curve.layer == "conv2"
    assert np.allclose(curve.scratch, 1 / 3)
    assert ((0 <= curve.pretrained) & (curve.pretrained <= 1)).all()
    assert len(calls) == 9 and len({seed for *_, seed in calls}) == 9  # a distinct seed per (shots, fold)
    y = ds.targets.numpy()
    for i, n in enumerate(curve.shots):
        shape, labels, _ = calls[i * 3]
        assert shape == (3 * n, 1, 32, 32) and sorted(set(labels)) == [0, 1, 2]  # renumbered 0..K-1
        for fold, (train, test) in enumerate(curve.splits[i]):
            assert not set(train) & set(test)
            assert all(np.sum(y[train] == c) == n for c in (5, 7, 9))
            assert all(np.sum(y[test] == c) == 4 for c in (5, 7, 9))
            assert set(curve.splits[0][fold][0]) <= set(train)  # training sets nest as shots grow
            assert np.array_equal(test, curve.splits[-1][fold][1])  # one test set per fold
    rows = curve.summary()
    mean, std = curve.stats("scratch")
    assert [r["shots"] for r in rows] == [1, 3, 5] and np.allclose(mean, 1 / 3) and np.allclose(std, 0)
    assert rows[0]["pretrained_std"] == pytest.approx(np.std(curve.pretrained[0], ddof=1))


def test_few_shot_curve_is_deterministic_and_tests_on_the_rest(model):
    ds = brightness(10, noise=1.0)
    run = lambda seed: few_shot_curve(model, ds, shots=[2, 4], folds=2, layer="fc6", seed=seed, progress=False)  # noqa: E731
    a, b, c = run(0), run(0), run(1)
    # exact: two identical runs in one process and thread count repeat bit for bit (DESIGN: Deterministic)
    assert np.array_equal(a.pretrained, b.pretrained) and a.scratch is None
    assert all(np.array_equal(x, y) for s, t in zip(a.splits, b.splits) for f, g in zip(s, t) for x, y in zip(f, g))
    assert not np.array_equal(a.splits[0][0][0], c.splits[0][0][0])  # another seed draws other images
    assert not np.array_equal(a.splits[0][0][0], a.splits[0][1][0])  # and so does another fold
    for per_fold in a.splits:
        for train, test in per_fold:  # without test_per_class, every image is used exactly once
            assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(ds)))


def test_train_scratch_is_seeded_and_leaves_the_model_alone(model):
    ds = brightness(4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = train_scratch(model.spec, ds.images, ds.targets, seed=7, steps=1)  # init, batch and dropout all seeded
    b = train_scratch(model.spec, ds.images, ds.targets, seed=7, steps=1)
    c = train_scratch(model.spec, ds.images, ds.targets, seed=8, steps=0)
    assert a.spec.num_classes == 3 and not a.training
    # exact: the same seed, data and thread count in one process repeat training bit for bit
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.state_dict()["features.conv1.weight"], c.state_dict()["features.conv1.weight"])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    curve = few_shot_curve(model, ds, shots=[1], folds=2, layer="fc7", scratch=True, scratch_steps=1, progress=False)
    assert curve.scratch.shape == (1, 2) and ((0 <= curve.scratch) & (curve.scratch <= 1)).all()


def test_layer_probes_score_every_layer_and_classifier_on_shared_folds(model):
    """Separable by brightness: every layer keeps it (ReLU nets pass a constant offset on), so each
    probe is near-perfect; and one row equals linear_probe on the fold it rebuilds."""
    ds = brightness(12, seed=6)
    rows = layer_probes(model, ds, ["conv1", "fc7"], shots=5, folds=3, progress=False)
    assert [(r["layer"], r["classifier"]) for r in rows] == [
        ("conv1", "svm"), ("conv1", "softmax"), ("fc7", "svm"), ("fc7", "softmax")]
    assert rows[0]["dims"] == 8 * 4 * 4 and rows[2]["dims"] == 512  # width 0.25: conv1 has 8 maps, pooled to 4x4
    assert all(r["mean"] >= 0.95 and r["std"] >= 0 for r in rows)
    one = layer_probes(model, ds, ["fc7"], shots=5, folds=2, classifiers=["softmax"], progress=False)[0]
    curve = few_shot_curve(model, ds, shots=[5], folds=2, layer="fc7", progress=False)
    assert one["mean"] == pytest.approx(curve.pretrained.mean())  # same seeded splits as the few-shot curve


def test_margin_is_pretrained_minus_scratch_in_points():
    scores = lambda v: np.full((2, 3), v)  # noqa: E731
    mine = FewShotCurve((1, 5), "fc7", scores(0.8), scores(0.5), ())
    other = FewShotCurve((1, 5), "conv2", scores(0.9), None, ())
    assert mine.margin() == pytest.approx({1: 30.0, 5: 30.0})
    assert other.margin(baseline=mine) == pytest.approx({1: 40.0, 5: 40.0})
    with pytest.raises(ValueError, match="scratch baseline"):
        other.margin()


EMPTY = TensorImages(torch.zeros(0, 1, 32, 32), torch.zeros(0, dtype=torch.long), ("a",))


@pytest.mark.parametrize("call, words", [
    (lambda m, d: few_shot_curve(m, d, shots=[1, 5], progress=False), "class 'b' has only 3; use shots <= 2"),
    (lambda m, d: few_shot_curve(m, d, shots=[0], progress=False), "positive ints"),
    (lambda m, d: few_shot_curve(m, d, shots=[1], layer="conv9", progress=False), "unknown layer 'conv9'"),
    (lambda m, d: linear_probe(m, "fc9", d, d), "unknown layer 'fc9'"),
    (lambda m, d: features(m, d, "conv0"), "unknown layer"),
    (lambda m, d: few_shot_curve(m, EMPTY, shots=[1], progress=False), "empty"),
    (lambda m, d: linear_probe(m, "conv1", EMPTY, d), "empty"),
    (lambda m, d: features(m, EMPTY, "conv1"), "empty"),
    (lambda m, d: few_shot_curve(m, d, shots=[1], folds=1, progress=False), "folds must be an int >= 2"),
    (lambda m, d: linear_probe(m, "conv1", d, d, classifier="knn"), "unknown classifier 'knn'; use one of svm, softmax"),
    (lambda m, d: few_shot_curve(m, d, shots=[1], classifier="tree", progress=False), "unknown classifier"),
    (lambda m, d: few_shot_curve(m, d, shots=[1], test_per_class=0, progress=False), "test_per_class"),
    (lambda m, d: few_shot_curve(m, d, shots=[1], scratch="yes", progress=False), "scratch must be"),
    (lambda m, d: few_shot_curve(nn.Sequential(), d, shots=[1], scratch=True, progress=False), "model.spec"),
    (lambda m, d: features(m, d, "conv1", grid=0), "grid"),
    (lambda m, d: layer_probes(m, d, ["conv1", "conv9"], shots=1, progress=False), "unknown layer 'conv9'"),
    (lambda m, d: layer_probes(m, d, ["conv1"], shots=4, progress=False), "use shots <= 2"),
    (lambda m, d: layer_probes(m, d, ["conv1"], shots=1, folds=1, progress=False), "folds must be an int >= 2"),
])
def test_bad_input(model, call, words):
    unbalanced = brightness((6, 3, 6))
    with pytest.raises(ValueError, match=words):
        call(model, unbalanced)
