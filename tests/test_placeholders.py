"""No placeholder hosts or repositories: every link in the tracked files works or is not there."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDERS = ("example.org", "example.com", "github.com/zfkit", "git+https://", "your-org", "jupyterhub.example")


def _tracked_text_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    suffixes = {".py", ".md", ".yml", ".yaml", ".toml", ".ipynb", ".cfg", ".txt", ".bib", ""}
    return [ROOT / f for f in out.splitlines() if Path(f).suffix in suffixes and (ROOT / f).is_file()]


def test_no_tracked_file_names_a_placeholder_host():
    me = Path(__file__).resolve()
    found = [f"{path.relative_to(ROOT)}: {word}" for path in _tracked_text_files() if path.resolve() != me
             for word in PLACEHOLDERS if word in path.read_text(encoding="utf8", errors="replace")]
    assert not found, f"placeholder URLs or hosts: {found}"
