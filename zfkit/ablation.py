"""Table 3: which parts of the network matter? Each row is a network trained from scratch.

Zeiler & Fergus (§5.1) remove or resize layers of AlexNet and of their own model, retrain each
from scratch, and compare train and validation errors. Here every row is a zoo model
(``zfkit.zoo.TABLE3`` plus the two short-budget baselines), trained with the same recipe on the
same images for the same number of epochs, so the rows differ only in architecture.

Differences between rows are only meaningful against the spread between *seeds* of one
architecture: :func:`seed_spread` measures it from the ensemble members the training chapter
trains anyway, and :func:`with_seeds` attaches it to the rows, with whether they are trained far
enough for Table 3's question to apply (:func:`early_training`). The verdicts are built from those
rows by :func:`zfkit.claims.ablation.claims`, which judges the converged study's rows
(:func:`zfkit.studies.table3_rows`) the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from torch import nn

from . import verdicts, zoo
from .train import evaluate

__all__ = ["Row", "ROWS", "Table", "measure", "seed_spread", "SEEDS", "Comparisons", "compare", "convergence",
           "early_training", "with_seeds", "SMALL", "EARLY"]

#: A change of under 15 % of the baseline's error "makes little difference". Table 3's own words
#: set the scale: +4.3 and +4.9 points on 40.5 (11-12 %) are "slight" / "relatively small", +30.8
#: (76 %) is "dramatically worse".
SMALL = 0.15
#: Rows whose error is still above 1.5x the fully trained model's are "in early training".
EARLY = 1.5


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


def seed_spread(name: str, profile="book", seeds: tuple[int, ...] = SEEDS, train: bool = False) -> dict:
    """Test top-1 error (%) of one architecture over several seeds: how far apart two rows must be to differ.

    ``name`` is a short-budget zoo model (the rows' budget); the seeds are the training chapter's
    ensemble members, so this costs nothing once that chapter has run. ``train=True`` also scores
    each seed on its training images (as :func:`measure` does) for the spread of the train/test
    gap ("gap", "gap_std"): one evaluation pass over the training images per seed.
    """
    errors = np.array([100 * zoo.metrics(name, profile, seed=s)["test"]["top1_err"] for s in seeds])
    spread = {"name": name, "seeds": list(seeds), "test_top1": errors.tolist(), "mean": float(errors.mean()),
              "std": float(errors.std(ddof=1))}
    if train:
        run = zoo.prepare(name, profile)  # the seed changes the initialisation and order, not the images
        trained = np.array([100 * evaluate(zoo.load(name, profile, seed=s, progress=False), run.train,
                                           run.recipe.eval_batch_size, device="cpu")["top1_err"] for s in seeds])
        gap = errors - trained
        spread |= {"train_top1": trained.tolist(), "gap": gap.tolist(), "gap_std": float(gap.std(ddof=1))}
    return spread


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


def compare(table: Table, baselines: Mapping[str, float] | None = None) -> Comparisons:
    """The comparisons of the paper's four conclusions, from a measured :class:`Table` of the ``ROWS``.

    ``baselines`` replaces the test error of the baseline rows (``"alexnet-mini-short"``,
    ``"zfnet-mini-short"``) by another estimate, such as the mean over their seeds: a row is then
    compared with the architecture's typical error rather than with one seed's luck.
    """
    err = {r["name"]: r["test_top1"] for r in table} | dict(baselines or {})
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


def early_training(short_errors: Sequence[float], converged: float, limit: float = EARLY) -> dict:
    """Are the rows still in early training? Their baseline's mean error over seeds against the
    fully trained model's error ``converged``.

    Returns the ``ratio`` (1 = as good as fully trained), its ``noise`` (the seeds' standard error
    over ``converged``) and ``early``: ``verdicts.exceeds(ratio, limit, noise)``, i.e. True beyond
    ``limit`` by two noise, False clearly below it, None too close to tell.
    """
    if not converged > 0:
        raise ValueError(f"converged must be a positive error, got {converged!r}")
    ratio = float(np.mean(short_errors)) / converged
    noise = verdicts.standard_error(short_errors) / converged
    k = verdicts.k_for(len(short_errors))
    return {"ratio": ratio, "noise": noise, "early": verdicts.exceeds(ratio, limit, noise, k)}


def with_seeds(table: Table, spread: Mapping[str, dict], early: Mapping) -> list[dict]:
    """The rows as :func:`zfkit.claims.ablation.claims` reads them: each with its seeds and ``converged``.

    ``spread`` (:func:`seed_spread` by row name) replaces a row's single run by its seeds: their
    test errors (and train errors, when scored) and means. Every other row is its one run, seed
    ``SEEDS[0]``. ``early`` (:func:`early_training`) decides ``converged`` for all rows, as
    they share one budget: converged only when clearly below :data:`EARLY` x the trained error.
    """
    rows = []
    for row in table:
        single = {"seeds": [SEEDS[0]], "test_top1": [row["test_top1"]], "train_top1": [row["train_top1"]]}
        seeds = spread.get(row["name"], single)
        out = {**row, "seeds": list(seeds["seeds"]), "test_top1_seeds": list(seeds["test_top1"]),
               "test_top1": float(np.mean(seeds["test_top1"])), "converged": early["early"] is False}
        if "train_top1" in seeds:  # a spread scored on the training images too
            out |= {"train_top1_seeds": list(seeds["train_top1"]), "train_top1": float(np.mean(seeds["train_top1"]))}
        rows.append(out)
    return rows
