"""Table 3: which parts of the network matter? Each row is a network trained from scratch.

Zeiler & Fergus (§5.1) remove or resize layers of AlexNet and of their own model, retrain each
from scratch, and compare train and validation errors. Here every row is a zoo model
(``zfkit.zoo.TABLE3`` plus the two short-budget baselines), trained with the same recipe on the
same images for the same number of epochs, so the rows differ only in architecture.

Differences between rows are only meaningful against the spread between *seeds* of one
architecture: :func:`seed_spread` measures it from the ensemble members the training chapter
trains anyway.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from torch import nn

from . import zoo
from .train import evaluate

__all__ = ["Row", "ROWS", "Table", "measure", "seed_spread", "SEEDS", "Comparisons", "compare", "convergence",
           "judge"]


@dataclass(frozen=True)
class Row:
    """One line of Table 3: a zoo model and the paper's numbers for its ImageNet counterpart."""

    name: str  # zoo name
    label: str  # Table 3's wording
    paper: tuple[float, float, float]  # train top-1, validation top-1, validation top-5 error (%)


ROWS = (
    Row("alexnet-mini-short", "AlexNet-mini (replication of Krizhevsky et al., 1 convnet)", (35.1, 40.5, 18.1)),
    Row("alexnet-mini-no-conv34", "Removed layers 3, 4", (41.8, 45.4, 22.1)),
    Row("alexnet-mini-no-fc7", "Removed layer 7", (27.4, 40.0, 18.4)),
    Row("alexnet-mini-no-fc67", "Removed layers 6, 7", (27.4, 44.8, 22.4)),
    Row("alexnet-mini-no-conv34-fc67", "Removed layers 3, 4, 6, 7", (71.1, 71.3, 50.1)),
    Row("alexnet-mini-fc-narrow", "Adjust layers 6, 7: half width (2048 units)", (40.3, 41.7, 18.8)),
    Row("alexnet-mini-fc-wide", "Adjust layers 6, 7: double width (8192 units)", (26.8, 40.0, 18.1)),
    Row("zfnet-mini-short", "ZFNet-mini (our model, as per Fig. 3)", (33.1, 38.4, 16.5)),
    Row("zfnet-mini-fc-narrow", "Adjust layers 6, 7: half width (2048 units)", (38.2, 40.2, 17.6)),
    Row("zfnet-mini-fc-wide", "Adjust layers 6, 7: double width (8192 units)", (22.0, 38.8, 17.0)),
    Row("zfnet-mini-conv-wide", "Adjust layers 3, 4, 5: x4/3, x8/3, x2 maps (512, 1024, 512)", (18.8, 37.5, 16.0)),
    Row("zfnet-mini-conv-fc-wide", "Adjust layers 6, 7 (double) and 3, 4, 5 (wider)", (10.0, 38.3, 16.9)),
)
SEEDS = (0, 1, 2, 3, 4)  # the training chapter's ensemble members


class Table(list):
    """The measured rows (dicts); renders as Table 3 with the paper's numbers alongside."""

    def _repr_markdown_(self) -> str:
        head = ("| Architecture | Parameters | Train top-1 | Test top-1 | Test top-5 | Paper: train top-1 | val top-1 "
                "| val top-5 |\n|---|--:|--:|--:|--:|--:|--:|--:|")
        rows = [f"| {r['label']} | {r['parameters']:,} | {r['train_top1']:.1f} | {r['test_top1']:.1f} | "
                f"{r['test_top5']:.1f} | {r['paper_train_top1']:.1f} | {r['paper_val_top1']:.1f} | "
                f"{r['paper_val_top5']:.1f} |" for r in self]
        return "\n".join([head, *rows])

    def row(self, name: str) -> dict:
        """The measured row of zoo model ``name``."""
        for r in self:
            if r["name"] == name:
                return r
        raise KeyError(f"no row {name!r}; rows are {', '.join(r['name'] for r in self)}")


def _parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def measure(profile="book", rows: tuple[Row, ...] = ROWS, progress: bool = True) -> Table:
    """Train (or load) every row's model and score it: one dict per row, errors in %.

    The train error is measured on the row's training images in eval mode (no dropout, no
    augmentation), as the paper's "Train Top-1" is a property of the trained net, not a running
    average over the epoch. Test errors come from the zoo record (the full test split).
    """
    table = Table()
    for row in rows:
        model = zoo.load(row.name, profile, progress=progress)
        record = zoo.metrics(row.name, profile)
        run = zoo.prepare(row.name, profile)
        train = evaluate(model, run.train, run.recipe.eval_batch_size, device="cpu")
        table.append({
            "name": row.name, "label": row.label, "parameters": _parameters(model),
            "train_top1": 100 * train["top1_err"], "test_top1": 100 * record["test"]["top1_err"],
            "test_top5": 100 * record["test"]["top5_err"], "train_minutes": record["train_minutes"],
            "paper_train_top1": row.paper[0], "paper_val_top1": row.paper[1], "paper_val_top5": row.paper[2],
        })
    return table


def seed_spread(name: str, profile="book", seeds: tuple[int, ...] = SEEDS) -> dict:
    """Test top-1 error (%) of one architecture over several seeds: how far apart two rows must be to differ.

    ``name`` is a short-budget zoo model (the rows' budget); the seeds are the training chapter's
    ensemble members, so this costs nothing once that chapter has run.
    """
    errors = np.array([100 * zoo.metrics(name, profile, seed=s)["test"]["top1_err"] for s in seeds])
    return {"name": name, "seeds": list(seeds), "test_top1": errors.tolist(), "mean": float(errors.mean()),
            "std": float(errors.std(ddof=1))}


@dataclass(frozen=True)
class Comparisons:
    """The row differences Table 3's conclusions rest on, in points of test top-1 error (+ = worse)."""

    delta_vs_alexnet: dict[str, float]  # each removal row minus AlexNet-mini
    fc_parameter_share: float  # fc6 + fc7's share of AlexNet-mini's parameters
    fc_width_deltas: dict[str, float]  # each fc-narrow / fc-wide row minus its baseline
    conv_wide_gain: float  # ZFNet-mini minus its conv-wide row (+ = widening helped)
    conv_fc_wide_vs_conv_wide: dict[str, float]  # "test" error and train/test "gap": conv-fc-wide minus conv-wide

    def records(self) -> dict:
        return asdict(self)


_REMOVALS = ("alexnet-mini-no-conv34", "alexnet-mini-no-fc67", "alexnet-mini-no-conv34-fc67", "alexnet-mini-no-fc7")


def compare(table: Table) -> Comparisons:
    """The comparisons of the paper's four conclusions, from a measured :class:`Table` of the ``ROWS``."""
    err = {r["name"]: r["test_top1"] for r in table}
    gap = {r["name"]: r["test_top1"] - r["train_top1"] for r in table}
    alex, zf = "alexnet-mini-short", "zfnet-mini-short"
    widths = {f"{base.removesuffix('-short')}-fc-{size}": base for base in (alex, zf) for size in ("narrow", "wide")}
    return Comparisons(
        delta_vs_alexnet={name: err[name] - err[alex] for name in _REMOVALS},
        fc_parameter_share=1 - table.row("alexnet-mini-no-fc67")["parameters"] / table.row(alex)["parameters"],
        fc_width_deltas={name: err[name] - err[base] for name, base in widths.items()},
        conv_wide_gain=err[zf] - err["zfnet-mini-conv-wide"],
        conv_fc_wide_vs_conv_wide={"test": err["zfnet-mini-conv-fc-wide"] - err["zfnet-mini-conv-wide"],
                                   "gap": gap["zfnet-mini-conv-fc-wide"] - gap["zfnet-mini-conv-wide"]},
    )


def convergence(table: Table, profile="book") -> tuple[float, float]:
    """How far the rows are from converged: the fully trained ZFNet-mini's test top-1 error (%) and
    the ratio of the short-budget ZFNet-mini's error to it (1 = as good as fully trained)."""
    converged = 100 * zoo.metrics("zfnet-mini", profile)["test"]["top1_err"]
    return converged, table.row("zfnet-mini-short")["test_top1"] / converged


def judge(difference: float, noise: float, early_training: bool) -> bool | None:
    """A verdict on a claim that predicts ``difference`` > 0: reproduced beyond two seed standard
    deviations; refuted beyond them the other way, unless the rows are in early training, where
    how fast an architecture learns, not what it can represent, decides (then inconclusive)."""
    if difference > 2 * noise:
        return True
    if difference < -2 * noise and not early_training:
        return False
    return None
