"""The networks of the paper, built from one declarative spec.

ZFNet (Fig. 3), Krizhevsky's AlexNet as a single dense tower, their 32x32 "mini" counterparts for a
CPU budget, and the Table 3 variants. Every model is a :class:`ConvNet` whose ``features`` and
``classifier`` are ``nn.Sequential`` built from an ``OrderedDict``, so layers carry the paper's names
(``conv1 … conv5``, ``pool1``, ``norm1``, ``fc6`` …) and torchvision-style code (``model.features``)
works unchanged.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from .efficientnet import efficientnet_lite0
from .inputs import check_input
from .lrn import LocalResponseNorm
from .rf import receptive_fields

__all__ = [
    "ConvSpec",
    "ArchSpec",
    "DROPOUT_SITES",
    "ConvNet",
    "zfnet",
    "alexnet",
    "zfnet_mini",
    "alexnet_mini",
    "zfnet_scenes",
    "variant",
    "build",
    "init_he",
    "describe",
    "LayerRow",
    "Description",
    "Ensemble",
    "efficientnet_lite0",
]


@dataclass(frozen=True)
class ConvSpec:
    """One convolutional stage: conv -> ReLU [-> max-pool] [-> LRN] (or LRN before pool)."""

    name: str  # "conv1" … "conv5"
    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    pool: bool = False  # overlapping 3x3 / stride 2 max-pool after the ReLU
    norm: bool = False  # local response normalisation
    norm_before_pool: bool = False  # AlexNet normalises before pooling, ZFNet after
    pool_ceil: bool = True  # Caffe-style ceil rounding, as the original nets used


#: The places an ArchSpec's dropout may act, the paper's fc6/fc7 outputs or torchvision's fc inputs.
DROPOUT_SITES = ("fc_outputs", "fc_inputs")


@dataclass(frozen=True)
class ArchSpec:
    """Everything needed to rebuild a network: used by :func:`variant` and by checkpoints."""

    name: str
    convs: tuple[ConvSpec, ...]
    fc_widths: tuple[int, ...]  # widths of fc6, fc7 (in that order; fewer when removed)
    fc_names: tuple[str, ...] = ("fc6", "fc7")
    num_classes: int = 1000
    in_channels: int = 3
    input_size: int = 224
    dropout: float = 0.5
    # Where dropout acts: "fc_outputs", the paper's "in the fully connected layers (6 and 7)"
    # (cuda-convnet drops fc6's and fc7's rectified units), or "fc_inputs", torchvision's AlexNet
    # layout, which drops pool5's units and fc6's instead (what zfkit built before; see the training chapter).
    dropout_site: str = "fc_outputs"
    lrn: tuple[int, float, float, float] = (5, 1e-4, 0.75, 2.0)  # size, alpha, beta, k
    removed: tuple[str, ...] = field(default=())

    def __post_init__(self):
        if self.dropout_site not in DROPOUT_SITES:
            raise ValueError(f"dropout_site must be one of {', '.join(map(repr, DROPOUT_SITES))}, got {self.dropout_site!r}")

    def to_dict(self) -> dict:
        """A JSON-able description (for checkpoint metadata)."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["convs"] = [c.__dict__.copy() for c in self.convs]
        return d

    @staticmethod
    def from_dict(d: Mapping) -> "ArchSpec":
        d = dict(d)
        d["convs"] = tuple(ConvSpec(**c) for c in d["convs"])
        for key in ("fc_widths", "fc_names", "lrn", "removed"):
            d[key] = tuple(d[key])
        return ArchSpec(**d)


class ConvNet(nn.Module):
    """A ZFNet/AlexNet-style network: ``features`` (convolutional part) then ``classifier``.

    ``forward`` checks the input's rank, channels and size first, because a wrong-size image
    otherwise fails deep inside ``fc6`` with a matrix-shape message that names neither.
    """

    def __init__(self, spec: ArchSpec):
        super().__init__()
        self.spec = spec
        self.in_channels = spec.in_channels
        self.input_size = spec.input_size
        self.features = nn.Sequential(_feature_layers(spec))
        with torch.no_grad():
            probe = torch.zeros(1, spec.in_channels, spec.input_size, spec.input_size)
            flat = self.features(probe).numel()
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Sequential(_classifier_layers(spec, flat))
        init_paper(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.input_size, self.spec.name)
        return self.classifier(self.flatten(self.features(x)))


def _feature_layers(spec: ArchSpec) -> OrderedDict:
    size, beta, alpha, k = spec.lrn[0], spec.lrn[2], spec.lrn[1], spec.lrn[3]
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    in_ch = spec.in_channels
    for conv in spec.convs:
        i = conv.name.removeprefix("conv")
        layers[conv.name] = nn.Conv2d(in_ch, conv.out_channels, conv.kernel, conv.stride, conv.padding)
        layers[f"relu{i}"] = nn.ReLU(inplace=True)
        norm = LocalResponseNorm(size, alpha=alpha, beta=beta, k=k)
        pool = nn.MaxPool2d(3, stride=2, ceil_mode=conv.pool_ceil)
        if conv.norm and conv.norm_before_pool:
            layers[f"norm{i}"] = norm
        if conv.pool:
            layers[f"pool{i}"] = pool
        if conv.norm and not conv.norm_before_pool:
            layers[f"norm{i}"] = norm
        in_ch = conv.out_channels
    return layers


def _classifier_layers(spec: ArchSpec, in_features: int) -> OrderedDict:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    width = in_features
    for name, out in zip(spec.fc_names, spec.fc_widths):
        i = name.removeprefix("fc")
        if spec.dropout_site == "fc_inputs":
            layers[f"drop{i}"] = nn.Dropout(spec.dropout)
        layers[name] = nn.Linear(width, out)
        layers[f"relu{i}"] = nn.ReLU(inplace=True)
        if spec.dropout_site == "fc_outputs":
            layers[f"drop{i}"] = nn.Dropout(spec.dropout)
        width = out
    layers["fc8"] = nn.Linear(width, spec.num_classes)
    return layers


def init_paper(model: nn.Module, std: float = 1e-2) -> nn.Module:
    """The paper's initialisation (§3): weights N(0, 10^-2), biases 0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            nn.init.zeros_(m.bias)
    return model


def init_he(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """He et al.'s N(0, 2/fan_in) for every conv/linear weight (``model`` itself may be one), biases 0.

    Keeps the signal's scale through ReLU layers; the book's mini models train from it (see
    ``zfkit.zoo``). ``generator`` makes the draw independent of torch's global random state.
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def build(spec: ArchSpec) -> ConvNet:
    """Build a network from its spec (the inverse of ``model.spec``)."""
    return ConvNet(spec)


class Ensemble(nn.Module):
    """Several trained networks as one: the log of their averaged softmax (Table 2's "5 convnets").

    Returning log-probabilities keeps it a drop-in model: ``softmax`` of the output is the average.
    """

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if len(members) == 0:
            raise ValueError("an Ensemble needs at least one member model")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [m(x) for m in self.members]
        widths = [o.shape[1] for o in outputs]
        if len(set(widths)) > 1:
            raise ValueError(f"the ensemble's members predict different numbers of classes ({widths}); "
                             "every member must share the same classes")
        probs = torch.stack([o.softmax(dim=1) for o in outputs]).mean(0)
        return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()


# ---------------------------------------------------------------- the paper's networks (224x224)

def zfnet(num_classes: int = 1000, in_channels: int = 3) -> ConvNet:
    """ZFNet exactly as Fig. 3 of the ECCV paper, with dense connections (one GPU tower).

    224x224 input -> conv1 ``96@7x7/2`` (110) -> pool 3x3/2 (55) -> LRN -> conv2 ``256@5x5/2`` (26) -> pool (13)
    -> LRN -> conv3 ``384@3x3`` -> conv4 ``384@3x3`` -> conv5 ``256@3x3`` (13) -> pool (6x6x256 = 9216)
    -> fc6 4096 -> fc7 4096 -> fc8 C, dropout 0.5 on fc6's and fc7's outputs. 62,357,608 parameters for C=1000.
    Pools round up (Caffe's convention), which is what makes 110 -> 55 and 26 -> 13.
    """
    convs = (
        ConvSpec("conv1", 96, 7, stride=2, padding=1, pool=True, norm=True),
        ConvSpec("conv2", 256, 5, stride=2, padding=0, pool=True, norm=True),
        ConvSpec("conv3", 384, 3, padding=1),
        ConvSpec("conv4", 384, 3, padding=1),
        ConvSpec("conv5", 256, 3, padding=1, pool=True),
    )
    return build(ArchSpec("zfnet", convs, (4096, 4096), num_classes=_positive(num_classes, "num_classes"),
                          in_channels=_positive(in_channels, "in_channels")))


def alexnet(num_classes: int = 1000, in_channels: int = 3) -> ConvNet:
    """Krizhevsky et al.'s network as a single dense tower (the paper's baseline, Table 2/3).

    224x224 -> conv1 ``96@11x11/4`` pad 2 (55) -> LRN -> pool (27) -> conv2 ``256@5x5`` pad 2 (27) -> LRN -> pool (13)
    -> conv3 384, conv4 384, conv5 256 @3x3 (13) -> pool (6) -> fc6 4096 -> fc7 4096 -> fc8 C.
    62,378,344 parameters for C=1000. LRN precedes pooling, as in the original.
    """
    convs = (
        ConvSpec("conv1", 96, 11, stride=4, padding=2, pool=True, norm=True, norm_before_pool=True, pool_ceil=False),
        ConvSpec("conv2", 256, 5, padding=2, pool=True, norm=True, norm_before_pool=True, pool_ceil=False),
        ConvSpec("conv3", 384, 3, padding=1),
        ConvSpec("conv4", 384, 3, padding=1),
        ConvSpec("conv5", 256, 3, padding=1, pool=True, pool_ceil=False),
    )
    return build(ArchSpec("alexnet", convs, (4096, 4096), num_classes=_positive(num_classes, "num_classes"),
                          in_channels=_positive(in_channels, "in_channels")))


# ---------------------------------------------------------------- the 32x32 counterparts

def _mini_convs(first: ConvSpec, conv2_stride: int, width: float) -> tuple[ConvSpec, ...]:
    w = lambda c: max(1, round(c * width))  # noqa: E731 - a local scaling rule
    return (
        replace(first, out_channels=w(first.out_channels)),
        ConvSpec("conv2", w(96), 5, stride=conv2_stride, padding=2, pool=True, norm=True),
        ConvSpec("conv3", w(128), 3, padding=1),
        ConvSpec("conv4", w(128), 3, padding=1),
        ConvSpec("conv5", w(96), 3, padding=1, pool=True),
    )


def zfnet_mini(num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> ConvNet:
    """ZFNet's topology sized for 32x32 images and a 2-core CPU (Fashion-MNIST padded to 32x32).

    Same layer sequence as Fig. 3: five convolutions, ReLU, overlapping 3x3/2 max-pools after
    conv1, conv2, conv5, LRN after layers 1-2, dropout 0.5 on fc6's and fc7's outputs. Sizing choices:

    - conv1 ``32@5x5`` stride 1 (Fig. 3: ``96@7x7`` stride 2). The paper's §4.1 fix made the first layer's
      stride half of AlexNet's and its filters smaller; on a 32x32 image the analogous step is
      stride 1 with 5x5 filters (AlexNet-mini: stride 2, 7x7). 32 -> pool -> 16.
    - conv2 ``96@5x5`` stride 2 (Fig. 3: ``256@5x5`` stride 2): the stride-2 conv2 that ZFNet uses to
      regain the resolution lost by its finer first layer. 16 -> 8 -> pool -> 4.
    - conv3/conv4 ``128@3x3``, conv5 ``96@3x3`` (Fig. 3: 384, 384, 256): a third of ZFNet's widths for
      conv1 and conv3-5, the 4x4 maps playing the role of Fig. 3's 13x13.
    - pool5 -> 2x2x96 = 384 inputs to fc6; fc6/fc7 512 wide (Fig. 3: 9216 -> 4096 -> 4096).

    About 11 M multiply-accumulates per image, so the book profile trains at several hundred
    images/s on 2 cores. ``width`` scales every conv width (the ``ci`` profile uses 0.5).
    """
    first = ConvSpec("conv1", 32, 5, stride=1, padding=2, pool=True, norm=True)
    return build(ArchSpec("zfnet_mini", _mini_convs(first, 2, _positive(width, "width")), (512, 512),
                          num_classes=_positive(num_classes, "num_classes"),
                          in_channels=_positive(in_channels, "in_channels"), input_size=32))


def alexnet_mini(num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> ConvNet:
    """ZFNet-mini with an AlexNet-style first layer, for the §4.1 comparison.

    conv1 ``32@7x7`` stride 2 (twice ZFNet-mini's stride, larger filters: the 11x11/4 vs 7x7/2
    contrast of the paper) -> 16 -> pool -> 8; conv2 then keeps stride 1 (AlexNet's conv2), so from
    pool2 on both minis have the same 4x4 maps and identical layers.
    """
    first = ConvSpec("conv1", 32, 7, stride=2, padding=3, pool=True, norm=True)
    return build(ArchSpec("alexnet_mini", _mini_convs(first, 1, _positive(width, "width")), (512, 512),
                          num_classes=_positive(num_classes, "num_classes"),
                          in_channels=_positive(in_channels, "in_channels"), input_size=32))


def zfnet_scenes(num_classes: int = 1000, in_channels: int = 3, input_size: int = 96, width: float = 1.0,
                 dropout: float = 0.3) -> ConvNet:
    """ZFNet's topology for small colour images: the student :mod:`zfkit.distill` trains on scenes.

    Fig. 3's layer sequence at about half its widths: conv1 ``48@7x7/2`` pad 3 -> pool 3x3/2 ->
    conv2 ``128@5x5/2`` pad 2 -> pool -> conv3/conv4 ``192@3x3`` -> conv5 ``128@3x3`` -> pool ->
    fc6/fc7 512 -> fc8 C. At 96x96: 48 -> 24 -> 12 -> 6 -> 6 -> 6 -> 3 (pool5 3x3x128 = 1152), about 60 M
    multiply-accumulates per image. The pools overlap (3x3, stride 2, Caffe's ceil rounding) as in
    ZFNet, so the deconvnet's switches matter. No LRN: distillation trains with Adam, which does not
    need it, and it is the identity on the way down anyway. ``input_size`` must be a multiple of 16.
    """
    if not isinstance(input_size, int) or input_size < 32 or input_size % 16:
        raise ValueError(f"input_size must be a multiple of 16, at least 32, got {input_size!r}")
    w = lambda c: max(1, round(c * _positive(width, "width")))  # noqa: E731 - a local scaling rule
    convs = (
        ConvSpec("conv1", w(48), 7, stride=2, padding=3, pool=True),
        ConvSpec("conv2", w(128), 5, stride=2, padding=2, pool=True),
        ConvSpec("conv3", w(192), 3, padding=1),
        ConvSpec("conv4", w(192), 3, padding=1),
        ConvSpec("conv5", w(128), 3, padding=1, pool=True),
    )
    return build(ArchSpec("zfnet_scenes", convs, (w(512), w(512)), num_classes=_positive(num_classes, "num_classes"),
                          in_channels=_positive(in_channels, "in_channels"), input_size=input_size,
                          dropout=dropout))


def _positive(value, name: str):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return value


# ---------------------------------------------------------------- Table 3 variants

REMOVABLE = ("conv3", "conv4", "conv5", "fc6", "fc7")


def variant(
    base: ConvNet | ArchSpec,
    remove: Sequence[str] = (),
    fc_width: int | None = None,
    conv_widths: Mapping[str, int] | None = None,
) -> ConvNet:
    """A Table 3 row: ``base`` with layers removed and/or resized, freshly initialised.

    ``remove`` takes any of conv3, conv4, conv5, fc6, fc7 (the paper removes conv3+conv4, fc7,
    fc6+fc7, or all four); ``fc_width`` sets fc6/fc7's width; ``conv_widths`` maps conv names to
    new widths (the paper's 512-1024-512 for conv3-5). Later layers adapt their input width.
    """
    spec = base.spec if isinstance(base, ConvNet) else base
    if not isinstance(spec, ArchSpec):
        raise ValueError(f"variant() needs a zfkit model (e.g. zfkit.models.zfnet()) or its .spec, got {type(base).__name__}")
    remove = (remove,) if isinstance(remove, str) else tuple(remove)
    conv_widths = dict(conv_widths or {})
    present = [c.name for c in spec.convs] + list(spec.fc_names)
    for name in remove:
        if name not in REMOVABLE:
            raise ValueError(f"cannot remove layer {name!r}: removable layers are {', '.join(REMOVABLE)} "
                             "(conv1, conv2 and fc8 carry the input and output sizes)")
        if name not in present:
            raise ValueError(f"cannot remove layer {name!r}: {spec.name} has only {', '.join(present)}")
    for name, width in conv_widths.items():
        if name not in [c.name for c in spec.convs] or name in remove:
            raise ValueError(f"conv_widths names unknown layer {name!r}; {spec.name} has convolutions "
                             f"{', '.join(c.name for c in spec.convs if c.name not in remove)}")
        _positive(width, f"conv_widths[{name!r}]")
    if fc_width is not None:
        _positive(fc_width, "fc_width")

    convs = []
    for c in spec.convs:
        if c.name in remove:
            if c.pool or c.norm:  # keep the spatial schedule: the pool moves to the previous stage
                convs[-1] = replace(convs[-1], pool=convs[-1].pool or c.pool, norm=convs[-1].norm or c.norm)
            continue
        convs.append(replace(c, out_channels=conv_widths.get(c.name, c.out_channels)))
    kept = [(n, fc_width or w) for n, w in zip(spec.fc_names, spec.fc_widths) if n not in remove]
    return build(replace(
        spec,
        convs=tuple(convs),
        fc_names=tuple(n for n, _ in kept),
        fc_widths=tuple(w for _, w in kept),
        removed=tuple(sorted(set(spec.removed) | set(remove))),
    ))


# ---------------------------------------------------------------- describe()

@dataclass(frozen=True)
class LayerRow:
    """One line of :func:`describe`: a named layer and its cost and receptive field."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    rf_size: int  # receptive field side on the input, in pixels
    rf_jump: int  # input pixels between neighbouring units
    rf_start: float  # input coordinate of the centre of unit (0, 0)


class Description(list):
    """A list of :class:`LayerRow` that prints as a table (text and HTML)."""

    columns = ("layer", "type", "output", "params", "MACs", "RF", "jump", "start")

    def _cells(self):
        for r in self:
            yield (r.name, r.kind, "x".join(map(str, r.output_shape)), f"{r.params:,}", f"{r.macs:,}",
                   str(r.rf_size), str(r.rf_jump), f"{r.rf_start:g}")

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self)

    @property
    def total_macs(self) -> int:
        return sum(r.macs for r in self)

    def row(self, name: str) -> LayerRow:
        for r in self:
            if r.name == name:
                return r
        raise KeyError(f"no layer {name!r}; layers are {', '.join(r.name for r in self)}")

    def __str__(self) -> str:
        rows = [self.columns, *self._cells(), ("total", "", "", f"{self.total_params:,}", f"{self.total_macs:,}", "", "", "")]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.columns))]
        fmt = lambda r: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
        return "\n".join([fmt(rows[0]), "  ".join("-" * w for w in widths), *map(fmt, rows[1:])])

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{c}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>" for cells in self._cells())
        foot = f"<tr><th>total</th><td></td><td></td><td>{self.total_params:,}</td><td>{self.total_macs:,}</td><td></td><td></td><td></td></tr>"
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}{foot}</tbody></table>"

    __repr__ = __str__


def describe(model: nn.Module, input_size: tuple[int, int, int] | None = None) -> Description:
    """Per layer: output shape, parameters, multiply-accumulates and receptive field.

    Works on any model with ``features``/``classifier`` (zfkit's and torchvision's AlexNet/VGG).
    ``input_size`` is (C, H, W); zfkit models default to their own.
    """

    if input_size is None:
        if not isinstance(model, ConvNet):
            raise ValueError("describe() needs input_size=(C, H, W) for models not built by zfkit")
        input_size = (model.in_channels, model.input_size, model.input_size)
    if len(input_size) != 3:
        raise ValueError(f"input_size must be (C, H, W), got {input_size!r}")
    fields = receptive_fields(model, input_size)
    rows = Description()
    shapes: dict[nn.Module, tuple[int, ...]] = {}
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.__setitem__(m, (tuple(i[0].shape[1:]), tuple(o.shape[1:]))))
             for m in model.modules() if not list(m.children())]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_size))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    for name, module in _named_leaves(model):
        if module not in shapes or module not in fields:  # fields leave out modules called more than once
            continue
        in_shape, out_shape = shapes[module]
        params = sum(p.numel() for p in module.parameters())
        rf = fields[module]
        rows.append(LayerRow(name, type(module).__name__, out_shape, params, _macs(module, out_shape),
                             rf.size, rf.jump, rf.start))
    return rows


def _named_leaves(model: nn.Module):
    for name, m in model.named_modules():
        if not list(m.children()):
            yield name.split(".")[-1] if isinstance(model, ConvNet) else name, m


def _macs(module: nn.Module, out_shape: tuple[int, ...]) -> int:
    if isinstance(module, nn.Conv2d):
        k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        return k * out_shape[0] * out_shape[1] * out_shape[2]
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    return 0
