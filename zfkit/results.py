"""Each chapter's key numbers and verdicts as JSON, written atomically.

Only ``make book`` writes the committed ``book/results/<chapter>.json``: it sets ``$ZFKIT_RESULTS``
for its kernels. Every other run (nbval in ``make test``, a ``ci`` pass, a JupyterLab session)
writes to ``_build/results/``, so running the book never rewrites what the book shows.

Tests and readers check the book's claims against these files, so a run that dies half-way must
never leave a truncated one: the JSON goes to a temporary file in the same folder and is renamed
over the old file in one step (``os.replace``). Keys are sorted and the layout fixed, so re-running
a deterministic chapter leaves the committed file byte-for-byte unchanged.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
import dataclasses
from dataclasses import asdict, dataclass
from numbers import Integral, Real
from pathlib import Path

from .storage import atomic_write_bytes
from .verdicts import NOT_TESTABLE, Decision, Outcome

__all__ = ["notebook_dir", "results_dir", "save_results", "load_results", "Threshold", "Verdict", "VerdictTable", "verdict_table",
           "check_table", "verdict_changes", "RESULTS_ENV"]

#: Environment variable naming the folder results go to; ``python -m zfkit.notebooks run`` sets it.
RESULTS_ENV = "ZFKIT_RESULTS"


def notebook_dir(chapter: str) -> Path:
    """The folder holding ``<chapter>.ipynb``: the working directory, or its ``book/`` subfolder.

    Jupyter, nbval and ``zfkit.notebooks`` run a notebook in its own folder; a plain
    ``papermill book/x.ipynb`` from the repository root does not, and still finds ``book/``.
    """
    cwd = Path.cwd()
    for folder in (cwd, cwd / "book"):
        if (folder / f"{chapter}.ipynb").is_file():
            return folder
    return cwd


def results_dir(chapter: str) -> Path:
    """Where results go by default: ``$ZFKIT_RESULTS``, else ``_build/results`` of the chapter's repository.

    The repository is the folder above ``book/`` when the chapter lives there (see
    :func:`notebook_dir`), else the working directory.
    """
    if os.environ.get(RESULTS_ENV):
        return Path(os.environ[RESULTS_ENV])
    folder = notebook_dir(chapter)
    root = folder.parent if folder.name == "book" else folder
    return root / "_build" / "results"


def _plain(value):
    """JSON-able copy of ``value``: numpy/torch scalars become Python numbers, tuples lists, verdict tables records."""
    if isinstance(value, VerdictTable):
        return _plain(value.records())
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, bool)) or value is None:
        return value
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        if not math.isfinite(value):
            raise ValueError(f"results must be finite numbers, got {value!r}")
        return float(value)
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # 0-d numpy array / torch tensor
        return _plain(value.item())
    raise ValueError(f"cannot store {type(value).__name__} {value!r} in results JSON; pass numbers, strings, lists or dicts")


def _path(chapter: str, folder: str | Path | None) -> Path:
    if not chapter or Path(chapter).name != chapter:
        raise ValueError(f"chapter must be a notebook name such as '01_architecture', got {chapter!r}")
    if folder is None:
        return results_dir(chapter) / f"{chapter}.json"
    folder = Path(folder)
    return (folder if folder.is_absolute() else notebook_dir(chapter) / folder) / f"{chapter}.json"


def save_results(chapter: str, results: Mapping, folder: str | Path | None = None) -> Path:
    """Write ``results`` to ``<folder>/<chapter>.json`` atomically and return the path.

    ``folder`` defaults to :func:`results_dir`; a relative one is taken from the chapter notebook's
    folder (see :func:`notebook_dir`). Verdict tables are stored as their records.
    """
    if not isinstance(results, Mapping):
        raise ValueError(f"results must be a mapping (dict) of names to values, got {type(results).__name__}")
    path = _path(chapter, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(_plain(results), indent=2, sort_keys=True) + "\n").encode("utf8"))
    return path


def load_results(chapter: str, folder: str | Path | None = None) -> dict:
    """Read the numbers :func:`save_results` wrote for ``chapter``."""
    path = _path(chapter, folder)
    if not path.is_file():
        raise FileNotFoundError(f"no results for {chapter!r} at {path}; run the chapter's notebook first")
    return json.loads(path.read_text(encoding="utf8"))


@dataclass(frozen=True)
class Threshold:
    """The value a claim's measurement is compared with, who set it, and why that value.

    ``source`` is ``"paper"`` when Zeiler & Fergus (or the later paper the row cites) state the
    number, ``"ours"`` when we chose it; ``why`` says where it comes from.
    """

    value: float
    source: str
    why: str

    def __post_init__(self):
        if self.source not in ("paper", "ours"):
            raise ValueError(f"a threshold's source is 'paper' or 'ours', got {self.source!r}")
        if not self.why:
            raise ValueError(f"say why the threshold is {self.value!r} (its why is empty)")


@dataclass(frozen=True)
class Verdict:
    """One row of a chapter's closing tables: the claim (or check), our number, the outcome.

    ``holds`` comes from a rule in :mod:`zfkit.verdicts` applied to the run's measurement (True,
    False, None when the effect is within its noise, :data:`zfkit.verdicts.NOT_TESTABLE` when the
    claim's precondition fails here), so the verdict always matches the numbers of the run that
    printed it. ``source`` names who claims it (``"paper"``: Zeiler & Fergus; otherwise the later
    paper's short name, e.g. ``"Adebayo 2018"``); ``noise`` says what varies and its value;
    ``threshold``, ``flips_at`` and ``needed`` come from the :class:`zfkit.verdicts.Decision`
    (:meth:`decided`); ``precondition`` names, for a not-testable row, what failed and the
    measurement that shows it.
    """

    claim: str
    measured: str
    holds: Outcome
    note: str = ""
    source: str = "paper"
    noise: str = ""
    threshold: Threshold | None = None
    flips_at: float | None = None
    needed: str | None = None
    precondition: str = ""

    def __post_init__(self):
        if self.holds is NOT_TESTABLE and not self.precondition:
            raise ValueError(f"{self.claim!r} is not testable: name the failed precondition and its measurement")

    @classmethod
    def decided(cls, claim: str, measured: str, decision: Decision, *, noise: str, note: str = "",
                source: str = "paper", threshold_source: str = "ours", why: str = "",
                unit: str = "samples") -> "Verdict":
        """A row from a :class:`zfkit.verdicts.Decision`: its outcome, threshold, ``flips_at`` and
        (inconclusive) ``needed``, counted in ``unit`` ("seeds per arm", "folds", "images")."""
        if decision.holds is NOT_TESTABLE:
            return cls(claim, measured, NOT_TESTABLE, note, source, noise, precondition=decision.precondition)
        threshold = None if decision.threshold is None else Threshold(decision.threshold, threshold_source, why)
        needed = None
        if decision.holds is None:
            if decision.samples is None:
                raise ValueError(f"{claim!r} is inconclusive: pass samples= to zfkit.verdicts.decide so the row can "
                                 "say what budget would decide it")
            needed = (f"{decision.needed:,} {unit} (measured on {decision.samples:,})" if decision.needed
                      else "no budget decides it: the effect sits on the threshold")
        return cls(claim, measured, decision.holds, note, source, noise, threshold,
                   None if decision.flips_at is None else round(decision.flips_at, 6), needed)


class VerdictTable(list):
    """Renders as a Markdown table in notebooks and the book; ``records()`` for the results JSON.

    Two kinds: the paper's claims (reproduced / not reproduced / inconclusive / not testable) and
    our own checks and targets (passed / failed / undecided / not applicable), which are never
    mixed with the paper's claims.
    """

    HEADINGS = {"claims": ("Paper's claim", "Our measurement", "Verdict"), "checks": ("Our check", "Measurement", "Result")}
    LABELS = {"claims": {True: "reproduced", False: "not reproduced", None: "inconclusive", NOT_TESTABLE: "not testable"},
              "checks": {True: "passed", False: "failed", None: "undecided", NOT_TESTABLE: "not applicable"}}

    def __init__(self, rows, kind: str = "claims"):
        super().__init__(rows)
        self.kind = kind

    def label(self, row: Verdict) -> str:
        return self.LABELS[self.kind][row.holds]

    @staticmethod
    def explanation(row: Verdict) -> str:
        """The verdict cell's text after the label: the note, the precondition, noise, threshold, budget."""
        parts = [row.note, row.precondition and f"precondition failed: {row.precondition}",
                 row.noise and f"noise: {row.noise}",
                 row.threshold and f"threshold {row.threshold.value:g} ({row.threshold.source}: {row.threshold.why}), "
                                   f"flips at {row.flips_at:.3g}",
                 row.needed and f"needed: {row.needed}"]
        return "; ".join(p for p in parts if p)

    def _repr_markdown_(self) -> str:
        cell = lambda text: str(text).replace("|", "\\|").replace("\n", " ")  # noqa: E731
        source = lambda v: "" if v.source == "paper" else f" ({cell(v.source)})"  # noqa: E731
        rows = [f"| {cell(v.claim)}{source(v)} | {cell(v.measured)} | **{self.label(v)}**"
                f"{': ' + cell(self.explanation(v)) if self.explanation(v) else ''} |" for v in self]
        return "\n".join(["| {} | {} | {} |".format(*self.HEADINGS[self.kind]), "|---|---|---|", *rows])

    def __str__(self) -> str:
        return "\n".join(f"- {v.claim}: {v.measured} -> {self.label(v)}" + (f" ({v.note})" if v.note else "") for v in self)

    __repr__ = __str__

    def records(self) -> list[dict]:
        """The rows as the results JSON stores them: empty fields left out, ``holds`` "not testable" for that outcome."""
        out = []
        for v in self:
            record = {**asdict(v), "verdict": self.label(v)}
            record["holds"] = "not testable" if v.holds is NOT_TESTABLE else v.holds
            if self.kind == "checks":
                del record["source"]  # our own checks cite nobody
            out.append({key: value for key, value in record.items() if value not in (None, "") or key in ("holds", "note")})
        return out

    @staticmethod
    def from_records(records: Sequence[Mapping], kind: str = "claims") -> "VerdictTable":
        """The table back from :meth:`zfkit.results.VerdictTable.records` (the results JSON), e.g. to render it again."""
        fields = {f.name for f in dataclasses.fields(Verdict)}
        rows = []
        for r in records:
            values = {k: v for k, v in r.items() if k in fields}
            if values.get("holds") == "not testable":
                values["holds"] = NOT_TESTABLE
            if isinstance(values.get("threshold"), Mapping):
                values["threshold"] = Threshold(**values["threshold"])
            rows.append(Verdict(**values))
        return VerdictTable(rows, kind)


def _table(rows: Sequence[Verdict], kind: str) -> VerdictTable:
    if not rows or not all(isinstance(r, Verdict) for r in rows):
        raise ValueError(f"{'verdict' if kind == 'claims' else 'check'}_table takes a non-empty list of "
                         "zfkit.results.Verdict rows")
    return VerdictTable(rows, kind)


def verdict_table(rows: Sequence[Verdict]) -> VerdictTable:
    """The chapter's closing table of the *paper's* claims, computed from its measurements.

    Every decided or undecided row states its noise, and an inconclusive one the budget that would
    decide it (:meth:`Verdict.decided` fills both), so no verdict reaches the book without them.
    """
    table = _table(rows, "claims")
    for row in table:
        if row.holds is not NOT_TESTABLE and not row.noise:
            raise ValueError(f"claim {row.claim!r} states no noise; say what varies and its value (seeds, folds, images)")
        if row.holds is None and not row.needed:
            raise ValueError(f"claim {row.claim!r} is inconclusive without `needed`; build it with Verdict.decided")
    return table


def check_table(rows: Sequence[Verdict]) -> VerdictTable:
    """Our own checks and targets (engine agrees with the oracle, accuracy target): passed / failed / undecided."""
    return _table(rows, "checks")


def verdict_changes(before: str | Path, after: str | Path) -> list[tuple[str, str, str, str]]:
    """(chapter, claim, verdict before, verdict after) for every claim or check whose verdict differs
    between two results folders (say, the committed book and a rerun on another CPU).

    Chapters present in only one folder are skipped; a claim present in only one reads "missing".
    """
    before, after = Path(before), Path(after)
    for folder in (before, after):
        if not folder.is_dir():
            raise FileNotFoundError(f"no results folder at {folder}; run the book (python -m zfkit.notebooks run) first")
    changes = []
    for path in sorted(before.glob("*.json")):
        other = after / path.name
        if not other.is_file():
            continue
        rows = {}
        for side, file in enumerate((path, other)):
            data = json.loads(file.read_text(encoding="utf8"))
            for r in data.get("verdicts", []) + data.get("checks", []):
                rows.setdefault(r["claim"], ["missing", "missing"])[side] = r["verdict"]
        changes += [(path.stem, claim, a, b) for claim, (a, b) in rows.items() if a != b]
    return changes
