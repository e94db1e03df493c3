"""JupyterLab on the book: ``make lab`` (``python -m zfkit.lab [--profile ci|book] [--fresh]``).

JupyterLab writes a notebook's live outputs into the file it saves, and the committed chapters hold
what ``make book`` computed, so the reader works on copies in ``_build/lab/`` (ignored by git). A
chapter is copied when its copy is missing, or when ``book/`` changed since the copy was made (an
edited copy moves to ``_build/lab/backup/`` first); otherwise the copy, edits and all, is kept.
``--fresh`` (``make lab FRESH=1``) copies every chapter again.

Two things make a copy safe to run and to save:

- Each code cell's stored outputs start with a one-line marker, "stored output from `make book`".
  Running the cell replaces them, so when a cell fails, the stale outputs below it still say that
  they are stored, not results of this session.
- Saving drops widgets (:func:`pre_save`): a widget's model lives in its kernel, so a saved one can
  only show "Error displaying widget: model not found" when the notebook is reopened.

The profile is ``--profile``, else the one whose ZFNet-mini is already trained, since a chapter
otherwise trains it first (minutes for ``book``): ``book`` in ``zoo.cache_dir()``, else ``ci`` in
``_build/zoo-ci`` as ``make test`` leaves it. The kernels get ``ZFKIT_PROFILE``, that cache as
``ZFKIT_CACHE`` and ``ZFKIT_RESULTS=_build/lab/results``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import socket
import sys
import time
from pathlib import Path

import nbformat

from . import zoo
from .notebooks import chapters, strip_widgets
from .profiles import HEADLESS_ENV
from .results import RESULTS_ENV

__all__ = ["choose_profile", "profile_cache", "kernel_environment", "mark_stored_outputs", "sync_copies", "pre_save",
           "lab_command", "free_port", "main", "MARKER"]

PROFILES = ("ci", "book")
MAIN_MODEL = "zfnet-mini"  # what the chapters with explorers load first
MANIFEST = ".copies.json"  # per chapter: hashes of the committed notebook and of the copy made from it
MARKER = "stored output from `make book`"


def profile_cache(profile: str, root: Path) -> Path:
    """The zoo cache a profile's kernels use: ``make test``'s for ci (so nothing is retrained), the user's for book."""
    return root / "_build" / "zoo-ci" if profile == "ci" else zoo.cache_dir()


def _trained(profile: str, root: Path) -> Path | None:
    """Where the profile's ZFNet-mini lies when it is trained, else None."""
    folder = profile_cache(profile, root) / profile / MAIN_MODEL
    return folder if (folder / zoo.RECORD).is_file() else None


def choose_profile(requested: str | None, root: Path) -> tuple[str, str]:
    """The profile for the kernels and why it was chosen (one clause, for the terminal)."""
    if requested is not None:
        if requested not in PROFILES:
            raise ValueError(f"make lab runs profile ci or book, not {requested!r}")
        return requested, f"asked for (PROFILE={requested})"
    book, ci = _trained("book", root), _trained("ci", root)
    if book:
        return "book", f"its models are trained, in {book.parent} (PROFILE=ci for the quick one)"
    book_cache = profile_cache("book", root) / "book"
    if ci:
        return "ci", (f"its models are trained, in {ci.parent} (by `make test`), the book's are not, in {book_cache}; "
                      "with PROFILE=book a chapter's first run trains those, saying how long that takes")
    return "book", ("the default; no models are trained yet, so a chapter's first run trains them, saying how long "
                    "that takes (PROFILE=ci: seconds)")


def kernel_environment(profile: str, root: Path, lab_dir: Path) -> dict[str, str]:
    """What the kernels need beyond the user's environment: the profile, its cache, and results under ``_build``."""
    return {"ZFKIT_PROFILE": profile, "ZFKIT_CACHE": str(profile_cache(profile, root)),
            RESULTS_ENV: str(lab_dir / "results")}


def mark_stored_outputs(nb: nbformat.NotebookNode) -> None:
    """Put a one-line marker before each code cell's stored outputs (running the cell replaces both)."""
    profile = nb.metadata.get("papermill", {}).get("parameters", {}).get("profile", "book")
    text = f"{MARKER} (profile {profile}): run this cell to replace it"
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.outputs:
            marker = nbformat.v4.new_output("display_data", data={"text/markdown": f"*{text}*", "text/plain": text},
                                            metadata={"zfkit": "stored"})
            cell.outputs.insert(0, marker)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_copy(source: Path, copy: Path) -> str:
    """Copy chapter ``source`` to ``copy`` without widgets and with its stored outputs marked; the copy's hash."""
    nb = nbformat.read(source, as_version=4)
    strip_widgets(nb)
    mark_stored_outputs(nb)
    nbformat.write(nb, copy)
    return _sha(copy)


def _back_up(copy: Path, made: str | None) -> Path | None:
    """Move ``copy`` into ``backup/`` when the reader changed it since it was ``made`` (its hash then)."""
    if not copy.is_file() or _sha(copy) == made:
        return None
    backup = copy.parent / "backup" / f"{copy.stem}-{time.strftime('%Y%m%d-%H%M%S')}{copy.suffix}"
    backup.parent.mkdir(exist_ok=True)
    copy.replace(backup)
    return backup


def sync_copies(notebooks: list[Path], lab_dir: Path, fresh: bool = False) -> list[str]:
    """Make or refresh the copies of ``notebooks`` in ``lab_dir``; one line for each copy made or edited."""
    lab_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = lab_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    lines = []
    for source in notebooks:
        copy, made = lab_dir / source.name, manifest.get(source.name, {})
        current = _sha(source)
        if copy.is_file() and not fresh and made.get("source") == current:
            if _sha(copy) != made.get("copy"):
                lines.append(f"{copy.name}: your edited copy (make lab FRESH=1 copies book/ again)")
            continue
        why = "copied again (FRESH=1)" if fresh and copy.is_file() else (
            "book/ changed since the copy was made: copied again" if copy.is_file() else "copied from book/")
        backup = _back_up(copy, made.get("copy"))
        manifest[source.name] = {"source": current, "copy": _write_copy(source, copy)}
        lines.append(f"{copy.name}: {why}" + (f"; your edited copy is {backup.relative_to(lab_dir)}" if backup else ""))
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return lines


def pre_save(model: dict, **kwargs) -> None:
    """JupyterLab's save hook (``ContentsManager.pre_save_hook``): save notebooks without widgets."""
    if model.get("type") == "notebook" and isinstance(model.get("content"), dict):
        strip_widgets(model["content"])


def free_port(preferred: int) -> int:
    """``preferred`` when nothing listens on it at 127.0.0.1, else a free port the system picks."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError("no free port on 127.0.0.1")


def lab_command(lab_dir: Path, port: int, token: str) -> list[str]:
    """JupyterLab serving ``lab_dir`` headless on 127.0.0.1 (as root too), offline, saving through :func:`pre_save`."""
    return [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
            "--ServerApp.port_retries=0", f"--ServerApp.root_dir={lab_dir}", f"--IdentityProvider.token={token}",
            "--ContentsManager.pre_save_hook=zfkit.lab.pre_save", "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            *(["--allow-root"] if os.geteuid() == 0 else [])]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: copy the chapters, say what was chosen, then become the JupyterLab server."""
    parser = argparse.ArgumentParser(prog="python -m zfkit.lab", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=PROFILES, default=None,
                        help="default: book if its models are trained, else ci if `make test` trained its models")
    parser.add_argument("--fresh", action="store_true",
                        help="copy every chapter from book/ again (edited copies are backed up)")
    parser.add_argument("--port", type=int, default=8888, help="default 8888, or a free port if it is taken")
    parser.add_argument("--toc", default="_toc.yml", help="the Jupyter Book table of contents (default: _toc.yml)")
    args = parser.parse_args(argv)
    root = Path(args.toc).resolve().parent
    lab_dir = root / "_build" / "lab"
    profile, why = choose_profile(args.profile, root)
    print(f"zfkit: profile {profile}: {why}.")
    try:
        notebooks = chapters(args.toc)
    except FileNotFoundError as e:
        print(f"zfkit: {e}", file=sys.stderr)
        return 2
    print(f"zfkit: JupyterLab opens copies of the chapters, in {lab_dir}: saving there leaves book/ alone "
          "(make lab FRESH=1 copies book/ again)")
    for line in sync_copies(notebooks, lab_dir, args.fresh):
        print(f"  {line}")
    env = {**os.environ, **kernel_environment(profile, root, lab_dir)}
    env.pop(HEADLESS_ENV, None)  # these kernels are shown: explorers get their controls
    port, token = free_port(args.port), secrets.token_hex(24)
    print(f"zfkit: open http://127.0.0.1:{port}/lab?token={token}  (Ctrl-C stops it)", flush=True)
    command = lab_command(lab_dir, port, token)
    os.execve(command[0], command, env)


if __name__ == "__main__":
    sys.exit(main())
