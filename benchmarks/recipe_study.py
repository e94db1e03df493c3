"""How the book's ZFNet-mini recipe was chosen: full-length runs that each change one thing.

Each variant trains the book profile's ZFNet-mini (55,000 Fashion-MNIST images, the same seed,
split and initialisation) and reports the validation error of its last epoch and its test accuracy,
so the effect of each choice in ``zfkit.profiles.BOOK_RECIPE`` (and of the dropout placement) is
measured rather than asserted. A run takes 10-13 minutes on 2 CPU cores; all of them about 1.5 hours.

    python benchmarks/recipe_study.py [--only NAME ...] [--threads N]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

import torch

from zfkit import models, profiles, zoo
from zfkit.train import Recipe, evaluate, fit

_PAPER_DEFAULTS = {k: getattr(Recipe(), k) for k in profiles.BOOK_RECIPE}
# name -> (Recipe fields changed from the book's, ArchSpec fields changed, epochs)
VARIANTS = {
    "book recipe": ({}, {}, None),
    "+ shifts of up to 2 pixels (the paper's crops)": ({"max_shift": 2}, {}, None),
    "no flips": ({"augment": False}, {}, None),
    "fp32 instead of bf16 autocast": ({"precision": "fp32"}, {}, None),
    "+ feature-scale clipping": ({"feature_scale_clipping": True}, {}, None),
    "dropout on fc inputs (torchvision layout)": ({}, {"dropout_site": "fc_inputs"}, None),
    "previous recipe (no flips, fp32, 13 epochs)": ({"augment": False, "precision": "fp32"}, {}, 13),
    "first book run (paper defaults, fc-input dropout, 10 epochs)": (_PAPER_DEFAULTS, {"dropout_site": "fc_inputs"}, 10),
}


def run(name: str) -> dict:
    """Train one variant from the book profile's ZFNet-mini and score it."""
    recipe_change, arch_change, epochs = VARIANTS[name]
    prepared = zoo.prepare("zfnet-mini", "book", epochs=epochs)
    recipe = dataclasses.replace(prepared.recipe, **recipe_change)
    model = prepared.model
    if arch_change:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.seed)  # the zoo's initialisation, for the rebuilt layout
            model = models.init_he(models.build(dataclasses.replace(model.spec, **arch_change)))
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        result = fit(model, prepared.train, prepared.val, recipe, out, progress=False)
        minutes = (time.perf_counter() - started) / 60
    test = evaluate(result.model, prepared.test)
    return {"val_err": result.history[-1]["val_top1_err"], "test_acc": 1 - test["top1_err"], "minutes": minutes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"book profile ZFNet-mini, {torch.get_num_threads()} threads; book recipe: {profiles.BOOK_RECIPE}")
    print(f"{'variant':<66}{'last val err':>13}{'test acc':>10}{'minutes':>9}")
    for name in args.only:
        row = run(name)
        print(f"{name:<66}{100 * row['val_err']:>12.2f}%{100 * row['test_acc']:>9.2f}%{row['minutes']:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
