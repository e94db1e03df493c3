"""Every link in the tracked files leads somewhere real: its host is one this project knows to exist.

A new host is added to ``KNOWN_HOSTS`` on purpose, after checking it; an invented repository or
hub URL (or a ``pip install git+...`` line pointing at one) fails here instead of in a reader's browser.
"""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KNOWN_HOSTS = {
    "papermill.readthedocs.io",  # intro: the notebook runner's documentation
    "www.w3.org",  # the SVG namespace of book/favicon.svg
    "127.0.0.1",  # the browser test's local server
}
URL = re.compile(r"\b[a-z][a-z0-9+.-]*://([^/\s\"'`<>)\]]+)")


def _tracked_text_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    suffixes = {".py", ".md", ".yml", ".yaml", ".toml", ".ipynb", ".cfg", ".txt", ".bib", ".svg", ""}
    return [ROOT / f for f in out.splitlines() if Path(f).suffix in suffixes and (ROOT / f).is_file()]


def unknown_hosts(text: str) -> list[str]:
    """Hosts of the URLs in ``text`` (any scheme, ``git+https`` included) that are not ``KNOWN_HOSTS``."""
    return [host for host in URL.findall(text) if host.split(":")[0] not in KNOWN_HOSTS]


def test_every_link_names_a_known_host():
    checker = Path(__file__).resolve()  # its own self-test names a host on purpose
    unknown = sorted({f"{path.relative_to(ROOT)}: {host}" for path in _tracked_text_files() if path.resolve() != checker
                      for host in unknown_hosts(path.read_text(encoding="utf8", errors="replace"))})
    assert not unknown, f"links to hosts not known to exist (check them, then add to KNOWN_HOSTS): {unknown}"


def test_unknown_hosts_reads_every_scheme_and_port():
    text = 'see https://papermill.readthedocs.io/en, http://127.0.0.1:8000/x and "pip install git+https://127.0.0.2/r"'
    assert URL.findall(text) == ["papermill.readthedocs.io", "127.0.0.1:8000", "127.0.0.2"]
    assert unknown_hosts(text) == ["127.0.0.2"]
