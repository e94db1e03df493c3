"""zfkit's batched, cone-cropped deconvnet vs a loop of Captum's NeuronDeconvolution (one neuron per call).

ZFNet-224 with seeded random weights, one image, every channel of conv5 and of conv2 in mode "max".
Captum is timed on a sample of neurons and its per-neuron time scaled to all channels (it has no
batched mode). Also: the multiply-accumulates of the cones (the arithmetic floor of any exact cone
walk) and the fraction of this CPU's measured conv throughput achieved; top-k scan speed vs the
plain forward pass. Prints a table; asserts nothing.
"""

from __future__ import annotations

import time

import torch
from captum.attr import NeuronDeconvolution

from zfkit import models
from zfkit.data import TensorImages
from zfkit.deconv import Deconvnet
from zfkit.layers import resolve
from zfkit.topk import layer_activations, topk


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def cone_macs(model, layer: str) -> int:
    """MACs of the transposed convolutions over one unit's cone, from the top layer down."""
    h, macs = 1, 0
    for m in reversed(list(model.features)[: resolve(model, layer).index + 1]):
        if isinstance(m, torch.nn.MaxPool2d):
            h = (h - 1) * m.stride + m.kernel_size
        elif isinstance(m, torch.nn.Conv2d):
            macs += h * h * m.out_channels * m.in_channels * m.kernel_size[0] ** 2
            h = (h - 1) * m.stride[0] + m.kernel_size[0]
    return macs


def conv_peak_macs_per_s() -> float:
    """Measured throughput of a large dense convolution here (the practical ceiling)."""
    conv = torch.nn.Conv2d(256, 256, 3, padding=1)
    x = torch.randn(8, 256, 28, 28)
    with torch.no_grad():
        t = best_of(lambda: conv(x))
    return 8 * 28 * 28 * 256 * 256 * 9 / t


def main() -> None:
    torch.manual_seed(0)
    model = models.zfnet().eval()
    image = torch.randn(1, 3, 224, 224)
    deconv = Deconvnet(model)
    peak = conv_peak_macs_per_s()
    print(f"conv throughput here: {peak / 1e9:.1f} GMAC/s\n")
    print(f"{'layer':6} {'zfkit s':>8} {'captum s':>9} {'speed-up':>9} {'target':>7} {'cone GMAC':>10} {'of peak':>8}")
    for layer, target, sample in [("conv5", 10, 16), ("conv2", 50, 16)]:
        index = resolve(model, layer).index
        channels = model.features[resolve(model, layer).index - 1].out_channels
        ours = best_of(lambda: deconv.project(image, layer, mode="max"), repeat=2)
        with torch.no_grad():
            acts = model.features[: index + 1](image)[0]
        captum = NeuronDeconvolution(model, resolve(model, layer).module)

        def captum_sample():
            for c in range(sample):
                y, x = divmod(int(acts[c].argmax()), acts.shape[-1])
                captum.attribute(image.clone(), neuron_selector=(c, y, x))

        per_neuron = best_of(captum_sample, repeat=2) / sample
        theirs = per_neuron * channels
        macs = cone_macs(model, layer) * channels
        print(f"{layer:6} {ours:8.2f} {theirs:9.2f} {theirs / ours:8.1f}x {target:6}x {macs / 1e9:10.1f} {macs / ours / peak:7.0%}")

    data = TensorImages(torch.randn(256, 3, 224, 224), torch.zeros(256, dtype=torch.long), ("x",))
    for layer in ("conv5",):
        scan = best_of(lambda: topk(model, data, layer, k=9, batch_size=32, progress=False), repeat=1)
        fwd = best_of(lambda: [layer_activations(model, data.images[i:i + 32], layer) for i in range(0, 256, 32)], repeat=1)
        print(f"\ntop-k scan {layer}: {256 / scan:.1f} img/s vs forward {256 / fwd:.1f} img/s: "
              f"ratio {fwd / scan:.2f} (target >= 0.9)")


if __name__ == "__main__":
    main()
