"""Each chapter's key numbers as JSON (``book/results/<chapter>.json``), written atomically.

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

__all__ = ["notebook_dir", "save_results", "load_results", "Verdict", "VerdictTable", "verdict_table"]


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


def _plain(value):
    """JSON-able copy of ``value``: numpy/torch scalars become Python numbers, tuples lists."""
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


def _path(chapter: str, folder: str | Path) -> Path:
    if not chapter or Path(chapter).name != chapter:
        raise ValueError(f"chapter must be a notebook name such as '01_architecture', got {chapter!r}")
    folder = Path(folder)
    return (folder if folder.is_absolute() else notebook_dir(chapter) / folder) / f"{chapter}.json"


def save_results(chapter: str, results: Mapping, folder: str | Path = "results") -> Path:
    """Write ``results`` to ``<folder>/<chapter>.json`` atomically and return the path.

    A relative ``folder`` is taken from the chapter notebook's folder (see :func:`notebook_dir`).
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


def load_results(chapter: str, folder: str | Path = "results") -> dict:
    """Read the numbers :func:`save_results` wrote for ``chapter``."""
    path = _path(chapter, folder)
    if not path.is_file():
        raise FileNotFoundError(f"no results for {chapter!r} at {path}; run the chapter's notebook first")
    return json.loads(path.read_text(encoding="utf8"))


@dataclass(frozen=True)
class Verdict:
    """One row of a chapter's "What reproduced / what did not": the claim, our number, the verdict.

    ``holds`` is computed in the notebook from the measurement (True, False, or None when the test
    is inconclusive), so the verdict always matches the numbers of the run that printed it.
    """

    claim: str
    measured: str
    holds: bool | None
    note: str = ""

    @property
    def verdict(self) -> str:
        return {True: "reproduced", False: "not reproduced", None: "inconclusive"}[self.holds]


class VerdictTable(list):
    """Renders as a Markdown table in notebooks and the book; ``records()`` for the results JSON."""

    def _repr_markdown_(self) -> str:
        cell = lambda text: str(text).replace("|", "\\|").replace("\n", " ")  # noqa: E731
        rows = [f"| {cell(v.claim)} | {cell(v.measured)} | **{v.verdict}**{': ' + cell(v.note) if v.note else ''} |" for v in self]
        return "\n".join(["| Paper's claim | Our measurement | Verdict |", "|---|---|---|", *rows])

    def __str__(self) -> str:
        return "\n".join(f"- {v.claim}: {v.measured} -> {v.verdict}" + (f" ({v.note})" if v.note else "") for v in self)

    __repr__ = __str__

    def records(self) -> list[dict]:
        return [{**asdict(v), "verdict": v.verdict} for v in self]


def verdict_table(rows: Sequence[Verdict]) -> VerdictTable:
    """The closing table of a chapter, computed from its measurements."""
    if not rows or not all(isinstance(r, Verdict) for r in rows):
        raise ValueError("verdict_table takes a non-empty list of zfkit.results.Verdict rows")
    return VerdictTable(rows)
