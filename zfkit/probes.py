"""Do the features carry over? Linear probes and few-shot curves on frozen layers (paper §5.2-5.3).

The paper keeps layers 1-7 of its ImageNet model fixed and trains a new softmax (or a linear SVM,
Table 7) on the target dataset's images; it compares against the same network trained from scratch
on those few images (Tables 4-5, and the few-shot curve: Fig. 9 of the ECCV text, Fig. 7 of the arXiv
text). Here:

- :func:`features` runs the frozen model once and returns one row per image;
- :func:`linear_probe` fits a standardised linear classifier (scikit-learn) on one layer's features;
- :func:`few_shot_curve` repeats the Caltech protocol: per fold draw ``shots`` training images per
  class, test on the rest, report the mean ± std over folds of the per-class-averaged accuracy,
  for the frozen features and, optionally, for a scratch-trained twin of the network.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .graph import eval_mode, model_graph
from .models import ArchSpec, ConvNet, build, init_he
from .topk import layer_activations
from .verdicts import K, below, k_for

__all__ = ["ProbeResult", "FewShotCurve", "features", "linear_probe", "layer_probes", "few_shot_curve",
           "train_scratch", "CLASSIFIERS", "fold_margins", "LayerTrend", "layer_trend"]

CLASSIFIERS = ("svm", "softmax")

# A scratch model's callable: (training images, labels 0..K-1, seed) -> a trained classifier.
ScratchTrainer = Callable[[torch.Tensor, torch.Tensor, int], nn.Module]


@dataclass(frozen=True)
class ProbeResult:
    """Test-set scores of one probe. ``per_class_accuracy`` is the paper's Caltech metric."""

    accuracy: float
    per_class_accuracy: float  # mean over classes of each class's accuracy (= balanced accuracy)
    classifier: str
    predictions: np.ndarray = field(repr=False)  # predicted label of every test image


@dataclass(frozen=True)
class FewShotCurve:
    """Per number of shots and per fold, the per-class-averaged test accuracy (rows: shots, columns: folds)."""

    shots: tuple[int, ...]
    layer: str
    pretrained: np.ndarray  # (len(shots), folds)
    scratch: np.ndarray | None  # (len(shots), folds), or None when no scratch baseline was run
    # splits[shot][fold] = (train, test): dataset indices, so a fold can be checked or re-run
    splits: tuple[tuple[tuple[np.ndarray, np.ndarray], ...], ...] = field(repr=False)

    def stats(self, which: str = "pretrained") -> tuple[np.ndarray, np.ndarray]:
        """Mean and sample std (ddof=1) over folds, one value per shot count."""
        scores = {"pretrained": self.pretrained, "scratch": self.scratch}.get(which)
        if scores is None:
            raise ValueError(f"which must be 'pretrained' or 'scratch' (when run with scratch=...), got {which!r}")
        return scores.mean(1), scores.std(1, ddof=1)

    def margin(self, baseline: "FewShotCurve | None" = None) -> dict[int, float]:
        """Per shot count, this curve's pretrained mean accuracy minus the scratch mean, in points.

        The scratch run is this curve's, or ``baseline``'s (same shots): the features of another
        layer are then compared with one scratch baseline instead of training it again.
        """
        scratch = self if baseline is None else baseline
        if scratch.scratch is None or scratch.shots != self.shots:
            raise ValueError("margin needs a scratch baseline over the same shots: run few_shot_curve(..., scratch=True) "
                             "or pass baseline= such a curve")
        return {n: float(100 * (a - b)) for n, a, b in zip(self.shots, self.stats()[0], scratch.stats("scratch")[0])}

    def summary(self) -> list[dict]:
        """One JSON-able row per shot count: mean and std of each method."""
        rows = []
        for i, n in enumerate(self.shots):
            row = {"shots": n, "pretrained_mean": float(self.pretrained[i].mean()),
                   "pretrained_std": float(self.pretrained[i].std(ddof=1))}
            if self.scratch is not None:
                row |= {"scratch_mean": float(self.scratch[i].mean()), "scratch_std": float(self.scratch[i].std(ddof=1))}
            rows.append(row)
        return rows


# ---------------------------------------------------------------- frozen features

def features(model: nn.Module, dataset: Dataset, layer: str | nn.Module, batch_size: int = 512,
             grid: int | None = 4, progress: bool = False) -> np.ndarray:
    """``layer``'s output for every image, flattened to (N, D), the model frozen (eval mode, no grad).

    Convolutional maps are max-pooled to at most ``grid`` x ``grid`` cells first (``None`` keeps them
    whole). Why: the paper's Table 7 puts a classifier on each layer's output but does not say how
    the maps were fed; raw maps would make the low layers far wider than the top ones (ZFNet-mini's
    conv1 is 32x32x32 = 32,768 values, fc7 512), so the layer comparison would mostly measure
    dimensionality. A 4x4 max-pool keeps the coarse layout (it matters for digits) and the max the
    network itself uses, and gives every layer of ZFNet-mini 384-2,048 dimensions.
    """
    images, _ = _arrays(dataset)
    model_graph(model).layer(layer)  # an unknown layer fails here, before any work
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if grid is not None and (not isinstance(grid, int) or grid < 1):
        raise ValueError(f"grid must be a positive int or None, got {grid!r}")
    out = []
    with eval_mode(model):
        with torch.no_grad():
            for start in tqdm(range(0, len(images), batch_size), desc="features", disable=not progress):
                acts = layer_activations(model, images[start:start + batch_size], layer)
                if acts.dim() == 4 and grid is not None:
                    acts = F.adaptive_max_pool2d(acts, (min(grid, acts.shape[2]), min(grid, acts.shape[3])))
                out.append(acts.flatten(1).numpy())
    return np.concatenate(out)


def _arrays(dataset: Dataset) -> tuple[torch.Tensor, np.ndarray]:
    """All images as one tensor and the labels as an array (zfkit's TensorImages without a copy)."""
    n = len(dataset)
    if n == 0:
        raise ValueError("the dataset is empty; pass a dataset with at least one image per class")
    if isinstance(getattr(dataset, "images", None), torch.Tensor) and hasattr(dataset, "targets"):
        return dataset.images, np.asarray(dataset.targets)
    items = [dataset[i] for i in range(n)]
    return torch.stack([x for x, _ in items]), np.asarray([int(y) for _, y in items])


# ---------------------------------------------------------------- linear probes

def _pipeline(classifier: str, C: float) -> Pipeline:
    """Standardise (statistics from the training features only), then a linear classifier."""
    if classifier == "svm":
        return make_pipeline(StandardScaler(), LinearSVC(C=C, max_iter=10_000))
    if classifier == "softmax":
        return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1_000))
    raise ValueError(f"unknown classifier {classifier!r}; use one of {', '.join(CLASSIFIERS)}")


def _fit_score(x_train, y_train, x_test, y_test, classifier: str, C: float) -> ProbeResult:
    # One BLAS thread: these matrices are tiny, and on a busy 2-core machine OpenBLAS's threads
    # make a softmax fit 20x slower (1.8 s instead of 0.1 s for 300 x 2,048 features).
    with threadpool_limits(1, user_api="blas"):
        predictions = _pipeline(classifier, C).fit(x_train, y_train).predict(x_test)
    return ProbeResult(float(np.mean(predictions == y_test)), float(balanced_accuracy_score(y_test, predictions)),
                       classifier, predictions)


def linear_probe(model: nn.Module, layer: str | nn.Module, train: Dataset, test: Dataset,
                 classifier: str = "svm", C: float = 1.0, grid: int | None = 4) -> ProbeResult:
    """Train a linear SVM or softmax on ``layer``'s frozen features of ``train``; score it on ``test``.

    The Table 7 experiment: one probe per layer shows how linearly separable each layer makes the
    new classes. ``C`` is the inverse regularisation strength; ``grid`` is as in :func:`features`.
    """
    _pipeline(classifier, C)  # an unknown classifier fails before the features are computed
    _, y_train = _arrays(train)
    _, y_test = _arrays(test)
    x_train = features(model, train, layer, grid=grid)
    x_test = features(model, test, layer, grid=grid)
    return _fit_score(x_train, y_train, x_test, y_test, classifier, C)


def layer_probes(model: nn.Module, dataset: Dataset, layers: Sequence[str], shots: int, folds: int = 5,
                 classifiers: Sequence[str] = CLASSIFIERS, test_per_class: int | None = None, seed: int = 0,
                 C: float = 1.0, grid: int | None = 4, progress: bool = True) -> list[dict]:
    """Table 7: a linear SVM and a softmax on each layer's frozen features, on the same splits.

    Each fold draws ``shots`` training images per class (seeded by ``(seed, fold)``, as in
    :func:`few_shot_curve`) and tests on the rest (or ``test_per_class`` of them); every layer and
    classifier sees the same folds, so the rows differ only in the features. One row per layer and
    classifier: mean and sample std over folds of the per-class-averaged accuracy, and the
    feature width.
    """
    _, labels = _arrays(dataset)
    (shots,) = _check_shots([shots], labels, getattr(dataset, "classes", None))
    _check_folds(folds)
    for classifier in classifiers:
        _pipeline(classifier, C)
    for layer in layers:
        model_graph(model).layer(layer)  # every name is checked before the first layer's work
    _, y = np.unique(labels, return_inverse=True)
    splits = [_split(y, shots, test_per_class, (seed, fold)) for fold in range(folds)]
    rows = []
    for layer in tqdm(layers, desc="layers", disable=not progress):
        x = features(model, dataset, layer, grid=grid)
        for classifier in classifiers:
            scores = [_fit_score(x[tr], y[tr], x[te], y[te], classifier, C).per_class_accuracy for tr, te in splits]
            rows.append({"layer": layer, "classifier": classifier, "dims": int(x.shape[1]),
                         "mean": float(np.mean(scores)), "std": float(np.std(scores, ddof=1))})
    return rows


# ---------------------------------------------------------------- few-shot curves

def train_scratch(spec: ArchSpec, images: torch.Tensor, labels: torch.Tensor, seed: int, steps: int = 30,
                  batch_size: int = 64, lr: float = 0.03) -> ConvNet:
    """The scratch baseline: the same architecture, freshly initialised, trained on ``images`` only.

    Recipe, cheap by design: He-normal weights and zero biases, SGD with momentum 0.9 and weight
    decay 5e-4, ``steps`` updates on random batches of ``batch_size`` (the whole set when smaller),
    dropout as in the architecture, no augmentation. He init, not the paper's N(0, 1e-2): from the
    paper's init ZFNet-mini's loss stays at ln 10 for 100 SGD steps, which would make the baseline a
    straw man. The cost is about ``steps x min(batch_size, N)`` image passes, so the whole 6 x 5
    grid of :func:`few_shot_curve` on sklearn's digits takes ~90 s of one core (plus ~20 s testing
    on 50 images per class). The price: 30 steps under-train the net, more so the more images there
    are (fewer epochs), so its curve is a lower bound for short training that can even dip at 20-30
    shots; pass a longer recipe through ``few_shot_curve(scratch=callable)`` to see more.
    Deterministic for a given ``seed`` (initialisation, batches and dropout are all seeded).
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = init_he(build(replace(spec, num_classes=int(labels.max()) + 1)))
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
        order = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(steps):
            batch = torch.randperm(len(images), generator=order)[:batch_size]
            loss = F.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def _predict(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([model(images[i:i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)]).numpy()


def _split(labels: np.ndarray, shots: int, test_per_class: int | None, rng_seed: Sequence[int]
           ) -> tuple[np.ndarray, np.ndarray]:
    """``shots`` random training images per class; the test set is the rest (or its last ``test_per_class``).

    Each class is permuted once per fold, training takes the permutation's head and testing its
    tail, so within a fold the training sets are nested as ``shots`` grows and, with
    ``test_per_class``, every shot count is tested on the same images.
    """
    rng = np.random.default_rng(list(rng_seed))
    train, test = [], []
    for c in np.unique(labels):
        perm = rng.permutation(np.flatnonzero(labels == c))
        train.append(perm[:shots])
        test.append(perm[shots:] if test_per_class is None else perm[max(shots, len(perm) - test_per_class):])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _check_shots(shots: Sequence[int], labels: np.ndarray, names: Sequence[str] | None) -> tuple[int, ...]:
    shots = (shots,) if isinstance(shots, int) else tuple(shots)
    if not shots or any(not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1 for n in shots):
        raise ValueError(f"shots must be a non-empty list of positive ints, got {shots!r}")
    classes, counts = np.unique(labels, return_counts=True)
    smallest = int(np.argmin(counts))
    if max(shots) >= counts[smallest]:
        label = classes[smallest]
        name = names[label] if names is not None and 0 <= label < len(names) else str(label)
        raise ValueError(
            f"shots={max(shots)} needs at least {max(shots) + 1} images per class ({max(shots)} to train, one to test), "
            f"but class {name!r} has only {counts[smallest]}; use shots <= {counts[smallest] - 1}"
        )
    return tuple(int(n) for n in shots)


def _check_folds(folds: int) -> None:
    if not isinstance(folds, int) or isinstance(folds, bool) or folds < 2:
        raise ValueError(f"folds must be an int >= 2 (the std over folds needs two), got {folds!r}")


def _scratch_trainer(model: nn.Module, scratch: bool | ScratchTrainer, steps: int) -> ScratchTrainer | None:
    if scratch is False:
        return None
    if scratch is True:
        if not isinstance(getattr(model, "spec", None), ArchSpec):
            raise ValueError("scratch=True rebuilds the model from its zfkit spec (model.spec); for other models pass "
                             "scratch=callable(images, labels, seed) -> trained model")
        return partial(train_scratch, model.spec, steps=steps)
    if not callable(scratch):
        raise ValueError(f"scratch must be False, True or a callable (images, labels, seed) -> model, got {scratch!r}")
    return scratch


def few_shot_curve(model: nn.Module, dataset: Dataset, shots: Sequence[int] = (1, 2, 5, 10, 20, 30), folds: int = 5,
                   layer: str | nn.Module = "fc7", test_per_class: int | None = None, seed: int = 0,
                   scratch: bool | ScratchTrainer = False, scratch_steps: int = 30, classifier: str = "softmax",
                   C: float = 1.0, grid: int | None = 4, progress: bool = True, batch_size: int = 512) -> FewShotCurve:
    """Accuracy against training images per class: frozen ``model`` + new classifier vs scratch.

    Protocol of the paper's Caltech experiments: for each of ``folds`` folds and each number of
    ``shots``, draw that many training images per class at random (seeded by ``(seed, fold)``) and
    test on the remaining images (or on up to ``test_per_class`` of them per class, Caltech-101's
    "up to 50"); the score is the per-class-averaged accuracy. The features are computed once for
    the whole dataset, not per fold. ``scratch=True`` adds the baseline of :func:`train_scratch`
    (``scratch_steps`` SGD steps; needs a zfkit model); a callable ``(images, labels, seed) -> model``
    replaces that recipe. Labels are renumbered 0..K-1 for the scratch models. ``batch_size`` bounds
    the feature pass's memory (an ImageNet model at 224 px wants far fewer than 512 images at once).
    """
    images, labels = _arrays(dataset)
    shots = _check_shots(shots, labels, getattr(dataset, "classes", None))
    _check_folds(folds)
    if test_per_class is not None and (not isinstance(test_per_class, int) or test_per_class < 1):
        raise ValueError(f"test_per_class must be a positive int or None (all remaining images), got {test_per_class!r}")
    _pipeline(classifier, C)
    trainer = _scratch_trainer(model, scratch, scratch_steps)

    x = features(model, dataset, layer, batch_size=batch_size, grid=grid, progress=progress)
    _, y = np.unique(labels, return_inverse=True)
    pretrained = np.zeros((len(shots), folds))
    baseline = None if trainer is None else np.zeros((len(shots), folds))
    splits = []
    runs = tqdm(total=len(shots) * folds, desc="few-shot folds", disable=not progress)
    for i, n in enumerate(shots):
        per_fold = []
        for fold in range(folds):
            train, test = _split(y, n, test_per_class, (seed, fold))
            per_fold.append((train, test))
            pretrained[i, fold] = _fit_score(x[train], y[train], x[test], y[test], classifier, C).per_class_accuracy
            if trainer is not None:
                run_seed = int(np.random.SeedSequence([seed, fold, n]).generate_state(1)[0])
                net = trainer(images[train], torch.as_tensor(y[train]), run_seed)
                baseline[i, fold] = balanced_accuracy_score(y[test], _predict(net.eval(), images[test]))
            runs.update()
        splits.append(tuple(per_fold))
    runs.close()
    name = layer if isinstance(layer, str) else model_graph(model).layer(layer).name
    return FewShotCurve(shots, name, pretrained, baseline, tuple(splits))


# ---------------------------------------------------------------- the verdicts' measurements and their noise

def fold_margins(curve: FewShotCurve, baseline: FewShotCurve | None = None) -> np.ndarray:
    """Per fold, the pretrained accuracy minus the scratch accuracy averaged over the shot counts, in points.

    The scratch run is ``curve``'s own or ``baseline``'s (same shots and folds; run with the same
    ``seed``, it has the same splits). Each fold trains both on the same images, so the folds are
    paired samples of the margin: their mean is :meth:`FewShotCurve.margin` averaged over shots,
    and :func:`zfkit.verdicts.standard_error` of them is its noise.
    """
    scratch = curve if baseline is None else baseline
    if scratch.scratch is None or scratch.shots != curve.shots or scratch.scratch.shape != curve.pretrained.shape:
        raise ValueError("fold_margins needs a scratch baseline over the same shots and folds: run "
                         "few_shot_curve(..., scratch=True) or pass baseline= such a curve")
    return 100 * (curve.pretrained - scratch.scratch).mean(0)


@dataclass(frozen=True)
class LayerTrend:
    """How one classifier's accuracy changes from the lowest to the highest layer (Table 7), with noise.

    Noises are standard errors from the spread over folds, each layer taken as an independent
    sample: conservative, since all layers share the folds (a paired estimate would be smaller).
    """

    layers: tuple[str, ...]
    means: np.ndarray  # mean accuracy per layer, bottom to top
    slope: float  # least-squares change in accuracy per layer (layers equally spaced)
    slope_noise: float
    steps: np.ndarray  # mean accuracy of each layer minus the one below
    step_noise: np.ndarray
    k: float = K  # noise multiple: Student's t for the number of folds (verdicts.k_for)

    @property
    def falls(self) -> int:
        """Steps down by more than ``k`` times their noise."""
        return sum(below(s, 0, n, self.k) is True for s, n in zip(self.steps, self.step_noise))


def layer_trend(rows: Sequence[dict], classifier: str, folds: int) -> LayerTrend:
    """Read :func:`layer_probes` rows of one ``classifier`` (in layer order) as a trend over the layers.

    Each row's ``std`` is the spread over ``folds`` folds, so its mean has standard error
    ``std / sqrt(folds)``.
    """
    picked = [r for r in rows if r["classifier"] == classifier]
    if len(picked) < 2:
        raise ValueError(f"layer_trend needs rows of at least 2 layers for classifier {classifier!r}, got {len(picked)}")
    _check_folds(folds)
    means = np.array([r["mean"] for r in picked], dtype=float)
    se = np.array([r["std"] for r in picked], dtype=float) / np.sqrt(folds)
    x = np.arange(len(picked), dtype=float)
    weights = (x - x.mean()) / ((x - x.mean()) ** 2).sum()  # slope = weights @ means
    return LayerTrend(tuple(r["layer"] for r in picked), means, float(weights @ means),
                      float(np.sqrt((weights ** 2 * se ** 2).sum())), np.diff(means), np.hypot(se[1:], se[:-1]),
                      k_for(folds))
