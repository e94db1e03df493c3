"""zfkit's incremental occlusion sweep vs Captum's ``Occlusion`` (one full forward per position).

ZFNet-224 (seeded random He-initialised weights, so activations and logits do not vanish), one image,
35-pixel patch, stride 8; then ZFNet-mini at 32x32 (patch 8, stride 2). zfkit's time includes all
three maps (activity, p(target), most probable class) and the deconv projection; Captum computes
the p(target) map only, best of ``perturbations_per_eval`` in {1, 16, 64}. Captum's cost per
position does not depend on the stride, so on ZFNet-224 it is timed with a coarser stride (fewer
positions) and reported in positions/s. Also: approximate mode's speed and its error against the
exact sweep, the multiply-accumulate floor of the incremental recomputation (recomputed conv
windows + classifier per position) and the fraction of this CPU's measured conv throughput that
each method achieves. A plain batched forward pass (full recomputation without Captum's overhead)
is shown as a second reference. Then ResNet-18 at 224 px (random torchvision weights), which zfkit
sweeps with its graph engine (each occluder's window carried through the traced graph, exact):
zfkit's three maps and projection against Captum's p(target) map with ``perturbations_per_eval=16``,
the same 35-pixel patch, stride 8 (576 positions) and baseline, both timed on every position in
the same run (best of two runs each). Prints a table; asserts nothing.

On a machine whose cores other jobs share, ``--threads 1 --cpu-time`` gives steadier numbers.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torchvision
from captum.attr import Occlusion

from zfkit import models
from zfkit.occlusion import APPROXIMATE_RATIO, occlusion
from zfkit.train import cpu_name


def best_of(fn, clock, repeat: int = 1) -> float:
    """Best time of ``repeat`` runs by ``clock`` (wall, or process CPU time when other jobs share the cores)."""
    times = []
    for _ in range(repeat):
        t = clock()
        fn()
        times.append(clock() - t)
    return min(times)


def conv_peak_macs_per_s(clock) -> float:
    """Measured throughput of a large dense convolution here (the practical ceiling)."""
    conv = torch.nn.Conv2d(256, 256, 3, padding=1)
    x = torch.randn(8, 256, 28, 28)
    with torch.no_grad():
        conv(x)
        t = best_of(lambda: conv(x), clock, repeat=10)
    return 8 * 28 * 28 * 256 * 256 * 9 / t


def he_init(model: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            torch.nn.init.zeros_(m.bias)
    return model.eval()


def captum_positions_per_s(model, image, patch, stride, clock) -> tuple[float, int]:
    """Best positions/s of Captum's Occlusion over perturbations_per_eval, and the batch size that gave it."""
    occ = Occlusion(lambda x: model(x).softmax(-1))
    c, h, w = image.shape
    n = len(range(0, h - patch + 1, stride)) * len(range(0, w - patch + 1, stride))
    best = (0.0, 0)
    for per_eval in (1, 16, 64):  # run under no_grad, Captum's fastest setting
        run = lambda: occ.attribute(image[None], sliding_window_shapes=(c, patch, patch), strides=(c, stride, stride),  # noqa: E731
                                    baselines=0.0, target=0, perturbations_per_eval=per_eval)
        with torch.no_grad():
            best = max(best, (n / best_of(run, clock), per_eval))
    return best


def plain_positions_per_s(model, image, clock) -> float:
    """Positions/s of full recomputation without Captum: the model on batches of 64 occluded images."""
    batch = image.repeat(64, 1, 1, 1)
    with torch.no_grad():
        return 64 / best_of(lambda: model(batch), clock)


#: Captum's occluded images per forward pass on ResNet-18.
CAPTUM_BATCH = 16


def resnet18_row(clock, size: int = 224, patch: int = 35, stride: int = 8) -> None:
    """zfkit's graph-engine sweep of ResNet-18 against Captum's Occlusion on the same positions."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    image = torch.randn(3, size, size)
    with torch.no_grad():
        target = int(model(image[None]).argmax())
    result = occlusion(model, image, target, patch, stride, layer="layer4")  # warm-up: traces the model once
    t_zfkit = best_of(lambda: occlusion(model, image, target, patch, stride, layer="layer4"), clock, repeat=2)
    occ = Occlusion(lambda x: model(x).softmax(-1))
    with torch.no_grad():
        t_captum = best_of(lambda: occ.attribute(image[None], sliding_window_shapes=(3, patch, patch),
                                                 strides=(3, stride, stride), baselines=0.0, target=target,
                                                 perturbations_per_eval=CAPTUM_BATCH), clock, repeat=2)
    n = result.prob.numel()
    print(f"ResNet-18 {size}x{size}: {n} positions (patch {patch}, stride {stride}), layer4, exact; zfkit recomputes "
          f"{result.macs / 1e6:.0f} of {result.full_macs / 1e6:.0f} MMAC per position, whole maps from "
          f"{result.whole_from!r} on")
    print(f"  {'method':42} {'seconds':>8} {'pos/s':>8}")
    print(f"  {f'Captum Occlusion, perturbations_per_eval={CAPTUM_BATCH}':42} {t_captum:8.2f} {n / t_captum:8.1f}")
    print(f"  {'zfkit graph engine (3 maps + projection)':42} {t_zfkit:8.2f} {n / t_zfkit:8.1f}")
    print(f"  zfkit / Captum speed: {t_captum / t_zfkit:.2f}x (target >= 3)\n")


def row(name: str, macs: float, per_s: float, captum: float, target: str, peak: float) -> str:
    return (f"{name:22} {per_s:9.1f} {per_s / captum:7.1f}x {target:>7} {macs / 1e6:10.1f} "
            f"{macs * per_s / peak:7.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time by process CPU time instead of wall time (fairer on a shared machine; use with --threads 1)")
    parser.add_argument("--only", choices=("paper-nets", "resnet18"), default=None, help="run one part only")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.cpu_time else time.perf_counter
    torch.manual_seed(0)
    peak = conv_peak_macs_per_s(clock)
    print(f"CPU: {cpu_name()}")
    print(f"conv throughput here: {peak / 1e9:.1f} GMAC/s, torch threads: {torch.get_num_threads()}, "
          f"timed by {'process CPU' if args.cpu_time else 'wall'} time, load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores\n")
    setups = [
        ("ZFNet-224", he_init(models.zfnet()), 224, 35, 8, 32, "2x", "5x", 1),
        ("ZFNet-mini 32x32", he_init(models.zfnet_mini()), 32, 8, 2, 2, "", "", 3),
    ]
    for title, model, size, patch, stride, captum_stride, exact_goal, approx_goal, repeat in \
            (setups if args.only != "resnet18" else []):
        image = torch.randn(model.in_channels, size, size)
        with torch.no_grad():
            target = int(model(image[None]).argmax())
        exact = occlusion(model, image, target, patch, stride)
        approx = occlusion(model, image, target, patch, stride, approximate=True)
        n = exact.prob.numel()
        t_exact = best_of(lambda: occlusion(model, image, target, patch, stride), clock, repeat)
        t_approx = best_of(lambda: occlusion(model, image, target, patch, stride, approximate=True), clock, repeat)
        captum, per_eval = captum_positions_per_s(model, image, patch, captum_stride, clock)
        plain = plain_positions_per_s(model, image, clock)
        print(f"{title}: {n} positions (patch {patch}, stride {stride}), target class {target}, "
              f"p(target) in [{exact.prob.min():.3f}, {exact.prob.max():.3f}]")
        print(f"  Captum timed on {'all' if captum_stride == stride else f'stride {captum_stride}'} positions, "
              f"best perturbations_per_eval={per_eval}")
        print(f"  {'method':22} {'pos/s':>9} {'vs Captum':>8} {'target':>7} {'MMAC/pos':>10} {'of peak':>7}")
        print("  " + row("Captum Occlusion", exact.full_macs, captum, captum, "", peak))
        print("  " + row("plain forward, batch 64", exact.full_macs, plain, captum, "", peak))
        print("  " + row("zfkit exact", exact.macs, n / t_exact, captum, exact_goal, peak))
        print("  " + row(f"zfkit approx ({APPROXIMATE_RATIO})", approx.macs, n / t_approx, captum, approx_goal, peak))
        rel = (approx.activity - exact.activity).abs().max() / exact.activity.abs().max()
        agree = (approx.top_class == exact.top_class).float().mean()
        print(f"  approx error: max |dp| = {(approx.prob - exact.prob).abs().max():.2e} (target <= 0.02), "
              f"max |d activity| / max activity = {rel:.3f}, top class agrees at {agree:.0%} of positions\n")
    if args.only != "paper-nets":
        resnet18_row(clock)


if __name__ == "__main__":
    main()
