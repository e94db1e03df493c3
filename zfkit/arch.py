"""Architecture arithmetic behind §3 and §4.1: map sizes, first-layer sampling and aliasing.

Zeiler & Fergus changed AlexNet's first layer from 11x11 filters at stride 4 to 7x7 at stride 2
because its second-layer features showed *aliasing*. This module turns that argument into numbers:
a layer that applies its filters every ``stride`` pixels samples its response on a grid that can
only represent frequencies up to ``1 / (2 * stride)`` cycles per pixel (the Nyquist limit); a
filter tuned above it reports a false, lower frequency. The same numbers are measured on a
sinusoidal grating so the arithmetic is checked, not just stated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .models import ArchSpec, ConvNet, Description, describe
from .results import Verdict
from .verdicts import all_of, equals

__all__ = [
    "map_sizes",
    "FirstLayer",
    "first_layer",
    "first_layer_table",
    "aliased_frequency",
    "grating_response",
    "dominant_frequency",
    "alias_check",
    "summary",
    "side_by_side",
    "checks",
]


def _spec(model: ConvNet | ArchSpec) -> ArchSpec:
    spec = model.spec if isinstance(model, ConvNet) else model
    if not isinstance(spec, ArchSpec):
        raise ValueError(f"expected a zfkit model (e.g. zfkit.models.zfnet()) or its .spec, got {type(model).__name__}")
    return spec


def map_sizes(model: ConvNet | ArchSpec, ceil: bool | None = None) -> dict[str, int]:
    """Side length of every conv and pool output, from the spec alone (no forward pass).

    ``ceil`` overrides each pool's rounding: Fig. 3's 110 -> 55 and 26 -> 13 need Caffe's ceil
    rounding, PyTorch's default floor gives 54 and 12. ``None`` keeps the model's own choice.
    """
    spec = _spec(model)
    size, sizes = spec.input_size, {}
    for conv in spec.convs:
        size = (size + 2 * conv.padding - conv.kernel) // conv.stride + 1
        sizes[conv.name] = size
        if conv.pool:
            round_up = conv.pool_ceil if ceil is None else ceil
            size = (size - 3 + (1 if round_up else 0)) // 2 + 1
            sizes[f"pool{conv.name.removeprefix('conv')}"] = size
    return sizes


@dataclass(frozen=True)
class FirstLayer:
    """How a network's first convolution samples the image (the quantities of §4.1).

    Frequencies are in cycles per input pixel; 0.5 is the finest pattern a pixel grid holds.
    """

    model: str
    kernel: int
    stride: int
    padding: int
    out_channels: int
    output_size: int  # side of the conv1 map
    params: int
    macs: int
    overlap: int  # input columns shared by two horizontally neighbouring units: kernel - stride
    nyquist: float  # 1 / (2 * stride): highest frequency the stride's sampling grid represents
    alias_free_fraction: float  # share of the 0 .. 0.5 band below the Nyquist limit: 1 / stride
    filter_frequencies: int  # non-zero frequencies m / kernel (m = 1 .. kernel // 2) a filter resolves
    aliased_frequencies: int  # how many of them lie above the Nyquist limit


def first_layer(model: nn.Module, input_size: tuple[int, int, int] | None = None) -> FirstLayer:
    """The sampling numbers of ``model``'s first ``Conv2d`` (square kernels and strides)."""
    conv = next((m for m in model.features.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise ValueError(f"{type(model).__name__}.features has no Conv2d layer")
    rows = describe(model, input_size)
    row = next(r for r in rows if r.kind == "Conv2d")
    k, s, p = conv.kernel_size[0], conv.stride[0], conv.padding[0]
    nyquist = 1 / (2 * s)
    bins = [m / k for m in range(1, k // 2 + 1)]
    return FirstLayer(
        model=getattr(getattr(model, "spec", None), "name", type(model).__name__),
        kernel=k, stride=s, padding=p, out_channels=conv.out_channels, output_size=row.output_shape[-1],
        params=row.params, macs=row.macs, overlap=k - s, nyquist=nyquist, alias_free_fraction=1 / s,
        filter_frequencies=len(bins), aliased_frequencies=sum(f > nyquist for f in bins),
    )


def first_layer_table(layers: Sequence[FirstLayer]) -> str:
    """A fixed-width text table of first layers, one column per model (deterministic for nbval)."""
    rows = [
        ("", *(f.model for f in layers)),
        ("filter", *(f"{f.out_channels}@{f.kernel}x{f.kernel}" for f in layers)),
        ("stride (px between units)", *(str(f.stride) for f in layers)),
        ("padding", *(str(f.padding) for f in layers)),
        ("map size", *(f"{f.output_size}x{f.output_size}" for f in layers)),
        ("overlap of neighbours (px)", *(str(f.overlap) for f in layers)),
        ("Nyquist limit (cycles/px)", *(f"{f.nyquist:.3f}" for f in layers)),
        ("alias-free share of band", *(f"{f.alias_free_fraction:.0%}" for f in layers)),
        ("filter frequencies aliased", *(f"{f.aliased_frequencies} of {f.filter_frequencies}" for f in layers)),
        ("parameters", *(f"{f.params:,}" for f in layers)),
        ("MACs per image", *(f"{f.macs:,}" for f in layers)),
    ]
    return _format(rows)


def aliased_frequency(frequency: float, stride: int) -> float:
    """The frequency a pattern of ``frequency`` cycles/px appears to have when sampled every ``stride`` px."""
    if stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride!r}")
    return abs(frequency - round(frequency * stride) / stride)


def grating_response(frequency: float, kernel: int, stride: int, size: int = 224) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions (input pixels) and responses of a strided conv tuned to a vertical grating.

    The image is ``cos(2 pi f x)``; the filter is the same cosine over ``kernel`` pixels, so the
    response is a sinusoid of frequency ``f`` sampled every ``stride`` pixels: exactly the
    situation §4.1 describes. Returns the first row of the (1, 1, H', W') response.
    """
    if not 0 < frequency <= 0.5:
        raise ValueError(f"frequency must be in (0, 0.5] cycles/pixel, got {frequency!r}")
    x = torch.arange(size, dtype=torch.float64)
    image = torch.cos(2 * torch.pi * frequency * x).expand(size, size)
    taps = torch.cos(2 * torch.pi * frequency * torch.arange(kernel, dtype=torch.float64))
    weight = taps.expand(kernel, kernel) / kernel
    response = F.conv2d(image[None, None], weight[None, None], stride=stride)[0, 0, 0]
    positions = (kernel - 1) / 2 + stride * torch.arange(len(response), dtype=torch.float64)
    return positions, response


def dominant_frequency(signal: torch.Tensor, spacing: float = 1.0, oversample: int = 64) -> float:
    """The strongest frequency of ``signal`` (samples ``spacing`` px apart), in cycles per pixel.

    Zero-padding the FFT by ``oversample`` resolves a peak to 1 / (oversample * len) cycles/sample.
    """
    centred = signal.double() - signal.double().mean()
    n = oversample * len(centred)
    spectrum = torch.fft.rfft(centred, n=n).abs()
    return int(spectrum.argmax()) / n / spacing


def alias_check(layers: Sequence[FirstLayer], frequencies: Sequence[float]) -> list[dict]:
    """For each layer and grating frequency: the sampling theorem's prediction and the measured one.

    ``measured`` is rounded to 4 decimals (the FFT peak's resolution is about 1e-4 cycles/px).
    """
    rows = []
    for frequency in frequencies:
        for layer in layers:
            _, response = grating_response(frequency, layer.kernel, layer.stride)
            rows.append({"model": layer.model, "frequency": frequency, "stride": layer.stride,
                         "predicted": round(aliased_frequency(frequency, layer.stride), 4),
                         "measured": round(dominant_frequency(response, layer.stride), 4),
                         "aliased": frequency > layer.nyquist})
    return rows


def summary(description: Description) -> dict:
    """Totals and per-layer output shape, parameters, MACs and receptive field, JSON-ready."""
    return {
        "params": description.total_params,
        "macs": description.total_macs,
        "layers": {
            r.name: {"output": list(r.output_shape), "params": r.params, "macs": r.macs,
                     "rf": r.rf_size, "jump": r.rf_jump, "start": r.rf_start}
            for r in description
        },
    }


_SHAPE_CHANGING = ("Conv2d", "MaxPool2d", "AvgPool2d", "Linear")


def side_by_side(descriptions: Mapping[str, Description]) -> str:
    """Conv, pool and fc rows of several models in one text table: output and receptive field each.

    Rows follow the first model's order; a layer another model lacks is left blank. Layers that
    keep the shape (ReLU, LRN, dropout) are left out: they change neither map size nor field.
    """
    names = list(descriptions)
    order = [r.name for r in descriptions[names[0]] if r.kind in _SHAPE_CHANGING]
    for d in list(descriptions.values())[1:]:
        order += [r.name for r in d if r.kind in _SHAPE_CHANGING and r.name not in order]
    header = ("layer", *(c for n in names for c in (f"{n}: output", "params", "MACs", "RF")))
    rows = [header]
    for layer in order:
        cells = [layer]
        for d in descriptions.values():
            r = next((r for r in d if r.name == layer), None)
            cells += ["", "", "", ""] if r is None else [
                "x".join(map(str, r.output_shape)), f"{r.params:,}", f"{r.macs:,}", str(r.rf_size)]
        rows.append(tuple(cells))
    rows.append(("total", *(c for d in descriptions.values() for c in ("", f"{d.total_params:,}", f"{d.total_macs:,}", ""))))
    return _format(rows)


def _format(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned first column, right-aligned others, a rule under the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(rows[0]), "  ".join("-" * w for w in widths), *map(line, rows[1:])]).rstrip()


def _side(rows: Description, name: str) -> int:
    return rows.row(name).output_shape[-1]


def checks(zfnet: Description, alexnet: Description, floor: Mapping[str, int], first: Sequence[FirstLayer],
           aliasing: Sequence[dict]) -> list[Verdict]:
    """The chapter's checks that our nets are built to §3, §4.1, §5.1 and Fig. 3, from the measured tables.

    ``zfnet``/``alexnet`` are :func:`zfkit.models.describe` tables of the 224x224 nets, ``floor``
    ZFNet's map sizes under floor rounding (:func:`map_sizes`), ``first`` the two first layers
    (AlexNet's, then ZFNet's) and ``aliasing`` :func:`alias_check`'s rows. These are checks of our
    code, not findings: the nets are built to Fig. 3, so only a mistake in building them could make
    a row fail. Shapes and counts are integer arithmetic, so each row is decided exactly
    (:func:`zfkit.verdicts.equals`); show them with :func:`zfkit.results.check_table`.
    """
    alex1, zf1 = first
    conv1 = zfnet.row("conv1").output_shape
    strides = (zf1.stride, zfnet.row("conv2").rf_jump // zfnet.row("pool1").rf_jump)
    pools = (_side(zfnet, "pool1"), _side(zfnet, "pool2"))
    fc6_inputs = zfnet.row("flatten").output_shape[0]
    conv1_diff = zf1.params - alex1.params
    grating = {r["model"]: r for r in aliasing if r["frequency"] == 0.2}
    measured_as_predicted = all(abs(r["measured"] - r["predicted"]) < 1e-3 for r in aliasing)
    return [
        Verdict("Fig. 3: 224×224×3 input, 96 filters 7×7 at stride 2 → 110×110",
                "×".join(map(str, conv1)), equals(conv1, (96, 110, 110)),
                f"with {zf1.padding} pixel of zero padding, which the paper does not state"),
        Verdict("§5.1: stride 2 convolutions in layers 1 and 2",
                f"conv1 stride {strides[0]} (224 → {conv1[-1]}), conv2 stride {strides[1]} "
                f"({_side(zfnet, 'pool1')} → {_side(zfnet, 'conv2')})", equals(strides, (2, 2))),
        Verdict("Fig. 3: 3×3 max-pool at stride 2 → 55×55 after conv1, 13×13 after conv2",
                f"{pools[0]}×{pools[0]} and {pools[1]}×{pools[1]}", equals(pools, (55, 13)),
                f"only with ceil rounding of the pooled size; floor rounding gives {floor['pool1']} and {floor['pool2']}"),
        Verdict("Fig. 3: pool5 gives 6·6·256 = 9216 inputs to fc6", f"{fc6_inputs}", equals(fc6_inputs, 9216),
                f"floor rounding would give {floor['pool5']}·{floor['pool5']}·256 = {floor['pool5'] ** 2 * 256}"),
        Verdict("§3: otherwise like Krizhevsky's net (dense layers 3–5, same layers 2–8)",
                f"ZFNet {zfnet.total_params:,} parameters, dense AlexNet {alexnet.total_params:,}; "
                f"conv1 accounts for {conv1_diff:+,}", equals(zfnet.total_params - alexnet.total_params, conv1_diff),
                "the paper gives no counts; Krizhevsky's sparse layers are 2, 4 and 5, not 3, 4 and 5"),
        Verdict("§4.1: stride 4 in layer 1 aliases; stride 2 (and 7×7 filters) reduce it",
                f"Nyquist limit AlexNet {alex1.nyquist:g}, ZFNet {zf1.nyquist:g} cycles/px: "
                f"{1 - alex1.alias_free_fraction:.0%} vs {1 - zf1.alias_free_fraction:.0%} of the band aliases; a 0.2 "
                f"cycles/px grating comes out at {grating['alexnet']['measured']:g} (AlexNet) and "
                f"{grating['zfnet']['measured']:g} (ZFNet)",
                all_of(measured_as_predicted, alex1.alias_free_fraction < zf1.alias_free_fraction,
                       grating["alexnet"]["aliased"] and not grating["zfnet"]["aliased"]),
                "measured as predicted; ZFNet reduces aliasing rather than removing it"),
    ]
