"""zfkit's batched, cone-cropped deconvnet vs a loop of Captum's NeuronDeconvolution (one neuron per call).

One 224x224 image, every channel of a layer, mode "max", seeded random weights:

- torchvision ``resnet18``: ``layer2`` (128 channels, receptive field 99 px; target >= 10x) and
  ``layer3`` (256 channels, field about the whole image, so the cone saves little; target >= 1.5x);
- ZFNet-224: ``conv5`` (target >= 10x) and ``conv2``;
- torchvision ``efficientnet_b0`` (SiLU, squeeze-excitation gates) ``features.3`` and
  ``convnext_tiny`` (GELU, LayerNorm, layer scale) ``features.3``, issue #24's modern nets: no
  target. There Captum computes another projection: it hooks only ``nn.ReLU`` modules and leaves
  every other activation, gate and norm with its plain gradient, where zfkit applies its policies
  (``relu(g)`` at SiLU/GELU, gates and σ frozen: :mod:`zfkit.policies`). The table marks those rows.

Captum has no batched mode (its batched form with N copies of the image measured no faster), so
it is timed on a sample of neurons and its per-neuron time scaled to all channels. Beside each
measured ratio: the FLOP bound, Captum's floating-point operations for all channels divided by
zfkit's for the same projections (both counted by ``torch.utils.flop_counter``; Captum's as the
plain autograd its hooks wrap: a forward pass and one unit's input gradient), the speed-up
that equal arithmetic efficiency would give. Also the top-k scan speed vs the plain forward pass.
Prints a table naming the CPU; asserts nothing.

Where the bound is lost (issue #25; 2-core Intel Xeon with AVX-512 and AMX, one thread,
``torch.profiler`` with record_shapes, a shared machine). The bound assumes both sides do their FLOPs
equally fast; they do not. A plain one-thread ``conv2d`` peaks at 150-160 GFLOP/s here; Captum's batch-1
pass runs at 65-110 (its maps stay in the 2 MB L2); zfkit walks 64 selections at once, so every
elementwise step streams a 10-300 MB tensor from memory. Share of the bound = zfkit's rate / Captum's:

- zfnet conv5: 137 GFLOP at 61 GFLOP/s vs Captum's 88: 0.69. Convs 52% of the time at 117 GFLOP/s (plain
  conv of the same shapes: 120; the sub-pixel conv1, 12 output channels: 0.53 s at 87). The other 1.08 s are
  passes over (64, 96, 67, 67) windows: zero fills 0.20 s, the ReLU rule 0.18, window/switch gathers 0.11,
  unpool scatter 0.10, index arithmetic 0.09, paste 0.08.
- resnet18 layer2: 24.6 GFLOP at 53 vs 100: 0.53. Convs 46% at 114 GFLOP/s (plain: 120). The other 0.25 s:
  zero fills 56 ms, BN scale and border masks 51, ReLU 35, paste 21, unpool 16, window gathers 16.
- resnet18 layer3: 336 GFLOP at 55 vs 110: 0.50. Convs 55% at 101 GFLOP/s (plain: 112): (64, 64, 49, 49)
  windows (39 MB) run at 97 where small ones reach 150; sub-pixel conv1 0.95 s at 75. The other 2.7 s:
  BN scale and border masks 0.75, ReLU 0.38, zero fills 0.35, unpool 0.17, paste 0.17, gathers 0.15.
- zfnet conv2: 3.4 GFLOP at 25 vs 65: 0.38. Fixed costs outweigh 13 MFLOP a map: zeroing the 154 MB
  result is 35% (48 of 137 ms), the transposed conv2 from 1x1 windows runs at 18 GFLOP/s; convs 31%.
- efficientnet_b0 features.3: 0.82 GFLOP at 10 vs 21: 0.49. Depthwise transposed convs at 5-15 GFLOP/s
  (plain depthwise conv2d of the same shapes: 6.5-16, memory-bound for both); gates and BN scales 21%, ReLU
  at SiLU 7%; non-conv 58 of 81 ms.
- convnext_tiny features.3: 597 GFLOP at 14 vs 60: 0.24. Subnormal floats: torchvision's layer scale
  starts at 1e-6, so with these random weights the signal away from the unit shrinks 1e-6 a branch (median
  |g| 1e-29 in stage 1; 2-14% of the nonzero inputs of its Linear backward matmuls are subnormal); those
  matmuls took 53% at 9-17 GFLOP/s (the same plain mm: 67-99). ``torch.set_flush_denormal(True)`` takes
  zfkit's 192 maps from 34 to 14 s of CPU and Captum's neuron from 304 to 149 ms (speed-up 1.7x -> 2.1x,
  0.44 of the bound); an artifact of the 1e-6 initial scale (trained weights not measured). Then,
  flushed: the ReLU rule on (64, 56, 56, 384) GELU maps 12%, copies for the permutes 12%, frozen-sigma
  LayerNorm and layer scale 17%. Padding each Linear step's signal by concatenation copied it (16% of the
  profile; now done only where padding is needed: 37 -> 34 s of CPU). Whole maps from each LayerNorm down
  cost FLOPs only in stage 2 (a unit's cone covers 19 of 28 rows there, all of stage 1): keeping windows
  would raise the bound, not the share.
"""

from __future__ import annotations

import time
import warnings

import torch
import torchvision
from captum.attr import NeuronDeconvolution
from torch.utils.flop_counter import FlopCounterMode

from zfkit import models
from zfkit.data import TensorImages
from zfkit.deconv import Deconvnet
from zfkit.graph import model_graph
from zfkit.topk import layer_activations, topk
from zfkit.train import cpu_name

CASES = [  # model, layer, target speed-up (None: none set)
    ("resnet18", "layer2", 10), ("resnet18", "layer3", 1.5), ("zfnet", "conv5", 10), ("zfnet", "conv2", 10),
    ("efficientnet_b0", "features.3", None), ("convnext_tiny", "features.3", None),
]
SAMPLE = 8  # Captum neurons timed per case


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


class _NoModules:
    """FlopCounterMode's module tracker without its module hooks, which register gradient hooks that
    ``torch.func.vjp`` (zfkit's replay of a linear step, e.g. ConvNeXt's ``nn.Linear``) cannot run.
    Only the total is read, so nothing is lost."""

    parents = {"Global"}

    def __enter__(self) -> _NoModules:
        return self

    def __exit__(self, *args) -> None:
        return None


def flops(fn) -> int:
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _NoModules()
    with counter:
        fn()
    return counter.get_total_flops()


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return (models.zfnet() if name == "zfnet" else getattr(torchvision.models, name)(weights=None)).eval()


def main() -> None:
    warnings.filterwarnings("ignore", module="captum")
    image = torch.randn(1, 3, 224, 224)
    print(f"CPU: {cpu_name()}, {torch.get_num_threads()} threads\n")
    print(f"{'model':16} {'layer':10} {'units':>5} {'zfkit s':>8} {'captum s':>9} {'speed-up':>9} {'FLOP bound':>11} "
          f"{'target':>7}")
    policies = {}
    for name, layer, target in CASES:
        model = build(name)
        deconv = Deconvnet(model)
        module = model_graph(model).layer(layer).op
        acts = model_graph(model).run(image, [module])[module.node][0]
        units = acts.shape[0]
        ours = best_of(lambda: deconv.project(image, layer, mode="max"), repeat=2)
        captum = NeuronDeconvolution(model, model.get_submodule(_module_path(model, layer)))

        def captum_call(c: int) -> None:
            y, x = divmod(int(acts[c].argmax()), acts.shape[-1])
            captum.attribute(image.clone(), neuron_selector=(c, y, x))

        per_neuron = best_of(lambda: [captum_call(c) for c in range(SAMPLE)], repeat=2) / SAMPLE
        theirs = per_neuron * units
        bound = flops(lambda: captum_arithmetic(model, image, module)) * units / flops(
            lambda: deconv.project(image, layer, mode="max"))
        policy = deconv.caption(layer)
        if policy:
            policies[name] = policy
        mark = "*" if policy else " "
        goal = f"{target:6}x" if target is not None else f"{'-':>7}"
        print(f"{name + mark:16} {layer:10} {units:5} {ours:8.2f} {theirs:9.2f} {theirs / ours:8.1f}x {bound:10.1f}x {goal}")
    for name, policy in policies.items():
        print(f"* {name}: not the same projection. Captum hooks only nn.ReLU modules and leaves every other "
              f"activation, gate and norm with its plain gradient; zfkit: {policy}")

    model = build("zfnet")
    data = TensorImages(torch.randn(256, 3, 224, 224), torch.zeros(256, dtype=torch.long), ("x",))
    scan = best_of(lambda: topk(model, data, "conv5", k=9, batch_size=32, progress=False), repeat=1)
    fwd = best_of(lambda: [layer_activations(model, data.images[i:i + 32], "conv5") for i in range(0, 256, 32)], repeat=1)
    print(f"\ntop-k scan conv5: {256 / scan:.1f} img/s vs forward {256 / fwd:.1f} img/s: "
          f"ratio {fwd / scan:.2f} (target >= 0.9)")


def captum_arithmetic(model: torch.nn.Module, image: torch.Tensor, op) -> None:
    """The arithmetic of one Captum call without its hooks (which the FLOP counter cannot wrap): the
    whole model's forward, then one unit's gradient with respect to the input."""
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:  # input gradients only, as Captum asks for
        p.requires_grad_(False)
    x = image.clone().requires_grad_(True)
    captured = model_graph(model).run(x, [op])[op.node]
    model(x)
    captured[0, 0].flatten().max().backward()
    for p in frozen:
        p.requires_grad_(True)


def _module_path(model: torch.nn.Module, layer: str) -> str:
    """The module whose output Captum hooks: for zfkit nets the rectified conv (its ReLU)."""
    graph = model_graph(model)
    op = graph.layer(layer).op
    called_once = op.module is not None and len(graph.outputs[op.node.target]) == 1
    return op.node.target if called_once else layer


if __name__ == "__main__":
    main()
