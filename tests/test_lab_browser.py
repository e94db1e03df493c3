"""`make lab` as a reader meets it: JupyterLab in headless Chromium (playwright), chapters run, explorers moved.

JupyterLab serves copies of chapters 01, 03 and 06 made by :func:`zfkit.lab.sync_copies` in a temporary
folder under ``_build/``, with the ci profile and the model cache ``make nbval`` fills
(``_build/zoo-ci``; models missing there are trained, in seconds). Each chapter is opened, shows
its stored outputs marked as stored, is run with Run > Run All Cells and saved with File > Save; the
saved file must hold no error, no widget and no stale marker. Then every control of every
explorer is moved, and the explorer's figure must change: each redraw's time (control moved to new
image shown) is printed, never asserted. The browser may log no console error nor reach another host.
A screenshot of each chapter's last state goes to ``_build/screens/lab-<chapter>.png``.
"""

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest

from zfkit import lab
from zfkit.notebooks import WIDGET_VIEW

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SCREENS = ROOT / "_build" / "screens"  # where test_browser.py leaves its screenshots too
CHAPTERS = ("01_architecture", "03_deconvnet", "06_occlusion")
RUN_ALL_TIMEOUT_S = 150
REDRAW_TIMEOUT_S = 30
# A prompt reads [*] while its cell is queued or running; Run All marks every cell at once.
BUSY = "() => Array.from(document.querySelectorAll('.jp-InputArea-prompt')).some(p => p.textContent.includes('*'))"
# An explorer's controls: a row of dropdowns, sliders and number boxes (tqdm's bars are rows too).
CONTROLS = ".widget-hbox > :is(.widget-dropdown, .widget-slider, .widget-text)"
FIGURE = "cell => { const img = cell.querySelector('.jp-OutputArea-output img'); return img && img.src; }"


@dataclass
class Lab:
    url: str
    token: str
    folder: Path  # what the server serves: the chapters' copies

    def api(self, path: str, method: str = "GET") -> bytes:
        request = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()


def _wait_until_up(server: Lab, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"JupyterLab exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            server.api("status")
            return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"JupyterLab did not answer within 60 s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def jupyterlab():
    """`make lab`'s server (zfkit.lab's command and kernel environment) on a free port, with a token."""
    work = Path(tempfile.mkdtemp(prefix="lab-test-", dir=ROOT / "_build"))
    folder = work / "chapters"
    lab.sync_copies([ROOT / "book" / f"{c}.ipynb" for c in CHAPTERS], folder)
    settings = work / "settings"
    news = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')  # no "get notified about Jupyter news?" toast over the page
    env = {**os.environ, **lab.kernel_environment("ci", ROOT, folder), "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "JUPYTERLAB_WORKSPACES_DIR": str(work / "workspaces"), "JUPYTER_RUNTIME_DIR": str(work / "runtime")}
    port, token = lab.free_port(0), secrets.token_hex(16)
    server = Lab(f"http://127.0.0.1:{port}", token, folder)
    log = work / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(lab.lab_command(folder, port, token), env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_until_up(server, process, log)
        yield server
    finally:
        process.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(work, ignore_errors=True)


def _open(browser, server: Lab, chapter: str):
    """A page with ``chapter`` open and its kernel idle, and the list that collects what went wrong in it."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"exception: {e}"))

    def local_only(route):
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            problems.append(f"request to another host: {route.request.url}")
            route.abort()

    page.route("**/*", local_only)
    page.goto(f"{server.url}/lab/tree/{chapter}.ipynb?reset&token={server.token}")
    page.wait_for_function("() => document.querySelectorAll('.jp-Notebook .jp-Cell').length > 3", timeout=60_000)
    page.get_by_text("| Idle").wait_for(timeout=60_000)  # the status bar's kernel state
    return page, problems


def _run_all(page) -> float:
    """Run > Run All Cells, as a reader would; the seconds until no cell is queued or running."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    start = time.perf_counter()
    page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()
    page.wait_for_function(BUSY, timeout=10_000)
    page.wait_for_function(f"() => !({BUSY})()", timeout=RUN_ALL_TIMEOUT_S * 1000, polling=250)
    return time.perf_counter() - start


def _save(page, path: Path) -> nbformat.NotebookNode:
    """File > Save Notebook, then the notebook as JupyterLab wrote it (through zfkit.lab.pre_save)."""
    before = path.stat().st_mtime_ns
    page.locator(".lm-MenuBar-itemLabel", has_text="File").first.click()
    page.locator("li.lm-Menu-item[data-command='docmanager:save']").click()
    deadline = time.monotonic() + 20
    while path.stat().st_mtime_ns == before and time.monotonic() < deadline:
        page.wait_for_timeout(200)  # not time.sleep: the page's requests pass local_only, which runs in this thread
    assert path.stat().st_mtime_ns != before, "File > Save Notebook did not save the notebook"
    return nbformat.read(path, as_version=4)


def _move(control) -> str:
    """Change one ipywidgets control as a reader would; what it was changed to."""
    select = control.locator("select")
    if select.count():
        options = select.locator("option").all_inner_texts()
        current = options.index(select.input_value())
        choice = options[current + 1 if current + 1 < len(options) else current - 1]
        select.select_option(choice)
        return choice
    number = control.locator("input")
    if number.count():
        value = int(number.input_value()) + 1
        number.fill(str(value))
        number.press("Enter")
        return str(value)
    handle = control.locator(".noUi-handle")  # an IntSlider: the keyboard moves it one step
    at_max = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax")
    handle.focus()
    handle.press("ArrowLeft" if at_max else "ArrowRight")
    return control.locator(".widget-readout").inner_text()


def _redraw_times(page) -> list[tuple[str, str, float]]:
    """Move every control of every explorer in turn; (control, new value, seconds until its figure changed)."""
    times = []
    cells = page.locator(".jp-CodeCell").filter(has=page.locator(CONTROLS))
    assert cells.count() >= 1, "no explorer controls on the page"
    for i in range(cells.count()):
        cell = cells.nth(i)
        cell.scroll_into_view_if_needed()
        controls = cell.locator(CONTROLS)
        for j in range(controls.count()):
            control = controls.nth(j)
            label = control.locator(".widget-label").first.text_content()
            before = cell.evaluate(FIGURE)
            assert before, f"explorer {label!r}: no figure above the controls"
            start = time.perf_counter()
            value = _move(control)
            page.wait_for_function(f"([cell, before]) => ({FIGURE})(cell) !== before",
                                   arg=[cell.element_handle(), before], timeout=REDRAW_TIMEOUT_S * 1000, polling=50)
            times.append((label, value, time.perf_counter() - start))
    return times


def _shut_down_kernels(server: Lab) -> None:
    """Free the two cores for the next chapter."""
    for kernel in json.loads(server.api("kernels")):
        server.api(f"kernels/{kernel['id']}", method="DELETE")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_runs_in_jupyterlab_and_its_explorers_redraw(jupyterlab, browser, chapter, capsys):
    page, problems = _open(browser, jupyterlab, chapter)
    try:
        stored = page.locator(".jp-OutputArea-output", has_text=lab.MARKER.replace("`", ""))  # rendered Markdown
        assert stored.count() > 0, "the copy's stored outputs are not marked as stored"
        seconds = _run_all(page)
        saved = _save(page, jupyterlab.folder / f"{chapter}.ipynb")
        outputs = [o for c in saved.cells if c.cell_type == "code" for o in c.outputs]
        errors = [f"{o.ename}: {o.evalue}" for o in outputs if o.output_type == "error"]
        assert not errors, f"{chapter} failed in JupyterLab: {errors}"
        assert all(c.execution_count for c in saved.cells if c.cell_type == "code"), "Run All left cells unrun"
        assert not any(lab.MARKER in str(o.get("data", {})) for o in outputs), "a stored output survived Run All"
        assert "widgets" not in saved.metadata and not any(WIDGET_VIEW in o.get("data", {}) for o in outputs), \
            "JupyterLab saved widgets, which show 'model not found' when the notebook is reopened"
        times = _redraw_times(page)
        with capsys.disabled():
            print(f"\n{chapter}: Run All {seconds:.1f} s (ci profile); explorer redraws "
                  "(control moved to new figure shown):")
            for label, value, took in times:
                print(f"  {label} -> {value}: {took:.2f} s")
        assert not problems, "\n".join(problems)
    finally:
        SCREENS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENS / f"lab-{chapter}.png"))
        page.close()
        _shut_down_kernels(jupyterlab)
