"""The built HTML book in a real browser (headless Debian Chromium driven by playwright).

Every page of ``_toc.yml`` is served from ``_build/html`` on 127.0.0.1 and opened offline, as a
reader without internet would see it: the title is the page's heading, nothing is fetched from
another host, the console shows no error, every image loaded, the API page lists zfkit's models and
notebook chapters offer their launch buttons. A full-page screenshot of each page goes to
``_build/screens/`` for a human to look at. Needs ``make html`` first (``make browser`` does both).
"""

import functools
import http.server
import json
import re
import threading
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest

from zfkit.notebooks import pages

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SCREENS = ROOT / "_build" / "screens"
PAGES = pages(ROOT / "_toc.yml")
API = [p for p in PAGES if p.stem == "api"]
CHAPTERS = [p for p in PAGES if p.suffix == ".ipynb"]
# Resolve once every <img> has loaded or failed; lazy images are made eager so all are fetched.
WAIT_FOR_IMAGES = """() => Promise.all(Array.from(document.images, img => {
    img.loading = "eager";
    return img.complete ? null : new Promise(done => { img.onload = img.onerror = done; });
}))"""
BROKEN_IMAGES = "() => Array.from(document.images).filter(i => !(i.naturalWidth > 0)).map(i => i.src)"


def _heading(source: Path) -> str:
    """The page's first level-1 heading as plain text (what Sphinx puts in <title>)."""
    if source.suffix == ".ipynb":
        text = "\n".join(c.source for c in nbformat.read(source, as_version=4).cells if c.cell_type == "markdown")
    else:
        text = source.read_text(encoding="utf8")
    match = re.search(r"^# (.+)$", text, re.M)
    assert match, f"{source.name} has no '# ' heading"
    return re.sub(r"[`*_]", "", match.group(1)).strip()


@pytest.fixture(scope="session")
def site() -> str:
    """Base URL of _build/html served by a local HTTP server in a background thread."""
    if not (HTML / "index.html").is_file():
        pytest.fail(f"{HTML} has no built book; run `make html` (or `make book`) first")
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)  # port 0: any free port
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output readable
        pass


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


@pytest.fixture(scope="module")
def opened(request, site, browser):
    """A page of the book (``request.param``: its source) after load, with what went wrong while loading.

    Module scope: each page is opened and screenshotted once, whichever tests look at it.
    """
    source: Path = request.param
    url = f"{site}/{source.relative_to(ROOT).with_suffix('.html').as_posix()}"
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems = {"console": [], "exceptions": [], "external": [], "failed": []}
    page.on("console", lambda m: m.type == "error" and problems["console"].append(f"{m.text} ({m.location})"))
    page.on("pageerror", lambda e: problems["exceptions"].append(str(e)))
    page.on("requestfailed", lambda r: problems["failed"].append(f"{r.url}: {r.failure}"))

    def local_only(route):
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:  # offline readers have no internet: a request elsewhere is a bug to fix in the config
            problems["external"].append(route.request.url)
            route.abort()

    page.route("**/*", local_only)
    response = page.goto(url, wait_until="load")
    assert response is not None and response.ok, f"{url}: HTTP {response and response.status}"
    page.evaluate(WAIT_FOR_IMAGES)
    page.wait_for_load_state("networkidle")
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / f"{source.stem}.png"), full_page=True)
    yield source, page, problems
    page.close()


SMART_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2026": "..."})


@pytest.mark.parametrize("opened", PAGES, ids=_ids(PAGES), indirect=True)
def test_page_loads_cleanly(opened):
    source, page, problems = opened
    title = page.title().translate(SMART_QUOTES)  # Sphinx typesets ' and " as curly quotes
    assert title.startswith(_heading(source)), f"title {page.title()!r} does not start with the page heading"
    assert not problems["external"], f"requests to other hosts: {problems['external']}"
    assert not problems["failed"], f"failed requests: {problems['failed']}"
    assert not problems["exceptions"], f"JavaScript exceptions: {problems['exceptions']}"
    assert not problems["console"], f"console errors: {json.dumps(problems['console'], indent=1)}"
    assert page.evaluate(BROKEN_IMAGES) == [], "images that did not load"


@pytest.mark.parametrize("opened", API, ids=_ids(API), indirect=True)
def test_api_page_documents_the_models(opened):
    _, page, _ = opened
    text = page.inner_text("main")
    for name in ("zfkit.models.zfnet", "zfkit.models.describe", "zfkit.data.fashion_mnist", "zfkit.profiles.get"):
        assert name in text, f"the API page does not document {name}"
    # docutils reads "96@7x7" in a docstring as an e-mail address; such specs belong in ``code``
    mailto = page.eval_on_selector_all("main a[href^='mailto:']", "links => links.map(a => a.textContent)")
    assert mailto == [], f"docstring text rendered as e-mail links: {mailto}"


@pytest.mark.parametrize("opened", CHAPTERS, ids=_ids(CHAPTERS), indirect=True)
def test_chapters_offer_no_launch_repository_or_issue_buttons(opened):
    """The book has no public repository or hub to send readers to, so no button may pretend it does."""
    _, page, _ = opened
    for selector in (".dropdown-launch-buttons", ".dropdown-source-buttons", "a[href*='/issues']"):
        assert page.locator(selector).count() == 0, f"{selector} shown"


INTRO = [p for p in PAGES if p.stem == "intro"]


@pytest.mark.parametrize("opened", INTRO, ids=_ids(INTRO), indirect=True)
def test_intro_shows_every_saved_claim_with_a_working_chapter_link(opened):
    """The at-a-glance table is the results JSON, row for row, and each row links to its chapter."""
    from zfkit.glance import counts_sentence, rows

    _, page, _ = opened
    found = rows(ROOT / "book" / "results", CHAPTERS)
    table = page.locator("main table", has_text="Verdict").filter(has_text="Source").first
    cells = table.locator("tbody tr").evaluate_all("rows => rows.map(r => Array.from(r.cells, c => c.innerText.trim()))")
    shown = [(c[1].translate(SMART_QUOTES), c[3]) for c in cells]  # Sphinx typesets quotes and ... as typography
    assert shown == [(r.claim, r.verdict) for r in found]
    links = table.locator("tbody tr td:first-child a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert len(links) == len(found) and all(href.split("#")[0].endswith(f"{r.chapter}.html") for href, r in zip(links, found))
    assert counts_sentence(found) in page.inner_text("main").replace("\n", " ")
