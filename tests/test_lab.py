"""`make lab` (zfkit.lab): profile choice, the chapters' copies, the save hook, the server command; and what
a reader meets in JupyterLab: no widget state in committed notebooks, a sentence before a model trains.
The server itself, in a browser, is tested by test_lab_browser.py."""

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

from zfkit import lab, profiles, zoo
from zfkit.notebooks import WIDGET_VIEW, strip_widgets
from zfkit.profiles import HEADLESS_ENV

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def root(tmp_path, monkeypatch):
    """A repository with an empty user cache (the book profile's)."""
    monkeypatch.setenv("ZFKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _trained(cache: Path, profile: str) -> None:
    folder = cache / profile / "zfnet-mini"
    folder.mkdir(parents=True)
    (folder / zoo.RECORD).write_text("{}")


def test_profile_defaults_to_book_when_nothing_is_trained(root):
    profile, why = lab.choose_profile(None, root)
    assert profile == "book" and "no models are trained yet" in why and "PROFILE=ci" in why


def test_profile_is_ci_when_only_make_test_trained_its_models(root):
    _trained(root / "_build" / "zoo-ci", "ci")
    profile, why = lab.choose_profile(None, root)
    assert profile == "ci" and str(root / "_build" / "zoo-ci" / "ci") in why and "make test" in why


def test_profile_is_book_when_its_models_are_trained(root):
    _trained(root / "_build" / "zoo-ci", "ci")
    _trained(root / "cache", "book")
    assert lab.choose_profile(None, root) == ("book", f"its models are trained, in {root / 'cache' / 'book'} "
                                                      "(PROFILE=ci for the quick one)")


def test_an_asked_for_profile_wins(root):
    _trained(root / "cache", "book")
    assert lab.choose_profile("ci", root) == ("ci", "asked for (PROFILE=ci)")
    with pytest.raises(ValueError, match="ci or book"):
        lab.choose_profile("paper", root)


def test_kernels_use_make_tests_cache_for_ci_and_write_results_under_build(root):
    env = lab.kernel_environment("ci", root, root / "_build" / "lab")
    assert env == {"ZFKIT_PROFILE": "ci", "ZFKIT_CACHE": str(root / "_build" / "zoo-ci"),
                   "ZFKIT_RESULTS": str(root / "_build" / "lab" / "results")}
    assert lab.kernel_environment("book", root, root / "x")["ZFKIT_CACHE"] == str(root / "cache")


def _chapter(path: Path, widgets: bool = True) -> Path:
    """A small executed chapter: a figure with a stored widget under it, a cell without output."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("profile = 'book'"),
                                         nbformat.v4.new_code_cell("explorer", outputs=[
                                             nbformat.v4.new_output("display_data", data={"image/png": "iVBO"}),
                                             nbformat.v4.new_output("display_data", data={
                                                 WIDGET_VIEW: {"model_id": "f00"}, "text/plain": "HBox()"})]),
                                         nbformat.v4.new_markdown_cell("# text")])
    nb.metadata["papermill"] = {"parameters": {"profile": "book"}}
    if widgets:
        nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"f00": {}}}}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def test_strip_widgets_leaves_figures_and_text(tmp_path):
    nb = json.loads(_chapter(tmp_path / "c.ipynb").read_text())
    strip_widgets(nb)
    assert "widgets" not in nb["metadata"]
    assert [list(o["data"]) for o in nb["cells"][1]["outputs"]] == [["image/png"]]


def test_a_copy_marks_every_stored_output_and_keeps_no_widget(tmp_path):
    source = _chapter(tmp_path / "book" / "01_ch.ipynb")
    lines = lab.sync_copies([source], tmp_path / "lab")
    assert lines == ["01_ch.ipynb: copied from book/"]
    copy = nbformat.read(tmp_path / "lab" / "01_ch.ipynb", as_version=4)
    nbformat.validate(copy)
    assert "widgets" not in copy.metadata and copy.cells[0].outputs == []
    marker, figure = copy.cells[1].outputs
    assert marker.data["text/plain"] == "stored output from `make book` (profile book): run this cell to replace it"
    assert figure.data == {"image/png": "iVBO"}
    assert nbformat.read(source, as_version=4).metadata.widgets, "the committed notebook is never changed"


def test_copies_keep_the_readers_edits_until_book_changes(tmp_path):
    source, folder = _chapter(tmp_path / "book" / "01_ch.ipynb"), tmp_path / "lab"
    lab.sync_copies([source], folder)
    assert lab.sync_copies([source], folder) == [], "an untouched copy is left as it is, silently"
    copy = folder / "01_ch.ipynb"
    copy.write_text(copy.read_text().replace("profile = 'book'", "profile = 'ci'"))
    assert lab.sync_copies([source], folder) == ["01_ch.ipynb: your edited copy (make lab FRESH=1 copies book/ again)"]
    assert "profile = 'ci'" in copy.read_text()
    _chapter(source, widgets=False)  # make book rewrote the chapter
    (line,) = lab.sync_copies([source], folder)
    assert line.startswith("01_ch.ipynb: book/ changed since the copy was made: copied again; "
                           "your edited copy is backup/")
    (backup,) = (folder / "backup").iterdir()
    assert "profile = 'ci'" in backup.read_text() and "profile = 'ci'" not in copy.read_text()


def test_fresh_copies_again(tmp_path):
    source, folder = _chapter(tmp_path / "book" / "01_ch.ipynb"), tmp_path / "lab"
    lab.sync_copies([source], folder)
    assert lab.sync_copies([source], folder, fresh=True) == ["01_ch.ipynb: copied again (FRESH=1)"]
    assert not (folder / "backup").exists(), "an unedited copy needs no backup"


def test_saving_in_jupyterlab_drops_widgets(tmp_path):
    model = {"type": "notebook", "content": json.loads(_chapter(tmp_path / "c.ipynb").read_text())}
    lab.pre_save(model=model, path="c.ipynb", contents_manager=None)
    assert "widgets" not in model["content"]["metadata"]
    assert not any(WIDGET_VIEW in o.get("data", {}) for c in model["content"]["cells"] for o in c.get("outputs", []))
    text = {"type": "file", "content": "widgets"}
    lab.pre_save(model=text, path="notes.txt", contents_manager=None)
    assert text == {"type": "file", "content": "widgets"}


@pytest.mark.parametrize("euid, as_root", [(0, True), (1000, False)])
def test_the_server_command(tmp_path, monkeypatch, euid, as_root):
    monkeypatch.setattr(lab.os, "geteuid", lambda: euid)
    command = lab.lab_command(tmp_path, 8899, "t0k")
    for arg in ("--no-browser", "--ip=127.0.0.1", "--port=8899", f"--ServerApp.root_dir={tmp_path}",
                "--IdentityProvider.token=t0k", "--ContentsManager.pre_save_hook=zfkit.lab.pre_save",
                "--LabApp.news_url=None"):
        assert arg in command
    assert ("--allow-root" in command) == as_root


def test_free_port_takes_the_preferred_one_unless_taken():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        taken = s.getsockname()[1]
        s.listen()
        other = lab.free_port(taken)
        assert other != taken and lab.free_port(other) == other


def test_main_copies_the_chapters_then_becomes_jupyterlab(tmp_path, monkeypatch, capsys):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "intro.md").write_text("# intro\n")
    _chapter(tmp_path / "book" / "01_ch.ipynb")
    toc = tmp_path / "_toc.yml"
    toc.write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/01_ch\n")
    monkeypatch.setenv(HEADLESS_ENV, "1")
    started = {}
    monkeypatch.setattr(lab.os, "execve", lambda path, argv, env: started.update(argv=argv, env=env))
    lab.main(["--profile", "ci", "--toc", str(toc), "--port", "0"])
    out = capsys.readouterr().out
    assert "profile ci: asked for (PROFILE=ci)" in out and "01_ch.ipynb: copied from book/" in out
    url = next(w for w in out.split() if w.startswith("http://127.0.0.1:"))
    assert f"--port={url.split(':')[2].split('/')[0]}" in started["argv"]
    assert url.endswith(next(a for a in started["argv"] if a.startswith("--IdentityProvider.token=")).split("=")[1])
    env = started["env"]
    assert env["ZFKIT_PROFILE"] == "ci" and env["ZFKIT_CACHE"] == str(tmp_path / "_build" / "zoo-ci")
    assert HEADLESS_ENV not in env, "explorers in JupyterLab must show their controls"
    assert (tmp_path / "_build" / "lab" / "01_ch.ipynb").is_file()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("args, expected", [([], "-m zfkit.lab  \n"),
                                            (["PROFILE=ci", "FRESH=1"], "-m zfkit.lab --profile ci --fresh\n")])
def test_make_lab_only_calls_zfkit_lab(args, expected):
    outer = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PROFILE", "FRESH")  # set when `make test` runs this test
    env = {k: v for k, v in os.environ.items() if k not in outer}
    out = subprocess.run(["make", "-n", "lab", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.endswith(expected)


@pytest.mark.parametrize("path", sorted((ROOT / "book").glob("*.ipynb")), ids=lambda p: p.stem)
def test_committed_chapters_carry_no_widget_state(path):
    """Stored widget state outlives its kernel: reopened, the notebook shows 'Error displaying widget'."""
    assert "widgets" not in json.loads(path.read_text())["metadata"]


# ------------------------------------------------------------ the sentence before a model trains

def _run(profile: str, images: int, epochs: int):
    """What zoo.training_notice reads of a zoo.Prepared."""
    return SimpleNamespace(name="zfnet-mini", profile=profiles.get(profile), train=range(images),
                           recipe=SimpleNamespace(epochs=epochs))


def test_training_time_is_the_profiles_measured_cost_scaled_to_the_run_and_threads():
    book = _run("book", 55_000, 16)
    assert zoo.training_seconds(book, threads=2) == pytest.approx(1.41 * 55 * 16 / 2)  # the measured 10.3 min
    assert zoo.training_seconds(book, threads=4) == pytest.approx(zoo.training_seconds(book, threads=2) / 2)
    assert zoo.training_seconds(_run("paper", 1_000_000, 70)) is None


def test_the_notice_says_what_trains_how_long_and_where_it_is_kept(tmp_path):
    notice = zoo.training_notice(_run("book", 55_000, 16), tmp_path / "zfnet-mini", threads=2)
    assert notice == (f"Training zfnet-mini (profile book) first: about 10 min on this machine's 2 threads "
                      f"(scaled from {profiles.TRAIN_COST_CPU}); cached for next time in {tmp_path / 'zfnet-mini'}.")
    assert "about 2 s on this machine's 1 thread " in zoo.training_notice(_run("ci", 2000, 2), tmp_path, threads=1)


@pytest.mark.parametrize("headless", [False, True])
def test_load_announces_training_before_the_progress_bar(monkeypatch, tmp_path, capsys, headless):
    monkeypatch.setenv("ZFKIT_CACHE", str(tmp_path))
    if headless:  # the book's runner: the line would be stored in the notebook
        monkeypatch.setenv(HEADLESS_ENV, "1")
    monkeypatch.setattr(zoo, "prepare", lambda name, profile, seed: _run("ci", 2000, 2))

    class Stop(Exception):
        """Training itself is not needed: what was printed before it started is known."""

    def train(folder, run, progress):
        seen["before training"] = capsys.readouterr().out
        raise Stop

    seen = {}
    monkeypatch.setattr(zoo, "_train_into", train)
    with pytest.raises(Stop):
        zoo.load("zfnet-mini", "ci")
    if headless:
        assert seen["before training"] == ""
    else:
        assert seen["before training"].startswith("Training zfnet-mini (profile ci) first: about ")
        assert f"cached for next time in {tmp_path / 'ci' / 'zfnet-mini'}." in seen["before training"]
