"""Execute the book's chapters: ``python -m zfkit.notebooks run --profile book``.

The chapter list comes from ``_toc.yml``, so the runner and the rendered book never disagree on
which notebooks exist or in which order they run (later chapters may reuse models that earlier ones
trained). Each notebook runs with papermill in its own folder, as JupyterLab and nbval run it.

Only the ``book`` profile writes tracked files: it replaces each notebook by its executed copy
when every cell succeeded, and points the kernels' results at ``book/results`` (``$ZFKIT_RESULTS``).
Any other profile is a quick pass that writes its executed notebooks to ``_build/<profile>/`` and
its results to ``_build/<profile>/results``, leaving the committed book as it was; ``--out DIR``
does the same for the book profile (say, a rerun under another CPU's kernels), and
``python -m zfkit.notebooks compare book/results DIR/results`` lists the verdicts that moved. A failing run
leaves the committed notebook untouched and keeps the executed copy, traceback included, under
``_build/executed/``.

The kernels run headless (``$ZFKIT_HEADLESS``): explorers store their figure and a one-line note,
not controls, and the zoo trains without announcing it in the notebook. An executed notebook keeps no widgets (:func:`strip_widgets`), since a stored widget
needs the kernel that made it: JupyterLab would show "Error displaying widget: model not found".
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from .profiles import HEADLESS_ENV

__all__ = ["pages", "chapters", "run_notebook", "strip_widgets", "main"]

SOURCE_SUFFIXES = (".ipynb", ".md", ".rst")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _toc_files(entry: dict) -> Iterator[str]:
    """The ``root``/``file`` values of a jb-book toc entry and its parts, chapters and sections, in order."""
    for key in ("root", "file"):
        if key in entry:
            yield str(entry[key])
    for key in ("parts", "chapters", "sections"):
        for child in entry.get(key, []):
            yield from _toc_files(child)


def _source(toc_path: Path, name: str) -> Path:
    """The source file a toc entry names (entries may omit the suffix)."""
    root = toc_path.parent
    if Path(name).suffix in SOURCE_SUFFIXES and (root / name).is_file():
        return root / name
    for suffix in SOURCE_SUFFIXES:
        if (root / f"{name}{suffix}").is_file():
            return root / f"{name}{suffix}"
    raise FileNotFoundError(f"{toc_path} lists {name!r}, but no {name}.ipynb/.md/.rst exists under {root}")


def pages(toc_path: str | Path = "_toc.yml") -> list[Path]:
    """Every page's source file listed in the Jupyter Book toc, in reading order, as paths next to the toc.

    Raises FileNotFoundError for a toc entry that has no source file, so a missing chapter fails
    here rather than as a Sphinx warning later.
    """
    toc_path = Path(toc_path)
    if not toc_path.is_file():
        raise FileNotFoundError(f"no table of contents at {toc_path}; run from the repository root or pass --toc")
    toc = yaml.safe_load(toc_path.read_text(encoding="utf8"))
    return [_source(toc_path, name) for name in _toc_files(toc)]


def chapters(toc_path: str | Path = "_toc.yml") -> list[Path]:
    """The notebooks among :func:`pages`: the chapters that ``make book`` executes, in order."""
    return [path for path in pages(toc_path) if path.suffix == ".ipynb"]


def strip_widgets(nb: dict) -> None:
    """Remove the widget state (``metadata.widgets``) and every widget output from notebook ``nb``, in place.

    Their models live in the kernel that made them, so once it is gone they can only show an error
    (explorers, and tqdm's bars); what matters stays: figures, text and the explorers' notes. Works
    on plain dicts, as JupyterLab's save hook passes them.
    """
    nb.get("metadata", {}).pop("widgets", None)
    for cell in nb.get("cells", []):
        if "outputs" in cell:
            cell["outputs"] = [o for o in cell["outputs"] if WIDGET_VIEW not in o.get("data", {})]


def _tidy(path: Path) -> None:
    """Drop papermill's ``injected-parameters`` cell and its per-cell timing metadata.

    Left in place, the injected cell would pin the profile for every later run: nbval
    (``ZFKIT_PROFILE=ci``) and a reader in JupyterLab would silently re-run the ``book`` profile.
    Papermill's timestamps would make every re-run a diff of every cell. The parameters stay
    recorded in ``metadata.papermill.parameters``. Widgets go too (:func:`strip_widgets`).
    """
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    for cell in nb.cells:
        for key in ("papermill", "execution"):
            cell.metadata.pop(key, None)
    nb.metadata["papermill"] = {"parameters": nb.metadata["papermill"]["parameters"]}
    strip_widgets(nb)
    nbformat.write(nb, path)


def run_notebook(path: Path, profile: str, scratch: Path, destination: Path | None = None) -> Path:
    """Execute ``path`` with ``profile``; move the executed copy to ``destination`` (default: over ``path``)
    when no cell failed, and return where it went.

    The kernel is Jupyter's ``python3``, which jupyter_client starts with the interpreter running
    this function (``sys.executable``), so the notebook sees the same installed zfkit.
    """
    import papermill

    scratch.mkdir(parents=True, exist_ok=True)
    executed = scratch / path.name
    papermill.execute_notebook(
        str(path), str(executed), parameters={"profile": profile}, kernel_name="python3", language="python",
        cwd=str(path.parent), progress_bar=False,
    )
    _tidy(executed)
    destination = destination or path
    destination.parent.mkdir(parents=True, exist_ok=True)
    executed.replace(destination)
    return destination


def _select(notebooks: list[Path], only: str | None) -> list[Path]:
    if only is None:
        return notebooks
    chosen = [nb for nb in notebooks if only in (nb.stem, nb.name, str(nb))]
    if not chosen:
        raise ValueError(f"no chapter {only!r}; chapters are: {', '.join(nb.stem for nb in notebooks)}")
    return chosen


def _run(args: argparse.Namespace) -> int:
    from . import profiles
    from .results import RESULTS_ENV

    profiles.get(args.profile)  # an unknown profile fails before any kernel starts
    toc = Path(args.toc)
    root = toc.parent.resolve()
    scratch = root / "_build" / "executed"
    in_place = args.profile == "book" and args.out is None
    outputs = Path(args.out).resolve() if args.out else root / "_build" / args.profile
    with _environment(RESULTS_ENV, str(root / "book" / "results" if in_place else outputs / "results")), \
            _environment(HEADLESS_ENV, "1"):
        status = _run_chapters(_select(chapters(toc), args.only), args.profile, scratch,
                               None if in_place else outputs, toc.parent)
    if status == 0 and in_place and (root / "README.md").is_file():
        from .glance import rows, update_readme

        if update_readme(root / "README.md", rows(root / "book" / "results", chapters(toc))):
            print("README.md: verdict counts updated from book/results", flush=True)
    return status


def _compare(args: argparse.Namespace) -> int:
    from .results import verdict_changes

    changes = verdict_changes(args.before, args.after)
    for chapter, claim, before, after in changes:
        print(f"{chapter}: {claim}: {before} -> {after}")
    print(f"{len(changes)} verdict(s) differ between {args.before} and {args.after}")
    return 1 if changes else 0


@contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """``$name`` set to ``value`` while the kernels start (they inherit it), restored afterwards."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _run_chapters(notebooks: list[Path], profile: str, scratch: Path, outputs: Path | None, top: Path) -> int:
    """Run each notebook in turn (in place, or copied under ``outputs``); stop at the first failure."""
    from papermill.exceptions import PapermillExecutionError

    for nb in notebooks:
        print(f"running {nb} (profile {profile})", flush=True)
        start = time.perf_counter()
        try:
            done = run_notebook(nb, profile, scratch, None if outputs is None else outputs / nb.relative_to(top))
        except PapermillExecutionError as e:
            why = f"cell {e.exec_count} raised {e.ename}: {e.evalue}"
        except Exception as e:  # noqa: BLE001 - a dead kernel (out of memory) or a timeout must name the chapter too
            why = f"{type(e).__name__}: {e}"
        else:
            print(f"{nb}: done in {time.perf_counter() - start:.1f} s -> {done}", flush=True)
            continue
        print(f"zfkit: {nb} failed after {time.perf_counter() - start:.1f} s: {why}\n"
              f"  {nb} is unchanged; the executed copy (traceback included) is {scratch / nb.name}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m zfkit.notebooks", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="execute the chapters in place, in _toc.yml order")
    p.add_argument("--profile", default="book", help="ci, book or paper (default: book)")
    p.add_argument("--only", default=None, metavar="NAME", help="run one chapter, e.g. 01_architecture")
    p.add_argument("--toc", default="_toc.yml", help="the Jupyter Book table of contents (default: _toc.yml)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write executed notebooks to DIR/book and results to DIR/results instead of in place "
                        "(default: in place for the book profile, _build/PROFILE otherwise)")
    p.set_defaults(run=_run)
    p = sub.add_parser("compare", help="list the verdicts that differ between two results folders (exit 1 if any)")
    p.add_argument("before", help="a results folder, e.g. book/results")
    p.add_argument("after", help="another, e.g. _build/other-cpu/results")
    p.set_defaults(run=_compare)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (FileNotFoundError, ValueError) as e:
        print(f"zfkit: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
