"""Command line: ``python -m zfkit data`` (where is the data?), ``python -m zfkit train`` (the paper's recipe)."""

from __future__ import annotations

import argparse
import sys


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _device(text: str) -> str:
    """A device ``fit`` can use here, checked before any data is read (``plan_device`` has the rules)."""
    from .train import plan_device

    try:
        plan_device(text, precision="fp32")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _data(args: argparse.Namespace) -> int:
    from .data import DataNotFoundError, backgrounds, find_fashion_mnist, fashion_mnist, objects
    from .scenes import missing_packages

    if args.missing:  # for `make setup`: the Debian packages to install, one line
        missing = missing_packages()
        try:
            find_fashion_mnist(args.root)
        except DataNotFoundError:
            missing.insert(0, "dataset-fashion-mnist")
        print(" ".join(missing))
        return 0
    try:
        folder = find_fashion_mnist(args.root)
        n_train, n_test = len(fashion_mnist("train", folder)), len(fashion_mnist("test", folder))
        print(f"Fashion-MNIST: {folder} ({n_train} train, {n_test} test images, MD5 verified)")
        print(f"objects: {len(objects())} photographed objects with ImageNet classes, {len(backgrounds())} backgrounds")
    except (DataNotFoundError, ValueError) as e:
        print(f"zfkit: {e}", file=sys.stderr)
        return 1
    return 0


def _train(args: argparse.Namespace) -> int:
    import dataclasses
    import json
    import time

    from .storage import atomic_write_bytes
    from .data import DataNotFoundError
    from .distributed import current
    from .train import evaluate, fit
    from .zoo import RECORD, prepare, run_record

    name = args.model or ("zfnet" if args.profile == "paper" else "zfnet-mini")
    try:
        run = prepare(name, args.profile, seed=args.seed, data_root=args.data, epochs=args.epochs)
        overrides = {"device": args.device}
        if args.precision:
            overrides["precision"] = args.precision
        run = dataclasses.replace(run, recipe=dataclasses.replace(run.recipe, **overrides))
        started = time.perf_counter()
        result = fit(run.model, run.train, run.val, run.recipe, args.out, resume=args.resume, progress=not args.quiet)
        minutes = (time.perf_counter() - started) / 60
        test = evaluate(result.model, run.test, run.recipe.eval_batch_size, ten_crop=run.test_ten_crop)
    except (DataNotFoundError, ValueError, FloatingPointError) as e:
        print(f"zfkit: {e}", file=sys.stderr)
        return 1
    world = current()
    if world.is_main:
        record = run_record(run, result.history, test, minutes)
        atomic_write_bytes(result.out_dir / RECORD, json.dumps(record, indent=1).encode())
        print(f"{name} ({args.profile}): test top-1 error {test['top1_err']:.4f}, top-5 error {test['top5_err']:.4f} "
              f"after {run.recipe.epochs} epochs; run in {result.out_dir}")
    if world.distributed:
        import torch.distributed as dist

        dist.destroy_process_group()
    return 0


def main(argv: list[str] | None = None) -> int:
    from .train import PRECISIONS

    parser = argparse.ArgumentParser(prog="zfkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("data", help="find and verify Fashion-MNIST, the objects and backgrounds (exit 1 with "
                                    "instructions when missing)")
    p.add_argument("--root", default=None, help="folder holding the four Fashion-MNIST files")
    p.add_argument("--missing", action="store_true", help="print the Debian packages that would provide missing data")
    p.set_defaults(run=_data)

    p = sub.add_parser("train", help="train a model with the paper's recipe (§3); launch with torchrun for DDP")
    p.add_argument("--profile", choices=("ci", "book", "paper"), default="book")
    p.add_argument("--out", required=True, help="run folder: metrics.csv, epoch_XXX and last checkpoints, run.json")
    p.add_argument("--model", default=None, help="zoo name (default: zfnet-mini; zfnet for --profile paper)")
    p.add_argument("--resume", action="store_true", help="continue from the newest intact checkpoint in --out")
    p.add_argument("--data", default=None, help="Fashion-MNIST folder, or the ImageNet folder for --profile paper "
                                                "(default: $ZFKIT_IMAGENET)")
    p.add_argument("--epochs", type=_positive_int, default=None, help="override the profile's epoch count")
    p.add_argument("--seed", type=int, default=None, help="override the profile's seed")
    p.add_argument("--device", type=_device, default="auto",
                   help="auto (default: CUDA when present, else the CPU), cpu, cuda (one GPU per torchrun "
                        "process) or cuda:N")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="override the profile's autocast choice (auto: bf16 on CUDA and on CPUs with bf16 "
                        "units, AVX512-BF16 or AMX; fp32 elsewhere)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_train)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
