"""Installed commands: pyproject.toml's [project.scripts] name importable functions of packages that setuptools
installs, each runs from any folder as pip's console-script wrapper runs it, and no module reaches the project by
editing sys.path."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS = PYPROJECT["project"]["scripts"]


def test_every_command_names_an_installed_function():
    assert set(SCRIPTS) == {"grpo-math-train", "grpo-math-eval", "grpo-math-launch"}
    packages = PYPROJECT["tool"]["setuptools"]["packages"]
    for name, target in SCRIPTS.items():
        module, _, function = target.partition(":")
        assert module.split(".")[0] in packages, f"{name}: {module} is not in the installed packages"
        assert callable(getattr(import_module(module), function)), name
    assert (ROOT / "step3_GRPO" / "__init__.py").is_file()  # a regular package: setuptools installs its files


# (command, arguments, exit status, text in its output): each run from a folder outside the clone
RUNS = [
    ("grpo-math-train", ["--config", "config/quickstart.yaml", "training.max_step=1"], 2,
     "unknown key 'training.max_step' (did you mean 'training.max_steps'?)"),  # the shipped config is found
    ("grpo-math-eval", ["--compare", "nowhere"], 2, "--compare: nowhere not found"),
    ("grpo-math-launch", ["2", "--config", "config/quickstart.yaml", "--dry-run"], 0,
     "accelerate.commands.launch --num_processes 2"),
]


@pytest.mark.parametrize("command,args,rc,text", RUNS, ids=[r[0] for r in RUNS])
def test_each_command_runs_from_any_folder(tmp_path, command, args, rc, text):
    """What the wrapper pip writes for a console script does: import the function, exit with its return value.
    The project is importable as `pip install -e .` makes it (tests/conftest.py: PYTHONPATH), not from the cwd."""
    module, _, function = SCRIPTS[command].partition(":")
    wrapper = f"import sys; from {module} import {function}; sys.argv[0] = {command!r}; sys.exit({function}())"
    r = subprocess.run([sys.executable, "-c", wrapper, *args], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == rc, r.stderr[-2000:]
    assert text in r.stdout + r.stderr
    assert "Traceback" not in r.stderr


def test_no_module_edits_sys_path():
    """Entry points are installed; a module that puts the project on sys.path hides a missing install."""
    edits = re.compile(r"sys\.path\.(insert|append|extend)|sys\.path\s*=")
    found = [f"{p.relative_to(ROOT)}:{n}" for p in ROOT.rglob("*.py") if not p.is_relative_to(ROOT / "tests")
             and ".venv" not in p.parts for n, line in enumerate(p.read_text().splitlines(), 1) if edits.search(line)]
    assert found == []
