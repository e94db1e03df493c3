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
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from numbers import Integral, Real
from pathlib import Path

__all__ = ["notebook_dir", "results_dir", "save_results", "load_results", "Verdict", "VerdictTable", "verdict_table",
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
    text = json.dumps(_plain(results), indent=2, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{chapter}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would make the committed file private
        with os.fdopen(fd, "w", encoding="utf8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_results(chapter: str, folder: str | Path | None = None) -> dict:
    """Read the numbers :func:`save_results` wrote for ``chapter``."""
    path = _path(chapter, folder)
    if not path.is_file():
        raise FileNotFoundError(f"no results for {chapter!r} at {path}; run the chapter's notebook first")
    return json.loads(path.read_text(encoding="utf8"))


@dataclass(frozen=True)
class Verdict:
    """One row of a chapter's closing tables: the claim (or check), our number, the outcome.

    ``holds`` comes from a rule in :mod:`zfkit.verdicts` applied to the run's measurement (True,
    False, or None when the effect is within its noise), so the verdict always matches the
    numbers of the run that printed it.
    """

    claim: str
    measured: str
    holds: bool | None
    note: str = ""


class VerdictTable(list):
    """Renders as a Markdown table in notebooks and the book; ``records()`` for the results JSON.

    Two kinds: the paper's claims (reproduced / not reproduced / inconclusive) and our own checks
    and targets (passed / failed / undecided), which are never mixed with the paper's claims.
    """

    HEADINGS = {"claims": ("Paper's claim", "Our measurement", "Verdict"), "checks": ("Our check", "Measurement", "Result")}
    LABELS = {"claims": {True: "reproduced", False: "not reproduced", None: "inconclusive"},
              "checks": {True: "passed", False: "failed", None: "undecided"}}

    def __init__(self, rows, kind: str = "claims"):
        super().__init__(rows)
        self.kind = kind

    def label(self, row: Verdict) -> str:
        return self.LABELS[self.kind][row.holds]

    def _repr_markdown_(self) -> str:
        cell = lambda text: str(text).replace("|", "\\|").replace("\n", " ")  # noqa: E731
        rows = [f"| {cell(v.claim)} | {cell(v.measured)} | **{self.label(v)}**{': ' + cell(v.note) if v.note else ''} |"
                for v in self]
        return "\n".join(["| {} | {} | {} |".format(*self.HEADINGS[self.kind]), "|---|---|---|", *rows])

    def __str__(self) -> str:
        return "\n".join(f"- {v.claim}: {v.measured} -> {self.label(v)}" + (f" ({v.note})" if v.note else "") for v in self)

    __repr__ = __str__

    def records(self) -> list[dict]:
        return [{**asdict(v), "verdict": self.label(v)} for v in self]


def _table(rows: Sequence[Verdict], kind: str) -> VerdictTable:
    if not rows or not all(isinstance(r, Verdict) for r in rows):
        raise ValueError(f"{'verdict' if kind == 'claims' else 'check'}_table takes a non-empty list of "
                         "zfkit.results.Verdict rows")
    return VerdictTable(rows, kind)


def verdict_table(rows: Sequence[Verdict]) -> VerdictTable:
    """The chapter's closing table of the *paper's* claims, computed from its measurements."""
    return _table(rows, "claims")


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
