"""The book at a glance: the introduction's table and the README's counts come from the results JSON."""

import json
import re
from pathlib import Path

import pytest

from zfkit import glance
from zfkit.notebooks import chapters

ROOT = Path(__file__).resolve().parent.parent


def _results(folder: Path, chapter: str, verdicts: list[tuple[str, str, str]]) -> None:
    rows = [{"claim": c, "verdict": v, "source": s} for c, v, s in verdicts]
    (folder / f"{chapter}.json").write_text(json.dumps({"profile": "book", "verdicts": rows}))


def test_rows_counts_and_table_follow_the_results(tmp_path):
    _results(tmp_path, "02_a", [("x | y", "reproduced", "paper"), ("z", "not testable", "paper")])
    _results(tmp_path, "10_b", [("w", "inconclusive", "Adebayo 2018")])
    found = glance.rows(tmp_path, [Path("book/02_a.ipynb"), Path("book/10_b.ipynb"), Path("book/99_none.ipynb")])
    assert [(r.chapter, r.verdict) for r in found] == [("02_a", "reproduced"), ("02_a", "not testable"),
                                                       ("10_b", "inconclusive")]
    assert glance.counts(found) == {"reproduced": 1, "not reproduced": 0, "inconclusive": 0, "not testable": 1}
    assert glance.counts(found, None)["inconclusive"] == 1
    table = glance.markdown(found)
    assert "| [02_a](02_a.ipynb) | x \\| y | Zeiler & Fergus | **reproduced** |" in table
    assert "| Adebayo 2018 | **inconclusive** |" in table
    assert table.startswith("2 claims of Zeiler & Fergus: 1 reproduced, 0 not reproduced, 0 inconclusive, 1 not testable")


def test_unknown_verdicts_and_missing_folders_are_named(tmp_path):
    _results(tmp_path, "02_a", [("x", "maybe", "paper")])
    with pytest.raises(ValueError, match="unknown verdicts"):
        glance.counts(glance.rows(tmp_path, [Path("02_a.ipynb")]))
    with pytest.raises(FileNotFoundError, match="make book"):
        glance.rows(tmp_path / "absent", [])


def test_update_readme_rewrites_only_its_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"top\n{glance.README_MARKERS[0]}\nold\n{glance.README_MARKERS[1]}\nbottom\n")
    found = [glance.Row("02_a", "A", "x", "paper", "reproduced")]
    assert glance.update_readme(readme, found) is True
    assert readme.read_text() == (f"top\n{glance.README_MARKERS[0]}\n{glance.counts_sentence(found)}\n"
                                  f"{glance.README_MARKERS[1]}\nbottom\n")
    assert glance.update_readme(readme, found) is False
    readme.write_text("no block")
    with pytest.raises(ValueError, match="verdict-counts block"):
        glance.update_readme(readme, found)


def test_committed_readme_counts_match_the_committed_results():
    found = glance.rows(ROOT / "book" / "results", chapters(ROOT / "_toc.yml"))
    text = (ROOT / "README.md").read_text()
    block = re.search(re.escape(glance.README_MARKERS[0]) + r"\n(.*?)\n" + re.escape(glance.README_MARKERS[1]), text, re.S)
    assert block, "README.md lost its verdict-counts block"
    assert block.group(1) == glance.counts_sentence(found), "README's verdict counts are stale: run `make book`"


def test_the_introduction_asks_for_the_table():
    assert "```{verdicts-at-a-glance}\n```" in (ROOT / "book" / "intro.md").read_text()
