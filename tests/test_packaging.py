"""The two ways to install (pip/Colab and conda) declare the same dependencies."""

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_environment_yml_matches_pyproject():
    project = _pyproject()
    pip_deps = {
        _name(d)
        for d in project["dependencies"] + project["optional-dependencies"]["dev"]
    }
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "conda-forge" in env["channels"]
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)} - {
        "python",
        "pip",
    }
    assert {CONDA_NAMES.get(n, n) for n in pip_deps} == conda


def test_torch_is_pinned_only_in_the_constraints_file():
    torch_reqs = [
        d for d in _pyproject()["dependencies"] if _name(d) in ("torch", "torchvision")
    ]
    assert torch_reqs and not any(
        "==" in d for d in torch_reqs
    )  # Colab keeps its own build
    pins = dict(
        line.split("==")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert set(pins) == {"torch", "torchvision"}


def test_ci_runs_the_readme_test_command_only():
    readme = (ROOT / "README.md").read_text()
    ci = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip()
        and not line.startswith("#")
        and not line.startswith(("set ", "cd "))
    ]
    assert ci == ["make test"]
    assert "make test" in readme and "make demo" in readme
