"""The book at a glance: every claim across the chapters with its verdict, read from the results JSON.

The introduction shows this table and the README states its counts. Both are made from the
committed ``book/results/*.json`` when the book is built, never typed, so they cannot drift from
what the chapters measured: the introduction through the Sphinx extension ``_ext/glance.py`` (at
``jupyter-book build``), the README through :func:`update_readme` (``make book``), and
``tests/test_glance.py`` fails when the committed README disagrees with the results.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Row", "rows", "counts", "markdown", "counts_sentence", "update_readme", "README_MARKERS", "OUTCOMES"]

#: The four outcomes, in the order the tables count them.
OUTCOMES = ("reproduced", "not reproduced", "inconclusive", "not testable")
#: The README lines between which :func:`update_readme` writes the counts.
README_MARKERS = ("<!-- verdict-counts: made by `make book` from book/results; do not edit -->",
                  "<!-- /verdict-counts -->")


@dataclass(frozen=True)
class Row:
    """One claim of one chapter."""

    chapter: str  # notebook name, e.g. "02_training"
    title: str  # the chapter's heading
    claim: str
    source: str  # "paper" (Zeiler & Fergus) or the later paper's short name
    verdict: str


def _title(notebook: Path) -> str:
    if not notebook.is_file():
        return notebook.stem
    cells = json.loads(notebook.read_text(encoding="utf8"))["cells"]
    for cell in cells:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return notebook.stem


def rows(results: str | Path, chapters: Sequence[str | Path]) -> list[Row]:
    """The claims of ``chapters`` (notebook paths, in reading order) from ``results/<chapter>.json``."""
    results = Path(results)
    if not results.is_dir():
        raise FileNotFoundError(f"no results folder at {results}; run the book first (make book)")
    found = []
    for chapter in map(Path, chapters):
        path = results / f"{chapter.stem}.json"
        if not path.is_file():
            continue
        title = _title(chapter)
        for r in json.loads(path.read_text(encoding="utf8")).get("verdicts", []):
            found.append(Row(chapter.stem, title, r["claim"], r.get("source", "paper"), r["verdict"]))
    return found


def counts(found: Sequence[Row], source: str | None = "paper") -> dict[str, int]:
    """Claims per outcome (all four, zeros included), of Zeiler & Fergus (``source="paper"``) or of everyone (None)."""
    tally = Counter(r.verdict for r in found if source is None or r.source == source)
    unknown = set(tally) - set(OUTCOMES)
    if unknown:
        raise ValueError(f"unknown verdicts {sorted(unknown)} in the results; expected one of {OUTCOMES}")
    return {outcome: tally.get(outcome, 0) for outcome in OUTCOMES}


def counts_sentence(found: Sequence[Row]) -> str:
    """'N claims of Zeiler & Fergus: a reproduced, b not reproduced, …; M of later papers: …'."""
    ours, later = counts(found, "paper"), counts([r for r in found if r.source != "paper"], None)
    say = lambda c: ", ".join(f"{n} {outcome}" for outcome, n in c.items())  # noqa: E731
    return (f"{sum(ours.values())} claims of Zeiler & Fergus: {say(ours)}; "
            f"{sum(later.values())} claims of later papers: {say(later)}.")


def markdown(found: Sequence[Row], link_prefix: str = "") -> str:
    """The at-a-glance table: chapter (linked), claim, who claims it, verdict; the counts above it."""
    cell = lambda text: str(text).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = [counts_sentence(found), "", "| Chapter | Claim | Source | Verdict |", "|---|---|---|---|"]
    for r in found:
        source = "Zeiler & Fergus" if r.source == "paper" else r.source
        lines.append(f"| [{cell(r.title)}]({link_prefix}{r.chapter}.ipynb) | {cell(r.claim)} | {cell(source)} | "
                     f"**{r.verdict}** |")
    return "\n".join(lines)


def update_readme(readme: str | Path, found: Sequence[Row]) -> bool:
    """Rewrite the README's counts between :data:`README_MARKERS`; True if the file changed."""
    readme = Path(readme)
    text = readme.read_text(encoding="utf8")
    start, end = (re.escape(m) for m in README_MARKERS)
    pattern = re.compile(f"{start}\n.*?\n{end}", re.S)
    if not pattern.search(text):
        raise ValueError(f"{readme} has no verdict-counts block; add the two lines {README_MARKERS} where the counts go")
    new = pattern.sub(lambda _: f"{README_MARKERS[0]}\n{counts_sentence(found)}\n{README_MARKERS[1]}", text)
    if new != text:
        readme.write_text(new, encoding="utf8")
    return new != text
