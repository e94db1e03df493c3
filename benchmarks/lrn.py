"""zfkit's banded-GEMM LRN against PyTorch's ``nn.LocalResponseNorm``, alone and inside a training step.

Forward + backward at the shapes of ZFNet-mini's norm1/norm2 (batch 128) and of ZFNet's (batch 16),
channels_last as ``fit`` trains; then one SGD step of ZFNet-mini with each LRN. The two versions run
alternately and the median of the adjacent ratios is reported, so background load cancels.

    python benchmarks/lrn.py [--repeats 7] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from zfkit import lrn, models

SHAPES = {  # (batch, channels, side) of the tensors each norm layer sees
    "ZFNet-mini norm1": (128, 32, 16),
    "ZFNet-mini norm2": (128, 96, 4),
    "ZFNet norm1": (16, 96, 55),
    "ZFNet norm2": (16, 256, 13),
}


def seconds(step: Callable[[], None], calls: int) -> float:
    step()
    start = time.perf_counter()
    for _ in range(calls):
        step()
    return (time.perf_counter() - start) / calls


def layer_step(norm: nn.Module, shape: tuple[int, int, int]) -> Callable[[], None]:
    b, c, s = shape
    x = torch.randn(b, c, s, s).clamp_min(0).mul(20).contiguous(memory_format=torch.channels_last).requires_grad_()
    g = torch.randn(b, c, s, s).contiguous(memory_format=torch.channels_last)
    return lambda: norm(x).backward(g)


def training_step(torch_lrn: bool) -> Callable[[], None]:
    torch.manual_seed(0)
    model = models.zfnet_mini().to(memory_format=torch.channels_last)
    if torch_lrn:
        for name in ("norm1", "norm2"):
            mine = getattr(model.features, name)
            setattr(model.features, name, nn.LocalResponseNorm(mine.size, mine.alpha, mine.beta, mine.k))
    opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    x = torch.randn(128, 1, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (128,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def compare(name: str, ours: Callable[[], None], theirs: Callable[[], None], calls: int, repeats: int) -> None:
    pairs = [(seconds(ours, calls), seconds(theirs, calls)) for _ in range(repeats)]
    ratio = statistics.median(t / o for o, t in pairs)
    best_ours, best_theirs = min(o for o, _ in pairs), min(t for _, t in pairs)
    print(f"{name:<26}{best_theirs * 1e3:>12.2f}{best_ours * 1e3:>12.2f}{ratio:>10.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    ours, theirs = lrn.LocalResponseNorm(5, 1e-4, 0.75, 2.0), nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0)
    print(f"forward + backward, channels_last, {torch.get_num_threads()} threads; median of {args.repeats} "
          "adjacent pairs")
    print(f"{'':<26}{'torch ms':>12}{'zfkit ms':>12}{'speed-up':>11}")
    for name, shape in SHAPES.items():
        compare(name, layer_step(ours, shape), layer_step(theirs, shape), 5, args.repeats)
    compare("ZFNet-mini SGD step", training_step(False), training_step(True), 5, args.repeats)


if __name__ == "__main__":
    main()
