"""The deconvnet of §2.1: project a layer's activations back to pixel space.

A forward pass through ``model.features`` records each max-pool's switches and each ReLU's input.
To examine an activation, every other activation of its layer is zeroed and the signal walks down:

- max-pool: *unpool* with the switches. ZFNet and AlexNet pool over overlapping 3x3/2 windows,
  so two pooled units can share a switch; their contributions are **added** (the adjoint of
  max-pooling; ``F.max_unpool2d`` writes instead and silently loses signal).
- ReLU: the backward rule — ``"deconvnet"`` rectifies the signal (``relu(g)``, the paper),
  ``"guided"`` also masks by the forward ReLU (Springenberg et al. 2014), ``"gradient"`` only masks
  (the plain gradient, Simonyan et al. 2013).
- convolution: the transposed convolution with the same weights, no bias, with ``output_padding``
  so the result has the layer input's exact size.
- LRN and dropout are the identity on the way down (the paper's choice for LRN; dropout is off
  at test time).

In mode ``"max"`` each selection starts from one unit, whose influence on any lower layer is
confined to its receptive-field *cone*; the walk then runs on those windows only (batched over
selections), which gives exactly the uncropped result at a fraction of the cost.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .checks import check_images
from .layers import Layer, resolve

__all__ = ["Deconvnet", "RULES"]

RULES = ("deconvnet", "guided", "gradient")
# A transposed convolution down to this many channels (the image: grey or RGB) runs as a sub-pixel
# convolution; see _subpixel_conv_t.
_FEW_CHANNELS = 4
_IDENTITY_DOWN = (nn.LocalResponseNorm, nn.Dropout, nn.Identity)


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


@dataclass
class _Record:
    """What the forward pass keeps for one module: its input size and switches or ReLU mask."""

    module: nn.Module
    in_size: tuple[int, int]
    switches: torch.Tensor | None = None  # max-pool argmax, flat index into the input map
    positive: torch.Tensor | None = None  # ReLU input > 0


class Deconvnet:
    """Project activations of any layer of ``model.features`` back to the input.

    ``rule`` picks how ReLUs are reversed: ``"deconvnet"`` (the paper), ``"guided"`` or ``"gradient"``.
    """

    def __init__(self, model: nn.Module, rule: str = "deconvnet"):
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
        if not isinstance(getattr(model, "features", None), nn.Sequential):
            raise ValueError(f"{type(model).__name__} has no nn.Sequential 'features'; Deconvnet needs a "
                             "model laid out like torchvision's AlexNet/VGG or built by zfkit.models")
        self.model = model
        self.rule = rule

    # ---------------------------------------------------------------- public

    @torch.no_grad()
    def project(self, images: torch.Tensor, layer: str | nn.Module, channels=None, mode: str = "max",
                chunk: int = 64) -> torch.Tensor:
        """Projections of ``channels`` of ``layer`` for each image: a tensor (B, K, C_in, H, W).

        ``mode="max"`` keeps, per image and channel, only the strongest unit (ties go to the first
        in row-major order); ``mode="map"`` keeps the channel's whole map. The walk starts from the
        actual activation values. ``channels`` defaults to all; ``chunk`` bounds how many
        selections go down together (memory).
        """
        target = self._target(layer)
        check_images(images, self.model)
        records, acts = self._forward(images, target.index)
        channels = self._channels(channels, acts.shape[1])
        if mode not in ("max", "map"):
            raise ValueError(f"mode must be 'max' or 'map', got {mode!r}")
        if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
            raise ValueError(f"chunk must be a positive int (selections projected together), got {chunk!r}")
        b, k = images.shape[0], len(channels)
        out = images.new_zeros(b, k, *images.shape[1:])
        sel = acts[:, channels]  # (B, K, h, w)
        flat = sel.flatten(2)
        for start in range(0, b * k, chunk):
            idx = torch.arange(start, min(start + chunk, b * k))
            img, kk = idx // k, idx % k
            dest = out.view(b * k, *images.shape[1:])[start:start + len(idx)]  # a view: results land in place
            if mode == "map":
                seed = images.new_zeros(len(idx), acts.shape[1], *acts.shape[2:])
                seed[torch.arange(len(idx)), channels[kk]] = sel[img, kk]
                dest.copy_(self._walk_full(seed, records, img))
            else:
                pos = flat[img, kk].argmax(1)
                value = flat[img, kk, :].gather(1, pos[:, None]).squeeze(1)
                self._walk_cone(value, channels[kk], pos, acts.shape[-2:], records, img, dest)
        return out

    # ---------------------------------------------------------------- validation

    def _target(self, layer) -> Layer:
        target = resolve(self.model, layer)
        if target.part != "features":
            raise ValueError(f"layer {target.name!r} is in model.{target.part}; Deconvnet projects layers of "
                             "model.features (conv1 … pool5)")
        return target

    @staticmethod
    def _channels(channels, n: int) -> torch.Tensor:
        if channels is None:
            return torch.arange(n)
        try:
            listed = [operator.index(channels)]
        except TypeError:
            try:
                listed = [operator.index(c) for c in channels]
            except TypeError:
                raise ValueError(f"channels must be an int, a list of ints or None (all), got {channels!r}") from None
        ch = torch.as_tensor(listed, dtype=torch.long)
        if ch.numel() == 0:
            raise ValueError("channels is empty; pass None for all channels")
        if ch.min() < 0 or ch.max() >= n:
            raise ValueError(f"channel index out of range: the layer has {n} channels (0 … {n - 1}), got {ch.tolist()}")
        return ch

    # ---------------------------------------------------------------- forward with records

    def _forward(self, images: torch.Tensor, last: int) -> tuple[list[_Record], torch.Tensor]:
        x = images
        records = []
        for module in list(self.model.features)[: last + 1]:
            rec = _Record(module, tuple(x.shape[-2:]))
            if isinstance(module, nn.MaxPool2d):
                k, s, p, d = (_pair(getattr(module, a)) for a in ("kernel_size", "stride", "padding", "dilation"))
                x, rec.switches = F.max_pool2d(x, k, s or k, p, d, ceil_mode=module.ceil_mode, return_indices=True)
            elif isinstance(module, nn.ReLU):
                rec.positive = x > 0
                x = F.relu(x)
            elif isinstance(module, nn.Conv2d) or isinstance(module, _IDENTITY_DOWN):
                x = module(x)
            else:
                raise ValueError(f"Deconvnet cannot reverse {type(module).__name__} (in model.features); supported: "
                                 "Conv2d, ReLU, MaxPool2d, LocalResponseNorm, Dropout, Identity")
            records.append(rec)
        return records, x

    # ---------------------------------------------------------------- backward steps

    def _relu(self, g: torch.Tensor, positive: torch.Tensor | None) -> torch.Tensor:
        if self.rule == "deconvnet":
            return g.clamp(min=0)
        if self.rule == "guided":
            return g.clamp(min=0) * positive
        return g * positive

    @staticmethod
    def _conv_t(g: torch.Tensor, conv: nn.Conv2d, out_size: tuple[int, int] | None) -> torch.Tensor:
        """Transposed convolution, no bias; ``out_size=None`` gives the full (unpadded) window."""
        s, p, d = _pair(conv.stride), _pair(conv.padding), _pair(conv.dilation)
        k = _pair(conv.kernel_size)
        if out_size is None:
            if conv.weight.shape[1] <= _FEW_CHANNELS and s[0] == s[1] > 1 and d == (1, 1) and conv.groups == 1:
                return _subpixel_conv_t(g, conv.weight, s[0])
            return F.conv_transpose2d(g, conv.weight, None, s, 0, 0, conv.groups, d)
        op = tuple(out_size[i] - ((g.shape[-2 + i] - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1) + 1) for i in range(2))
        return F.conv_transpose2d(g, conv.weight, None, s, p, op, conv.groups, d)

    # ---------------------------------------------------------------- full-map walk

    def _walk_full(self, g: torch.Tensor, records: list[_Record], img: torch.Tensor) -> torch.Tensor:
        for rec in reversed(records):
            m = rec.module
            if isinstance(m, nn.MaxPool2d):
                sw = rec.switches[img]
                h, w = rec.in_size
                g = g.new_zeros(g.shape[0], g.shape[1], h * w).scatter_add_(2, sw.flatten(2), g.flatten(2))
                g = g.view(g.shape[0], g.shape[1], h, w)
            elif isinstance(m, nn.ReLU):
                g = self._relu(g, rec.positive[img])
            elif isinstance(m, nn.Conv2d):
                g = self._conv_t(g, m, rec.in_size)
        return g

    # ---------------------------------------------------------------- cone-cropped walk

    def _walk_cone(self, value, channel, pos, act_size, records, img, dest: torch.Tensor) -> None:
        """Walk down only the receptive-field cone of one unit per selection (mode "max"), adding the
        input-level windows into ``dest`` (n, C, H, W), which holds zeros.

        Every selection's window has the same size at a given level (only its position differs),
        so the walk is batched over selections. Signal never leaves the window except where the
        window hangs over the map's border; those positions (padding, not input) are zeroed after
        each convolution, which is the only step that can put signal there.
        """
        n = len(value)
        top, left = pos // act_size[1], pos % act_size[1]  # window start at the current level
        h = w = 1
        g = value.new_zeros(n, self._layer_channels(records), 1, 1)
        g[torch.arange(n), channel, 0, 0] = value
        for rec in reversed(records):
            m = rec.module
            if isinstance(m, nn.MaxPool2d):
                k, s, p = _pair(m.kernel_size), _pair(m.stride or m.kernel_size), _pair(m.padding)
                nh, nw = (h - 1) * s[0] + k[0], (w - 1) * s[1] + k[1]
                local = _unpool_targets(rec.switches, rec.in_size[1], s, p, nw, img, top, left, h, w)
                g = g.new_zeros(n, g.shape[1], nh * nw).scatter_add_(2, local.flatten(2), g.flatten(2)).view(n, -1, nh, nw)
                top, left, h, w = top * s[0] - p[0], left * s[1] - p[1], nh, nw
            elif isinstance(m, nn.ReLU):
                positive = None if self.rule == "deconvnet" else _window(rec.positive, img, top, left, h, w)
                g = self._relu(g, positive)
            elif isinstance(m, nn.Conv2d):
                s, p = _pair(m.stride), _pair(m.padding)
                g = self._conv_t(g, m, None)
                top, left = top * s[0] - p[0], left * s[1] - p[1]
                h, w = g.shape[-2:]
                if p != (0, 0):
                    g = g * _inside(top, left, h, w, rec.in_size).unsqueeze(1)
        _paste(g, top, left, dest)

    def _layer_channels(self, records: list[_Record]) -> int:
        for rec in reversed(records):
            if isinstance(rec.module, nn.Conv2d):
                return rec.module.out_channels
        raise ValueError("the layer has no convolution below it")


def _subpixel_conv_t(g: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    """``conv_transpose2d(g, weight, stride=stride)`` (no padding) as a stride-1 convolution + pixel shuffle.

    Output pixel ``stride * q + r`` only sees kernel taps ``stride * j + r``, so each of the
    ``stride²`` output phases is an ordinary convolution with a ``ceil(k / stride)`` kernel. Why:
    oneDNN's transposed convolution down to 3 channels (conv1 of ZFNet, into pixel space) runs at a
    fraction of its forward convolution's speed; this form is 1.3x faster there despite 1.3x the MACs.
    """
    c_in, c_out, kh, kw = weight.shape
    jh, jw = -(-kh // stride), -(-kw // stride)
    padded = F.pad(weight, (0, jw * stride - kw, 0, jh * stride - kh))
    phases = padded.view(c_in, c_out, jh, stride, jw, stride).permute(1, 3, 5, 0, 2, 4)  # (c_out, ry, rx, c_in, jy, jx)
    kernel = phases.flip(-1, -2).reshape(c_out * stride * stride, c_in, jh, jw)
    out = F.pixel_shuffle(F.conv2d(g, kernel, padding=(jh - 1, jw - 1)), stride)
    h, w = g.shape[-2:]
    return out[..., : (h - 1) * stride + kh, : (w - 1) * stride + kw]


def _inside(top, left, h, w, size) -> torch.Tensor:
    """(n, h, w) mask of window positions that lie inside a map of ``size``."""
    rows = top[:, None] + torch.arange(h)
    cols = left[:, None] + torch.arange(w)
    return ((rows >= 0) & (rows < size[0]))[:, :, None] & ((cols >= 0) & (cols < size[1]))[:, None, :]


def _window(t: torch.Tensor, img, top, left, h, w) -> torch.Tensor:
    """Windows t[img_i, :, top_i:top_i+h, left_i:left_i+w] for each selection, clamped at the border.

    Positions outside the map repeat the border; callers only use them where the signal is zero.
    """
    rows = (top[:, None] + torch.arange(h)).clamp(0, t.shape[-2] - 1)
    cols = (left[:, None] + torch.arange(w)).clamp(0, t.shape[-1] - 1)
    return t[img[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # (n, C, h, w)


def _unpool_targets(switches, in_width, s, p, nw, img, top, left, h, w) -> torch.Tensor:
    """For each pooled unit of each window, the flat index its switch points to in the unpooled window.

    The switch's offset inside its own 3x3 window is computed once on the full (small) map, so the
    per-selection work is one gather and one add.
    """
    ho, wo = switches.shape[-2:]
    dy = switches // in_width - (torch.arange(ho) * s[0] - p[0])[:, None]
    dx = switches % in_width - (torch.arange(wo) * s[1] - p[1])[None, :]
    offset = _window(dy * nw + dx, img, top, left, h, w)
    base = (torch.arange(h) * s[0])[:, None] * nw + torch.arange(w) * s[1]
    return offset + base


def _paste(g: torch.Tensor, top, left, dest: torch.Tensor) -> None:
    """Add each selection's input-level window into its image ``dest[i]`` (n, C, H, W), in place.

    Window positions outside the image carry no signal (zeroed after each padded convolution), so
    they are clamped onto the border and added there as zeros; no padded canvas is needed.
    """
    n, c, h, w = g.shape
    size = dest.shape[-2:]
    rows = (top[:, None] + torch.arange(h)).clamp(0, size[0] - 1)
    cols = (left[:, None] + torch.arange(w)).clamp(0, size[1] - 1)
    dest.permute(0, 2, 3, 1).index_put_((torch.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]),
                                        g.permute(0, 2, 3, 1), accumulate=True)
