"""fit()'s training throughput against a bare PyTorch loop, and against this CPU's matmul peak.

Both loops train the same ZFNet-mini on the same images with the same batch size and SGD. They run
alternately and each adjacent pair gives a ratio (both saw the same background load); the median
ratio is reported, with the best rate of each loop. The bare loop runs in fit's memory layout
(channels_last), so the ratio measures fit's own overhead; the textbook NCHW loop is timed too, to
show what the layout is worth on this CPU. fit's number is the images/s it writes to
metrics.csv (the training loop; validation and checkpoints excluded), measured with augmentation
and clipping off so that both loops do the same arithmetic, in fp32 like the bare loop; the full
recipe's rate is shown too, and fit under bf16 autocast (``Recipe.precision="bf16"``), with the
choice ``precision="auto"`` makes on this CPU (``zfkit.train.cpu_has_fast_bf16``), which the
bf16 / fp32 ratio should bear out. Target: fit / bare >= 0.95.

    python benchmarks/train_throughput.py [--images 1280] [--repeats 7] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import tempfile
import time

import torch
import torch.nn.functional as F

from zfkit import data, models
from zfkit.train import Recipe, cpu_has_fast_bf16, cpu_name, fit


def bare_loop(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, batch_size: int,
              layout: torch.memory_format = torch.contiguous_format) -> float:
    """The textbook loop: shuffle, slice, forward, backward, step. Returns images/s."""
    model.to(memory_format=layout)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9, weight_decay=5e-4)
    model.train()
    order = torch.randperm(len(images))
    start = time.perf_counter()
    for idx in order.split(batch_size):
        loss = F.cross_entropy(model(images[idx].contiguous(memory_format=layout)), targets[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return len(images) / (time.perf_counter() - start)


def fit_rate(model: torch.nn.Module, train: data.TensorImages, val: data.TensorImages, recipe: Recipe) -> float:
    with tempfile.TemporaryDirectory() as out:
        return fit(model, train, val, recipe, out, checkpoints=[], progress=False).history[0]["images_per_s"]


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """Best FLOP/s of an n x n float32 matrix product: the practical peak of this CPU."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1280)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    try:
        full = data.fashion_mnist("train")
        source = "Fashion-MNIST"
    except data.DataNotFoundError:
        g = torch.Generator().manual_seed(0)
        full = data.TensorImages(torch.randn(args.images + 500, 1, 32, 32, generator=g),
                                 torch.randint(0, 10, (args.images + 500,), generator=g), tuple(map(str, range(10))))
        source = "random images (Fashion-MNIST not found)"
    train, val = full.subset(range(args.images)), full.subset(range(args.images, args.images + 500))
    torch.manual_seed(0)
    model = models.zfnet_mini()
    same_work = Recipe(epochs=1, batch_size=args.batch_size, augment=False, feature_scale_clipping=False, device="cpu",
                       precision="fp32")
    full_recipe = Recipe(epochs=1, batch_size=args.batch_size, device="cpu", precision="fp32")
    bf16 = dataclasses.replace(same_work, precision="bf16")

    bare_loop(copy.deepcopy(model), train.images[:512], train.targets[:512], args.batch_size)  # warm-up
    bare, nchw, ours, recipe, ours_bf16 = [], [], [], [], []
    for _ in range(args.repeats):  # adjacent runs see the same background load: their ratio is robust to it
        bare.append(bare_loop(copy.deepcopy(model), train.images, train.targets, args.batch_size, torch.channels_last))
        nchw.append(bare_loop(copy.deepcopy(model), train.images, train.targets, args.batch_size))
        ours.append(fit_rate(copy.deepcopy(model), train, val, same_work))
        ours_bf16.append(fit_rate(copy.deepcopy(model), train, val, bf16))
        recipe.append(fit_rate(copy.deepcopy(model), train, val, full_recipe))
    ratios = sorted(o / b for o, b in zip(ours, bare))
    full_ratios = sorted(r / b for r, b in zip(recipe, bare))
    layout_ratios = sorted(o / b for o, b in zip(ours, nchw))
    bf16_ratios = sorted(h / o for h, o in zip(ours_bf16, ours))
    peak = matmul_peak()
    flops_per_image = models.describe(model).total_macs * 2 * 3  # forward + backward (2x forward)

    print(f"ZFNet-mini, {args.images} {source} images, batch {args.batch_size}, {torch.get_num_threads()} threads, "
          f"{cpu_name()}")
    print(f"{'loop':<34}{'best img/s':>11}   all runs")
    for name, rates in (("bare PyTorch loop, channels_last", bare), ("bare PyTorch loop, NCHW", nchw),
                        ("zfkit fit (same arithmetic)", ours),
                        ("zfkit fit (augment + clipping)", recipe), ("zfkit fit, bf16 autocast", ours_bf16)):
        print(f"{name:<34}{max(rates):>11.0f}   {' '.join(f'{r:.0f}' for r in rates)}")
    print(f"fit / bare, median of {args.repeats} adjacent pairs: {ratios[len(ratios) // 2]:.3f} (target >= 0.95; "
          f"range {ratios[0]:.3f}-{ratios[-1]:.3f}); full recipe / bare: {full_ratios[len(full_ratios) // 2]:.3f}")
    print(f"fit / textbook NCHW loop: {layout_ratios[len(layout_ratios) // 2]:.3f} (what channels_last is worth here)")
    print(f"fit in bf16 / fit in fp32: {bf16_ratios[len(bf16_ratios) // 2]:.3f} (what bf16 autocast is worth here; "
          f"range {bf16_ratios[0]:.3f}-{bf16_ratios[-1]:.3f}); precision='auto' picks "
          f"{'bf16' if cpu_has_fast_bf16() else 'fp32'} on this CPU")
    print(f"matmul peak: {peak / 1e9:.1f} GFLOP/s; training cost {flops_per_image / 1e6:.1f} MFLOP/image; "
          f"fit achieves {max(ours) * flops_per_image / peak:.1%} of peak, the bare loop {max(bare) * flops_per_image / peak:.1%}")


if __name__ == "__main__":
    main()
