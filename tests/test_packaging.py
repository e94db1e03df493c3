"""pyproject.toml is the single source of truth for dependencies; environment.yml must mirror it."""

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return {r.replace(" ", "") for r in reqs}


def _conda_pip_requirements() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {r.replace(" ", "") for r in pip if not r.startswith("-e")}


def test_environment_yml_mirrors_pyproject():
    py, conda = _pyproject_requirements(), _conda_pip_requirements()
    assert py - conda == set(), f"in pyproject.toml but not environment.yml: {sorted(py - conda)}"
    assert conda - py == set(), f"in environment.yml but not pyproject.toml: {sorted(conda - py)}"


def test_torch_pins_are_exact():
    reqs = _pyproject_requirements()
    assert "torch==2.14.1" in reqs and "torchvision==0.29.1" in reqs


def test_environment_python_satisfies_requires_python():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    major, minor = map(int, python.split("=")[1].split(".")[:2])
    floor = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert (major, minor) >= tuple(map(int, floor.removeprefix(">=").split(".")))


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()
    assert "make book" in (ROOT / "README.md").read_text()
