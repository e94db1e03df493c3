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

from dataclasses import dataclass

import numpy as np
from torch import nn

from . import zoo
from .train import evaluate

__all__ = ["Row", "ROWS", "Table", "measure", "seed_spread", "SEEDS"]


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
