"""The committed chapters keep the book's conventions (DESIGN §7, issue 3).

Checks run on the notebooks as committed, without a kernel: the toc and ``book/`` agree, each chapter
has a scalar ``parameters`` cell, carries the outputs of one clean ``make book`` run, closes with
its "What reproduced" verdict, and has its key numbers in ``book/results/<chapter>.json``.
"""

import ast
import json
import re
from pathlib import Path

import nbformat
import pytest

from zfkit.notebooks import chapters

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
ENV_READS = {"os.environ.get", "os.getenv"}


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def _tags(cell) -> list[str]:
    return cell.metadata.get("tags", [])


def test_toc_lists_exactly_the_notebooks_in_book():
    in_toc = {p.resolve() for p in chapters(ROOT / "_toc.yml")}
    on_disk = {p.resolve() for p in NOTEBOOKS}
    assert on_disk - in_toc == set(), f"notebooks missing from _toc.yml: {sorted(p.name for p in on_disk - in_toc)}"
    assert in_toc <= on_disk


@pytest.fixture(params=NOTEBOOKS, ids=_ids(NOTEBOOKS))
def notebook(request):
    return request.param, nbformat.read(request.param, as_version=4)


def _is_scalar_assignment(stmt: ast.stmt) -> bool:
    """``name = <literal>`` or ``name = os.environ.get("VAR", <literal>)``: what papermill can override."""
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return True
    if not isinstance(stmt, (ast.Assign, ast.AnnAssign)) or stmt.value is None:
        return False
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
    if len(targets) != 1 or not isinstance(targets[0], ast.Name):
        return False
    value = stmt.value
    if isinstance(value, ast.Call) and ast.unparse(value.func) in ENV_READS:
        return not value.keywords and all(isinstance(a, ast.Constant) for a in value.args)
    try:
        result = ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError):
        return False
    return isinstance(result, (int, float, str, bool, type(None)))


def test_parameters_cell_comes_first_and_holds_scalars(notebook):
    path, nb = notebook
    code = [c for c in nb.cells if c.cell_type == "code" and "remove-cell" not in _tags(c)]
    assert code and "parameters" in _tags(code[0]), f"{path.name}: the first code cell must be tagged 'parameters'"
    assert sum("parameters" in _tags(c) for c in nb.cells) == 1, f"{path.name}: more than one 'parameters' cell"
    source = code[0].source
    bad = [ast.unparse(s) for s in ast.parse(source).body if not _is_scalar_assignment(s)]
    assert not bad, f"{path.name}: the parameters cell may only assign scalars, found: {bad}"
    assert re.search(r"^profile\s*=.*ZFKIT_PROFILE", source, re.M), \
        f"{path.name}: the parameters cell must set profile = os.environ.get('ZFKIT_PROFILE', 'book')"


def test_code_cells_are_short_and_the_verdict_cell_is_a_call(notebook):
    """Logic lives in zfkit (with its tests); a chapter's cells are short calls, its verdicts one call."""
    path, nb = notebook
    long = [len(c.source.splitlines()) for c in nb.cells if c.cell_type == "code" and len(c.source.splitlines()) > 20]
    assert not long, f"{path.name}: code cells of {long} lines; move the logic into zfkit (at most 20 lines a cell)"
    judging = [c.source for c in nb.cells if c.cell_type == "code" and "verdict_table(" in c.source]
    assert all("Verdict(" not in source and "verdicts.exceeds" not in source for source in judging), \
        f"{path.name}: a verdict row is built in the notebook; build it in zfkit.claims.<chapter>.claims"


def test_outputs_come_from_one_clean_book_run(notebook):
    path, nb = notebook
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    assert None not in counts, f"{path.name}: unexecuted code cells; run `python -m zfkit.notebooks run --only {path.stem}`"
    assert counts == sorted(set(counts)), f"{path.name}: cells were not executed top to bottom in one run: {counts}"
    assert sum(bool(c.outputs) for c in code) * 2 >= len(code), f"{path.name}: most code cells have no output"
    errors = [o.ename for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: committed with error outputs {errors}"
    assert nb.metadata.get("papermill", {}).get("parameters", {}).get("profile") == "book", \
        f"{path.name}: committed outputs must come from `make book` (the book profile)"


def test_ends_with_the_verdict(notebook):
    """The last section is "What reproduced / what did not", and it is not empty.

    Its table may be a markdown cell or a computed one (zfkit.results.verdict_table), so the
    verdicts always match the numbers of the run.
    """
    path, nb = notebook
    headings = [(i, line) for i, c in enumerate(nb.cells) if c.cell_type == "markdown"
                for line in c.source.splitlines() if line.startswith("#")]
    assert headings and "What reproduced" in headings[-1][1], \
        f"{path.name}: the last section must be headed 'What reproduced / what did not'"
    start = headings[-1][0]
    rest = nb.cells[start].source.split(headings[-1][1], 1)[1].strip() or any(
        c.source.strip() for c in nb.cells[start + 1:])
    assert rest, f"{path.name}: the 'What reproduced / what did not' section is empty"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_chapter_results_are_committed_as_json(path):
    assert re.fullmatch(r"\d\d_[a-z0-9_]+", path.stem), f"{path.name}: chapters are named book/NN_name.ipynb"
    results = ROOT / "book" / "results" / f"{path.stem}.json"
    assert results.is_file(), f"{results.relative_to(ROOT)} is missing: the chapter must save its key numbers"
    data = json.loads(results.read_text())
    assert isinstance(data, dict) and data, f"{results.relative_to(ROOT)} must hold a non-empty JSON object"


def _markdown_outputs(nb) -> list[str]:
    return [o.data["text/markdown"] for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if o.output_type in ("display_data", "execute_result") and "text/markdown" in o.get("data", {})]


def _rendered(records: list[dict], kind: str) -> str:
    from zfkit.results import VerdictTable

    return VerdictTable.from_records(records, kind)._repr_markdown_()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_results_come_from_the_book_profile(path):
    data = json.loads((ROOT / "book" / "results" / f"{path.stem}.json").read_text())
    assert data.get("profile") == "book", \
        f"book/results/{path.stem}.json holds profile {data.get('profile')!r} numbers; only `make book` may write it"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_verdict_tables_match_the_results(path):
    """The tables the book shows are the saved verdicts, row for row, with the same numbers and outcomes."""
    from zfkit.results import VerdictTable
    from zfkit.verdicts import NOT_TESTABLE

    data = json.loads((ROOT / "book" / "results" / f"{path.stem}.json").read_text())
    shown = _markdown_outputs(nbformat.read(path, as_version=4))
    assert data.get("verdicts") or data.get("checks"), \
        f"book/results/{path.stem}.json has neither verdicts nor checks; the closing cell must save them"
    for kind, key in (("claims", "verdicts"), ("checks", "checks")):
        records = data.get(key, [])
        by_holds = {"not testable" if outcome is NOT_TESTABLE else outcome: label
                    for outcome, label in VerdictTable.LABELS[kind].items()}  # holds as the JSON stores it
        assert all(r["verdict"] == by_holds[r["holds"]] for r in records)
        if records:
            assert _rendered(records, kind) in shown, \
                f"{path.name}: its {key} table differs from book/results/{path.stem}.json; re-run `make book`"
    headers = [t.splitlines()[0] for t in shown if t.startswith("| Paper's claim |") or t.startswith("| Our check |")]
    assert len(headers) == bool(data.get("verdicts")) + bool(data.get("checks")), \
        f"{path.name}: a verdict table is shown that is not saved"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_claims_state_noise_source_and_budget(path):
    """Every saved claim says who claims it and its noise; a threshold says whose it is and why; an
    inconclusive row says what budget would decide it, a not-testable one which precondition failed."""
    data = json.loads((ROOT / "book" / "results" / f"{path.stem}.json").read_text())
    for r in data.get("verdicts", []):
        assert r.get("source"), f"{path.stem}: {r['claim']!r} names no source"
        if r["verdict"] == "not testable":
            assert r.get("precondition"), f"{path.stem}: {r['claim']!r} is not testable without naming why"
            continue
        assert r.get("noise"), f"{path.stem}: {r['claim']!r} states no noise"
        if "threshold" in r:
            assert r["threshold"]["source"] in ("paper", "ours") and r["threshold"]["why"] and "flips_at" in r
        assert ("needed" in r) == (r["verdict"] == "inconclusive"), f"{path.stem}: {r['claim']!r} needed/inconclusive"
