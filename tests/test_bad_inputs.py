"""The bad-input table: wrong calls across the public API and the error each one must give.

Each row is (call, exception type, fragment). The fragment is the part of the message that names
the problem; it must appear in the message, and on the book's "Errors you may see" page, which
documents every row. The calls use a tiny random ZFNet-mini and a 12-image dataset: no training,
no zoo.
"""

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from helpers import random_mini
from zfkit import data, models, profiles, sanity, zoo
from zfkit.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from zfkit.correspondence import correspondence, part_masks
from zfkit.data import DataNotFoundError, TensorImages
from zfkit.deconv import Deconvnet
from zfkit.gallery import coherence, evolution, top_projections
from zfkit.invariance import invariance
from zfkit.layers import resolve
from zfkit.occlusion import occlusion
from zfkit.probes import few_shot_curve, linear_probe
from zfkit.results import load_results, save_results, verdict_table
from zfkit.rf import receptive_field
from zfkit.topk import topk
from zfkit.train import Recipe, evaluate, fit, plan_device
from zfkit.widgets import LayerExplorer, OcclusionExplorer, ReceptiveFieldExplorer

ERRORS_PAGE = Path(__file__).resolve().parents[1] / "book" / "errors.md"
RECIPE = Recipe(epochs=2, batch_size=4, eval_batch_size=8, device="cpu")

pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass
class Ctx:
    """What a row's call may use: the model, images and dataset, a scratch folder, monkeypatch."""

    model: nn.Module
    images: torch.Tensor  # (2, 1, 32, 32), finite
    data: TensorImages  # 12 images, classes "a" … "d" with 3 images each
    tmp: Path
    monkeypatch: pytest.MonkeyPatch

    def images_with(self, value: float) -> torch.Tensor:
        x = self.images.clone()
        x[0, 0, 5, 5] = value
        return x

    def dataset(self, images: torch.Tensor) -> TensorImages:
        return TensorImages(images, torch.zeros(len(images), dtype=torch.long), ("a",))


@pytest.fixture(scope="module")
def model():
    return random_mini(width=0.25)


@pytest.fixture
def ctx(model, tmp_path, monkeypatch):
    g = torch.Generator().manual_seed(0)
    dataset = TensorImages(torch.randn(12, 1, 32, 32, generator=g), torch.arange(12) % 4, tuple("abcd"))
    return Ctx(model, dataset.images[:2].clone(), dataset, tmp_path, monkeypatch)


# ---------------------------------------------------------------- calls that need a little setup

def _without_fashion_mnist(c: Ctx) -> None:
    """Hide every copy zfkit could find, so that only what the call names is looked at."""
    c.monkeypatch.setattr(data, "DEBIAN_FASHION", c.tmp / "no-debian-package")
    c.monkeypatch.delenv("ZFKIT_DATA", raising=False)


def _missing_data(c: Ctx):
    _without_fashion_mnist(c)
    return data.fashion_mnist("train")


def _mistyped_root(c: Ctx):
    return data.fashion_mnist("train", root=c.tmp / "nowhere")


def _partial_data(c: Ctx):
    _without_fashion_mnist(c)
    (c.tmp / "train-images-idx3-ubyte.gz").write_bytes(b"")
    return data.find_fashion_mnist(c.tmp)


def _corrupt_data(c: Ctx):
    for stem in data.FASHION_FILES:
        (c.tmp / stem).write_bytes(b"not Fashion-MNIST")
    return data.fashion_mnist("train", root=c.tmp)


def _paper_without_imagenet(c: Ctx):
    c.monkeypatch.delenv("ZFKIT_IMAGENET", raising=False)
    return zoo.prepare("zfnet", "paper")


def _checkpoint(c: Ctx, model: nn.Module | None = None, **extra) -> Path:
    return save_checkpoint(c.tmp / "run" / "last", model if model is not None else c.model, epoch=1, extra=extra)


def _truncated_checkpoint(c: Ctx):
    weights = _checkpoint(c) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    return load_checkpoint(weights.parent)


def _tampered_checkpoint(c: Ctx):
    meta = _checkpoint(c) / "meta.json"
    meta.write_text(meta.read_text().replace('"epoch": 1', '"epoch": 9'))
    return load_checkpoint(meta.parent)


def _pickled_checkpoint(c: Ctx):
    torch.save(c.model.state_dict(), c.tmp / "model.pt")
    return load_checkpoint(c.tmp / "model.pt")


def _other_architecture(c: Ctx):
    return load_checkpoint(_checkpoint(c, models.alexnet_mini(width=0.25))).load_into(c.model)


def _resume_other_architecture(c: Ctx):
    _checkpoint(c, models.alexnet_mini(width=0.25), recipe=asdict(RECIPE), history=[])
    return fit(c.model, c.data, c.data, RECIPE, c.tmp / "run", resume=True, progress=False)


def _resume_other_recipe(c: Ctx):
    _checkpoint(c, recipe=asdict(Recipe(**{**asdict(RECIPE), "lr": 0.1})), history=[])
    return fit(c.model, c.data, c.data, RECIPE, c.tmp / "run", resume=True, progress=False)


def _overwrite_run(c: Ctx):
    _checkpoint(c)
    return fit(c.model, c.data, c.data, RECIPE, c.tmp / "run", progress=False)


def _out_dir_is_a_file(c: Ctx):
    (c.tmp / "notes.txt").write_text("")
    return fit(c.model, c.data, c.data, RECIPE, c.tmp / "notes.txt", progress=False)


def _relabelled(c: Ctx, offset: int) -> TensorImages:
    return TensorImages(c.data.images, c.data.targets + offset, c.data.classes)


# ---------------------------------------------------------------- the table

BAD_CALLS = [
    # the data is missing or damaged
    pytest.param(_missing_data, DataNotFoundError, "Fashion-MNIST not found", id="data-folder-missing"),
    pytest.param(_mistyped_root, DataNotFoundError, "is not a folder; pass the folder that holds",
                 id="data-root-not-a-folder"),
    pytest.param(_partial_data, DataNotFoundError, "holds only part of Fashion-MNIST", id="data-folder-incomplete"),
    pytest.param(_corrupt_data, ValueError, "failed its MD5 check", id="data-file-corrupted"),
    pytest.param(lambda c: data.fashion_mnist("val"), ValueError, "split must be 'train' or 'test'", id="data-unknown-split"),
    pytest.param(lambda c: data.fashion_mnist("train", size=16), ValueError, "size must be an int >= 28",
                 id="data-size-too-small"),
    pytest.param(lambda c: data.imagenet(c.tmp, "train"), DataNotFoundError, "ImageNet folder", id="imagenet-missing"),
    pytest.param(_paper_without_imagenet, DataNotFoundError, "the paper profile trains on ImageNet",
                 id="paper-profile-without-imagenet"),
    pytest.param(lambda c: data.subset(c.data, 0), ValueError, "subset size must be a positive int", id="subset-zero"),
    pytest.param(lambda c: data.subset(c.data, 100), ValueError, "subset of 100 requested from a dataset of 12",
                 id="subset-larger-than-dataset"),
    pytest.param(lambda c: TensorImages(c.images, torch.zeros(3, dtype=torch.long), ("a",)), ValueError,
                 "2 images but 3 labels", id="dataset-labels-mismatch"),
    pytest.param(lambda c: data.ten_crop(c.images, 40), ValueError, "ten_crop size 40 is larger than the images",
                 id="ten-crop-too-large"),

    # the images do not fit the model
    pytest.param(lambda c: c.model(c.images[0]), ValueError, "expects a batch of shape (B, 1, 32, 32), got shape (1, 32, 32)",
                 id="model-image-rank"),
    pytest.param(lambda c: c.model(c.images.to(torch.uint8)), ValueError,
                 "expects floating-point images, got dtype torch.uint8", id="model-image-dtype"),
    pytest.param(lambda c: c.model(c.images.expand(-1, 3, -1, -1)), ValueError, "expects 1 input channel(s), got 3",
                 id="model-image-channels"),
    pytest.param(lambda c: c.model(c.images[..., 2:30, 2:30]), ValueError, "expects 32x32 images, got 28x28",
                 id="model-image-size"),
    pytest.param(lambda c: Deconvnet(c.model).project(c.images[0], "conv1"), ValueError,
                 "images must be a batch (B, C, H, W), got (1, 32, 32)", id="analysis-image-rank"),
    pytest.param(lambda c: occlusion(c.model, c.images, 0, 8, 4), ValueError,
                 "image must be one (C, H, W) tensor, got (2, 1, 32, 32)", id="occlusion-given-a-batch"),
    pytest.param(lambda c: invariance(c.model, c.images.to(torch.int64), [0, 1], "rotate", [10]), ValueError,
                 "images must be floating point, got torch.int64", id="analysis-image-dtype"),
    pytest.param(lambda c: Deconvnet(c.model).project(c.images_with(float("nan")), "conv1"), ValueError,
                 "images contain NaN or infinite pixels", id="analysis-nan-pixels"),
    pytest.param(lambda c: occlusion(c.model, c.images_with(float("inf"))[0], 0, 8, 4), ValueError,
                 "images contain NaN or infinite pixels", id="analysis-inf-pixels"),
    pytest.param(lambda c: topk(c.model, c.dataset(c.images.expand(-1, 3, -1, -1)), "conv1", k=1, progress=False),
                 ValueError, "images have 3 channel(s) but the model's first convolution takes 1",
                 id="topk-image-channels"),
    pytest.param(lambda c: topk(c.model, c.dataset(c.images[..., :28, :28]), "conv5", k=1, progress=False),
                 ValueError, "the model expects 32x32 images, got 28x28", id="topk-image-size"),
    pytest.param(lambda c: topk(c.model, c.dataset(c.images_with(float("nan"))), "conv1", k=1, progress=False),
                 ValueError, "images contain NaN or infinite pixels", id="topk-nan-pixels"),
    pytest.param(lambda c: topk(c.model, c.dataset(c.images.double()), "conv1", k=1, progress=False), ValueError,
                 "images are float64 on cpu but the model's weights are float32 on cpu", id="topk-images-dtype-differs"),
    pytest.param(lambda c: occlusion(c.model, c.images[0].double(), 0, 8, 4), ValueError,
                 "images are float64 on cpu but the model's weights are float32 on cpu",
                 id="occlusion-images-dtype-differs"),

    # layer names and models
    pytest.param(lambda c: Deconvnet(c.model).project(c.images, "conv6"), ValueError,
                 "unknown layer 'conv6' in ConvNet; close matches: conv5, conv4", id="unknown-layer"),
    pytest.param(lambda c: receptive_field(c.model, "conv6"), ValueError, "unknown layer 'conv6'",
                 id="unknown-layer-receptive-field"),
    pytest.param(lambda c: resolve(nn.Sequential(nn.Conv2d(1, 2, 3)), "0"), ValueError,
                 "is not a direct child of model.features or model.classifier", id="resolve-outside-features"),
    pytest.param(lambda c: Deconvnet(c.model).project(c.images, nn.ReLU()), ValueError,
                 "the module ReLU is not part of this ConvNet", id="layer-module-not-in-model"),
    pytest.param(lambda c: occlusion(c.model, c.images[0], 0, 8, 4, layer="conv6"), ValueError,
                 "unknown layer 'conv6' in ConvNet; close matches: conv5", id="occlusion-unknown-layer"),
    pytest.param(lambda c: topk(c.model, c.data, "conv6", progress=False), ValueError,
                 "unknown layer 'conv6' in ConvNet; close matches: conv5", id="topk-unknown-layer"),
    pytest.param(lambda c: receptive_field(_Upsampling(), "up", (1, 8, 8)), ValueError,
                 "receptive_field cannot tell which input positions Upsample module 'up' in 'up' reads",
                 id="receptive-field-unknown-op"),
    pytest.param(lambda c: receptive_field(_Sized(), "size", (1, 8, 8)), ValueError,
                 "layer 'size' does not depend on the image's pixels", id="receptive-field-of-a-size"),
    pytest.param(lambda c: invariance(_TwoOutputs(), c.images, [0, 1], "rotate", [10], layers=["conv"]), ValueError,
                 "_TwoOutputs returns tuple, not one tensor of logits (B, classes)", id="model-returns-a-tuple"),
    pytest.param(lambda c: sanity.weight_layers(nn.Sequential(nn.ReLU())), ValueError,
                 "Sequential calls no Conv2d or Linear layer: nothing to randomise", id="sanity-no-weight-layers"),
    pytest.param(lambda c: Deconvnet(_Untraceable()), ValueError, "zfkit cannot trace _Untraceable with torch.fx",
                 id="model-untraceable"),
    pytest.param(lambda c: Deconvnet(_Upsampling()).project(c.images, "up"), ValueError,
                 "Deconvnet cannot reverse Upsample module 'up' in 'up': it has no agreed deconvnet rule and no policy",
                 id="deconv-unsupported-op"),
    pytest.param(lambda c: Deconvnet(nn.Sequential(nn.Conv2d(1, 2, 3), nn.SiLU()), strict=True).project(c.images, "1"),
                 ValueError, "Deconvnet cannot reverse SiLU module '1' in '1': it has no agreed deconvnet rule and "
                 "activations='refuse' passes only ReLU and ReLU6", id="deconv-strict-activation"),
    pytest.param(lambda c: Deconvnet(_Gated(), gates="refuse").project(c.images, "out"), ValueError,
                 "it multiplies two signals (a gate, e.g. squeeze-excitation), which has no agreed deconvnet rule and "
                 "gates='refuse'", id="deconv-strict-gate"),
    pytest.param(lambda c: Deconvnet(nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4)), norms="refuse")
                 .project(c.images, "1"), ValueError, "Deconvnet cannot reverse GroupNorm module '1' in '1': it "
                 "normalises by a statistic of its input, which has no agreed deconvnet rule and norms='refuse'",
                 id="deconv-strict-norm"),
    pytest.param(lambda c: Deconvnet(_Product()).project(c.images, "out"), ValueError,
                 "it multiplies two signals, neither computed from the other (or divides by the signal), so there is "
                 "no gate to freeze", id="deconv-no-gate-to-freeze"),
    pytest.param(lambda c: Deconvnet(c.model, activations="relu"), ValueError,
                 "unknown activations policy 'relu'; choose one of rule, refuse", id="deconv-unknown-policy"),
    pytest.param(lambda c: Deconvnet(c.model).project(c.images.double(), "conv1"), ValueError,
                 "images are float64 on cpu but the model's weights are float32 on cpu", id="images-dtype-differs"),
    pytest.param(lambda c: models.zfnet_mini(width=0), ValueError, "width must be a positive number, got 0",
                 id="model-width-zero"),
    pytest.param(lambda c: models.variant(c.model, remove="conv2"), ValueError,
                 "cannot remove layer 'conv2': removable layers are conv3, conv4, conv5, fc6, fc7", id="variant-remove-conv2"),
    pytest.param(lambda c: models.variant(c.model, conv_widths={"conv7": 8}), ValueError,
                 "conv_widths names unknown layer 'conv7'", id="variant-unknown-width"),
    pytest.param(lambda c: models.variant(nn.Sequential()), ValueError, "variant() needs a zfkit model",
                 id="variant-of-foreign-model"),
    pytest.param(lambda c: models.describe(nn.Sequential()), ValueError, "describe() needs input_size=(C, H, W)",
                 id="describe-foreign-model"),
    pytest.param(lambda c: models.Ensemble([]), ValueError, "an Ensemble needs at least one member model",
                 id="ensemble-empty"),
    pytest.param(lambda c: models.Ensemble([c.model, models.zfnet_mini(num_classes=5, width=0.25)])(c.images),
                 ValueError, "the ensemble's members predict different numbers of classes ([10, 5])",
                 id="ensemble-different-classes"),

    # deconvnet
    pytest.param(lambda c: Deconvnet(c.model, rule="lrp"), ValueError,
                 "unknown rule 'lrp'; choose one of deconvnet, guided, gradient", id="deconv-unknown-rule"),
    pytest.param(lambda c: Deconvnet(c.model).project(c.images, "fc6"), ValueError,
                 "has no spatial output (shape (2, 512)); Deconvnet projects feature maps",
                 id="deconv-classifier-layer"),
    pytest.param(lambda c: Deconvnet(c.model).project(c.images, "conv1", channels=[99]), ValueError,
                 "channel index out of range: the layer has 8 channels (0 … 7), got [99]", id="deconv-channel-out-of-range"),
    pytest.param(lambda c: Deconvnet(c.model).project(c.images, "conv1", channels=1.5), ValueError,
                 "channels must be an int, a list of ints or None (all), got 1.5", id="deconv-channel-not-int"),
    pytest.param(lambda c: Deconvnet(c.model).project(c.images, "conv1", mode="mean"), ValueError,
                 "mode must be 'max' or 'map', got 'mean'", id="deconv-unknown-mode"),
    pytest.param(lambda c: Deconvnet(c.model).project(c.images, "conv1", chunk=0), ValueError,
                 "chunk must be a positive int", id="deconv-chunk-zero"),

    # top-k scans and Fig. 2 panels
    pytest.param(lambda c: topk(c.model, c.data.subset(range(7)), "conv1", k=10, progress=False), ValueError,
                 "k=10 is larger than the dataset (7 images); use k <= 7", id="topk-k-larger-than-dataset"),
    pytest.param(lambda c: topk(c.model, c.data, "conv1", k=0, progress=False), ValueError,
                 "k must be a positive int, got 0", id="topk-k-zero"),
    pytest.param(lambda c: topk(c.model, c.data.subset([]), "conv1", progress=False), ValueError,
                 "the dataset is empty", id="topk-empty-dataset"),
    pytest.param(lambda c: topk(c.model, c.data, "conv1", k=2, batch_size=0, progress=False), ValueError,
                 "batch_size must be a positive int, got 0", id="topk-batch-size-zero"),
    pytest.param(lambda c: topk(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(2)), c.data, "1", k=1, progress=False),
                 ValueError, "layer '1' outputs (12, 4, 900); topk ranks units of (B, C) or (B, C, H, W) outputs",
                 id="topk-layer-of-other-rank"),
    pytest.param(lambda c: top_projections(c.model, TensorDataset(c.data.images, c.data.targets), "conv1", 0, k=2,
                                           progress=False),
                 ValueError, "top_projections needs a dataset holding its images as .images", id="panels-plain-dataset"),
    pytest.param(lambda c: top_projections(c.model, c.data, "conv1", [99], k=2, progress=False), ValueError,
                 "channel index out of range: conv1 has 8 channels (0 … 7), got [99]", id="panels-channel-out-of-range"),
    pytest.param(lambda c: top_projections(c.model, c.data, "conv1", 0, k=5,
                                           scan=topk(c.model, c.data, "conv1", k=2, progress=False)),
                 ValueError, "k=5 but the scan holds only the top 2 per channel", id="panels-k-larger-than-scan"),
    pytest.param(lambda c: coherence([]), ValueError, "coherence needs panels of at least two maps",
                 id="coherence-one-map"),
    pytest.param(lambda c: evolution({}, c.data, "conv1", 0), ValueError, "evolution needs at least one snapshot",
                 id="evolution-no-snapshots"),

    # occlusion
    pytest.param(lambda c: occlusion(c.model, c.images[0], 0, patch=40, stride=4), ValueError,
                 "patch=40 is larger than the 32x32 image; use patch <= 32", id="occlusion-patch-larger-than-image"),
    pytest.param(lambda c: occlusion(c.model, c.images[0], 0, patch=8, stride=0), ValueError,
                 "stride must be an int >= 1, got 0", id="occlusion-stride-zero"),
    pytest.param(lambda c: occlusion(c.model, c.images[0], 10, patch=8, stride=4), ValueError,
                 "target must be an int in 0 … 9, got 10", id="occlusion-target-out-of-range"),
    pytest.param(lambda c: occlusion(c.model, c.images[0], 0, patch=8, stride=4, channel=24), ValueError,
                 "channel must be an int in 0 … 23, got 24", id="occlusion-channel-out-of-range"),
    pytest.param(lambda c: occlusion(c.model, c.images[0], 0, patch=8, stride=4, layer="fc7"), ValueError,
                 "layer 'fc7' has no spatial output (shape (1, 512)); occlusion maps the activity of a feature map",
                 id="occlusion-classifier-layer"),
    pytest.param(lambda c: occlusion(_TINY, c.images[0], 0, patch=8, stride=4, layer="1", approximate=True),
                 ValueError, "approximate= applies to the incremental engine", id="occlusion-approximate-full-passes"),
    pytest.param(lambda c: occlusion(nn.Sequential(nn.Conv2d(1, 4, 3)), c.images[0], 0, patch=8, stride=4, layer="0"),
                 ValueError, "Sequential returns (1, 4, 30, 30), not one tensor of logits (B, classes)",
                 id="occlusion-model-returns-maps"),
    pytest.param(lambda c: occlusion(c.model, c.images[0], 0, patch=8, stride=4, fill=float("nan")), ValueError,
                 "fill must be a finite number", id="occlusion-fill-nan"),
    pytest.param(lambda c: occlusion(c.model, c.images[0], 0, patch=8, stride=4, approximate=2), ValueError,
                 "approximate must be False, True or a ratio in (0, 1]", id="occlusion-approximate-ratio"),

    # invariance and correspondence
    pytest.param(lambda c: invariance(c.model, c.images, [0, 1], "shear", [1.0]), ValueError,
                 "unknown kind 'shear'; choose one of: translate", id="invariance-unknown-kind"),
    pytest.param(lambda c: invariance(c.model, c.images, [0, 1, 2], "rotate", [10]), ValueError,
                 "labels must be 2 integer class indices (one per image)", id="invariance-labels-mismatch"),
    pytest.param(lambda c: invariance(c.model, c.images, [0, 1], "translate", [32]), ValueError,
                 "moves a 32-pixel-high image out of view", id="invariance-shift-too-far"),
    pytest.param(lambda c: invariance(c.model, c.images, [0, 1], "scale", [0]), ValueError,
                 "scale factor must be > 0", id="invariance-scale-zero"),
    pytest.param(lambda c: invariance(c.model, c.images, [0, 1], "rotate", []), ValueError,
                 "amounts is empty", id="invariance-no-amounts"),
    pytest.param(lambda c: correspondence(c.model, c.images[:1], torch.ones(1, 32, 32, dtype=torch.bool)), ValueError,
                 "correspondence compares images in pairs: give at least 2 images", id="correspondence-one-image"),
    pytest.param(lambda c: correspondence(c.model, c.images, torch.ones(2, 28, 28, dtype=torch.bool)), ValueError,
                 "masks must be a tensor of shape (N, H, W) = (2, 32, 32)", id="correspondence-mask-shape"),
    pytest.param(lambda c: correspondence(c.model, c.images, torch.zeros(2, 32, 32, dtype=torch.bool)), ValueError,
                 "are empty: each image needs a masked part", id="correspondence-empty-mask"),
    pytest.param(lambda c: part_masks(c.data.display(c.images), "Bag"), ValueError, "no part layout for class 'Bag'",
                 id="correspondence-class-without-parts"),

    # probes and few-shot curves
    pytest.param(lambda c: few_shot_curve(c.model, c.data, shots=[5], progress=False), ValueError,
                 "shots=5 needs at least 6 images per class", id="probe-shots-larger-than-class"),
    pytest.param(lambda c: few_shot_curve(c.model, c.data, shots=[1], folds=1, progress=False), ValueError,
                 "folds must be an int >= 2", id="probe-one-fold"),
    pytest.param(lambda c: linear_probe(c.model, "conv1", c.data, c.data, classifier="knn"), ValueError,
                 "unknown classifier 'knn'; use one of svm, softmax", id="probe-unknown-classifier"),
    pytest.param(lambda c: linear_probe(c.model, "conv1", c.data.subset([]), c.data), ValueError,
                 "the dataset is empty", id="probe-empty-dataset"),

    # training
    pytest.param(lambda c: Recipe(lr=0), ValueError, "Recipe.lr must be a positive number, got 0", id="recipe-lr-zero"),
    pytest.param(lambda c: Recipe(batch_size=12.5), ValueError, "Recipe.batch_size must be a positive integer, got 12.5",
                 id="recipe-batch-size-fraction"),
    pytest.param(lambda c: Recipe(momentum=1.0), ValueError, "Recipe.momentum must be in [0, 1), got 1.0",
                 id="recipe-momentum-one"),
    pytest.param(lambda c: Recipe(precision="fp16"), ValueError,
                 "Recipe.precision must be one of 'auto', 'bf16', 'fp32', got 'fp16'", id="recipe-precision"),
    pytest.param(lambda c: Recipe(epochs=10, final_anneal_epochs=10), ValueError,
                 "Recipe.final_anneal_epochs (10) must be smaller than epochs (10): at least one epoch has to run at "
                 "the starting rate", id="recipe-final-anneal-whole-run"),
    pytest.param(lambda c: Recipe(device=0), ValueError, "Recipe.device must be a string", id="recipe-device-not-a-name"),
    pytest.param(lambda c: plan_device("gpu-please"), ValueError, "Recipe.device 'gpu-please' is not a device name",
                 id="recipe-device-unknown"),
    pytest.param(lambda c: fit(c.model, c.data, c.data, {"lr": 0.01}, c.tmp, progress=False), ValueError,
                 "recipe must be a zfkit.train.Recipe, got dict", id="fit-recipe-dict"),
    pytest.param(lambda c: fit(c.model, c.data.subset([]), c.data, RECIPE, c.tmp, progress=False), ValueError,
                 "the training dataset is empty", id="fit-empty-dataset"),
    pytest.param(lambda c: fit(c.model, c.data, None, RECIPE, c.tmp, progress=False), ValueError,
                 "the validation dataset is missing", id="fit-no-validation-set"),
    pytest.param(lambda c: fit(c.model, _relabelled(c, 8), c.data, RECIPE, c.tmp, progress=False), ValueError,
                 "the training dataset has labels 8 … 11 but the model has 10 classes", id="fit-labels-beyond-classes"),
    pytest.param(lambda c: fit(c.model, c.data, c.data, RECIPE, c.tmp, checkpoints=[5], progress=False), ValueError,
                 "checkpoints must be epochs between 1 and 2, got [5]", id="fit-checkpoint-epoch"),
    pytest.param(_overwrite_run, ValueError, "already holds a training run; pass resume=True", id="fit-over-a-run"),
    pytest.param(_out_dir_is_a_file, ValueError, "cannot write to out_dir", id="fit-out-dir-unwritable"),
    pytest.param(_resume_other_recipe, ValueError, "with a different recipe (lr: 0.1 -> 0.01)",
                 id="resume-different-recipe"),
    pytest.param(_resume_other_architecture, ValueError, "name: checkpoint has 'alexnet_mini', model has 'zfnet_mini'",
                 id="resume-other-architecture"),
    pytest.param(lambda c: evaluate(c.model, c.data, batch_size=0), ValueError, "batch_size must be a positive int, got 0",
                 id="evaluate-batch-size-zero"),
    pytest.param(lambda c: evaluate(c.model, _relabelled(c, -1)), ValueError,
                 "the evaluation dataset has labels -1 … 2 but the model has 10 classes", id="evaluate-negative-labels"),

    # checkpoints
    pytest.param(lambda c: load_checkpoint(c.tmp / "nothing"), FileNotFoundError, "no checkpoint at",
                 id="checkpoint-missing"),
    pytest.param(_pickled_checkpoint, CheckpointError, "is not a zfkit checkpoint", id="checkpoint-pickle"),
    pytest.param(_truncated_checkpoint, CheckpointError, "is corrupted or truncated", id="checkpoint-truncated"),
    pytest.param(_tampered_checkpoint, CheckpointError, "its SHA-256 does not match its content",
                 id="checkpoint-tampered"),
    pytest.param(lambda c: load_checkpoint(_checkpoint(c).parent), CheckpointError,
                 "meta.json is missing (it holds checkpoints", id="checkpoint-run-folder"),
    pytest.param(_other_architecture, ValueError,
                 "was saved from a different architecture: convs.conv1.kernel: checkpoint has 7, model has 5",
                 id="checkpoint-other-architecture"),
    pytest.param(lambda c: load_checkpoint(_checkpoint(c, nn.Linear(2, 2))).build(), CheckpointError,
                 "holds a model not built by zfkit.models", id="checkpoint-foreign-model-build"),

    # profiles and the zoo
    pytest.param(lambda c: profiles.get("fast"), ValueError, "unknown profile 'fast'; choose one of ci, book, paper",
                 id="profile-unknown"),
    pytest.param(lambda c: zoo.prepare("zfnet-mini", "fast"), ValueError, "unknown profile 'fast'",
                 id="zoo-profile-unknown"),
    pytest.param(lambda c: zoo.prepare("resnet50", "ci"), ValueError, "unknown model 'resnet50' for profile 'ci'",
                 id="zoo-model-unknown"),
    pytest.param(lambda c: zoo.prepare("zfnet-mini", "paper"), ValueError,
                 "unknown model 'zfnet-mini' for profile 'paper'; choose one of zfnet, alexnet", id="zoo-mini-for-paper"),

    # results and widgets
    pytest.param(lambda c: save_results("../02_training", {}, c.tmp), ValueError,
                 "chapter must be a notebook name such as '01_architecture'", id="results-chapter-path"),
    pytest.param(lambda c: save_results("02_training", {"error": float("nan")}, c.tmp), ValueError,
                 "results must be finite numbers, got nan", id="results-nan"),
    pytest.param(lambda c: load_results("02_training", c.tmp), FileNotFoundError, "no results for '02_training'",
                 id="results-not-yet-written"),
    pytest.param(lambda c: verdict_table([]), ValueError, "verdict_table takes a non-empty list", id="verdicts-empty"),
    pytest.param(lambda c: ReceptiveFieldExplorer(c.model, c.images), ValueError, "image must be one (C, H, W) tensor",
                 id="widget-rf-batch"),
    pytest.param(lambda c: ReceptiveFieldExplorer(c.model, c.images[0], layer="fc6"), ValueError,
                 "layer 'fc6' is not among the explorer's layers conv1, pool1", id="widget-rf-layer"),
    pytest.param(lambda c: ReceptiveFieldExplorer(c.model, c.images[0], layer="fc6", layers=["conv1", "fc6"]),
                 ValueError, "layer 'fc6' has no spatial output (shape (512,)); an explorer shows feature maps",
                 id="widget-layer-without-maps"),
    pytest.param(lambda c: LayerExplorer(c.model, c.data, layer="fc6"), ValueError,
                 "layer 'fc6' is not among the explorer's layers", id="widget-layer-not-offered"),
    pytest.param(lambda c: OcclusionExplorer(c.model, c.data, patch=0), ValueError, "patch must be an int in 1 … 32",
                 id="widget-occlusion-patch"),
]


@pytest.mark.parametrize("call, error, fragment", BAD_CALLS)
def test_wrong_call_names_the_problem(ctx, call, error, fragment):
    with pytest.raises(error) as raised:
        call(ctx)
    assert fragment in str(raised.value)


def test_every_message_is_documented_in_the_book():
    page = ERRORS_PAGE.read_text()
    missing = [f"{p.id}: {p.values[2]}" for p in BAD_CALLS if p.values[2] not in page]
    assert not missing, "book/errors.md does not show:\n" + "\n".join(missing)


def test_the_table_is_distinct_and_large():
    ids = [p.id for p in BAD_CALLS]
    assert len(ids) == len(set(ids)) >= 30
    assert all(re.fullmatch(r"[a-z0-9-]+", i) for i in ids)


_TINY = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()


class _Upsampling(nn.Module):
    """A convolution then nearest-neighbour upsampling, whose geometry receptive_field does not know."""

    def __init__(self):
        super().__init__()
        self.conv, self.up = nn.Conv2d(1, 2, 3), nn.Upsample(scale_factor=2)

    def forward(self, x):
        return self.up(self.conv(x))


class _Gated(nn.Module):
    """A convolution, a gate computed from its output (squeeze-excitation's form), a 1x1 convolution."""

    def __init__(self):
        super().__init__()
        self.conv, self.out = nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 1)

    def forward(self, x):
        x = self.conv(x)
        return self.out(x * torch.sigmoid(x.mean((2, 3), keepdim=True)))


class _Product(nn.Module):
    """The product of two convolutions of the image: neither factor is computed from the other."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.out = nn.Conv2d(1, 2, 3), nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 1)

    def forward(self, x):
        return self.out(self.a(x) * self.b(x))


class _Size(nn.Module):
    def forward(self, x):
        return x.size(-1)


class _Sized(nn.Module):
    """A layer ("size") that returns a number read off the input's shape, not its pixels."""

    def __init__(self):
        super().__init__()
        self.conv, self.size = nn.Conv2d(1, 2, 3), _Size()

    def forward(self, x):
        return self.conv(x) * self.size(x)


class _TwoOutputs(nn.Module):
    """A forward that returns two tensors instead of one tensor of logits."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        y = self.conv(x)
        return y, y


class _Untraceable(nn.Module):
    """A forward whose Python control flow depends on the data: torch.fx cannot trace it."""

    def forward(self, x):
        return x if x.sum() > 0 else -x
