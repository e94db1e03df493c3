"""The book runner: chapter order from _toc.yml, in-place execution, failures that name the notebook."""

import sys
from pathlib import Path

import nbformat
import pytest

from zfkit.notebooks import chapters, main


def _toc(tmp_path: Path, text: str) -> Path:
    toc = tmp_path / "_toc.yml"
    toc.write_text(text)
    return toc


def _notebook(path: Path, *sources: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cells = [nbformat.v4.new_code_cell(src) for src in sources]
    cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    return path


TOC = """
format: jb-book
root: book/intro
parts:
  - caption: One
    chapters:
      - file: book/02_second
        sections:
          - file: book/02a_section.ipynb
  - caption: Two
    chapters:
      - file: book/01_first
      - file: book/api
"""


def test_chapters_follow_toc_order_and_skip_markdown(tmp_path):
    for name in ("intro.md", "api.md"):
        (tmp_path / "book").mkdir(exist_ok=True)
        (tmp_path / "book" / name).write_text("# page\n")
    for name in ("01_first", "02_second", "02a_section"):
        _notebook(tmp_path / "book" / f"{name}.ipynb", "x = 1")
    got = chapters(_toc(tmp_path, TOC))
    assert [p.stem for p in got] == ["02_second", "02a_section", "01_first"]
    assert all(p.is_file() for p in got)


def test_chapters_names_a_toc_entry_without_a_file(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "intro.md").write_text("# intro\n")
    toc = _toc(tmp_path, "format: jb-book\nroot: book/intro\nchapters:\n  - file: book/09_missing\n")
    with pytest.raises(FileNotFoundError, match="09_missing"):
        chapters(toc)


def test_chapters_without_a_toc_says_where_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="repository root"):
        chapters(tmp_path / "_toc.yml")


def _book(tmp_path: Path, *sources: str) -> Path:
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "intro.md").write_text("# intro\n")
    _notebook(tmp_path / "book" / "01_ch.ipynb", 'profile = "book"', *sources)
    return _toc(tmp_path, "format: jb-book\nroot: book/intro\nchapters:\n  - file: book/01_ch\n")


SAVES = ("import os, sys\nfrom zfkit import results\n"
         "path = results.save_results('01_ch', {'profile': profile})\n"
         "print(profile, os.path.basename(os.getcwd()), path.relative_to(os.path.dirname(os.getcwd())), sys.prefix)")


@pytest.mark.slow
def test_book_profile_executes_in_place_with_no_injected_cell_and_writes_book_results(tmp_path, monkeypatch):
    monkeypatch.delenv("ZFKIT_RESULTS", raising=False)
    toc = _book(tmp_path, SAVES)
    assert main(["run", "--profile", "book", "--toc", str(toc)]) == 0
    nb = nbformat.read(tmp_path / "book" / "01_ch.ipynb", as_version=4)
    assert len(nb.cells) == 2, "papermill's injected-parameters cell must be removed"
    assert nb.metadata.papermill.parameters == {"profile": "book"}
    text = nb.cells[1].outputs[0].text
    assert text.startswith("book book book/results/01_ch.json "), "runs with the profile, in the notebook's folder"
    assert text.split()[-1] == sys.prefix, "the kernel must run this interpreter (the venv's)"


@pytest.mark.slow
def test_other_profiles_write_only_under_build(tmp_path, monkeypatch):
    """A quick pass (PROFILE=ci make book) leaves the committed notebook and results untouched."""
    monkeypatch.delenv("ZFKIT_RESULTS", raising=False)
    toc = _book(tmp_path, SAVES)
    before = (tmp_path / "book" / "01_ch.ipynb").read_bytes()
    assert main(["run", "--profile", "ci", "--toc", str(toc)]) == 0
    assert (tmp_path / "book" / "01_ch.ipynb").read_bytes() == before
    assert not (tmp_path / "book" / "results").exists()
    nb = nbformat.read(tmp_path / "_build" / "ci" / "book" / "01_ch.ipynb", as_version=4)
    assert nb.cells[1].outputs[0].text.startswith("ci book _build/ci/results/01_ch.json ")
    assert (tmp_path / "_build" / "ci" / "results" / "01_ch.json").is_file()


@pytest.mark.slow
def test_a_failing_cell_fails_the_run_and_keeps_the_notebook(tmp_path, capsys):
    toc = _book(tmp_path, "raise RuntimeError('boom')")
    before = (tmp_path / "book" / "01_ch.ipynb").read_text()
    assert main(["run", "--toc", str(toc)]) == 1
    err = capsys.readouterr().err
    assert "01_ch.ipynb" in err and "RuntimeError: boom" in err
    assert (tmp_path / "book" / "01_ch.ipynb").read_text() == before
    assert (tmp_path / "_build" / "executed" / "01_ch.ipynb").is_file()


def test_unknown_chapter_and_profile_are_rejected_before_running(tmp_path, capsys):
    toc = _book(tmp_path, "x = 1")
    assert main(["run", "--only", "99_nope", "--toc", str(toc)]) == 2
    assert "01_ch" in capsys.readouterr().err
    assert main(["run", "--profile", "huge", "--toc", str(toc)]) == 2
    assert "unknown profile" in capsys.readouterr().err


@pytest.mark.slow
def test_book_profile_with_out_leaves_the_book_alone(tmp_path, monkeypatch):
    monkeypatch.delenv("ZFKIT_RESULTS", raising=False)
    toc = _book(tmp_path, SAVES)
    before = (tmp_path / "book" / "01_ch.ipynb").read_bytes()
    assert main(["run", "--profile", "book", "--toc", str(toc), "--out", str(tmp_path / "rerun")]) == 0
    assert (tmp_path / "book" / "01_ch.ipynb").read_bytes() == before
    assert (tmp_path / "rerun" / "results" / "01_ch.json").is_file()
    assert (tmp_path / "rerun" / "book" / "01_ch.ipynb").is_file()


def test_compare_exits_1_when_a_verdict_moved(tmp_path, capsys):
    from zfkit.results import Verdict, save_results, verdict_table

    for folder, holds in (("a", True), ("b", False)):
        save_results("02_ch", {"verdicts": verdict_table([Verdict("claim", "x", holds, noise="± 0.01 over 5 seeds")])},
                     tmp_path / folder)
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "a")]) == 0
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    assert "02_ch: claim: reproduced -> not reproduced" in capsys.readouterr().out
