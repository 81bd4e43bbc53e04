"""The house rules of docs/architecture.md that no linter checks: commands are thin, modules
and functions stay readable, every subsystem says what it owns, every command answers --help."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ("run", "serve", "client", "zoo", "export", "build", "image2npz", "valprep", "eval", "tune", "demo")
SUBSYSTEMS = ("api", "models", "data", "builder", "pipeline", "serving", "backends", "cluster", "kernels")
# user-facing modules beside the commands: the API's entry points that are not commands
API_MODULES = ("ray_data",)
MAX_COMMAND_LINES = 150
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80


def _sources():
    yield from sorted((REPO / "engine").rglob("*.py"))


def _line_count(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_commands_are_the_only_modules_at_the_top_of_engine():
    modules = {p.stem for p in (REPO / "engine").glob("*.py")} - {"__init__"}
    assert modules == set(COMMANDS) | set(API_MODULES)
    packages = {p.name for p in (REPO / "engine").iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(SUBSYSTEMS)


def test_commands_are_short():
    long = {c: n for c in COMMANDS if (n := _line_count(REPO / "engine" / f"{c}.py")) > MAX_COMMAND_LINES}
    assert not long, f"commands over {MAX_COMMAND_LINES} lines (move the machinery to a subsystem): {long}"


def test_modules_and_functions_stay_readable():
    long_modules = {str(p.relative_to(REPO)): n for p in _sources() if (n := _line_count(p)) > MAX_MODULE_LINES}
    long_functions = {}
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions[f"{path.relative_to(REPO)}:{node.lineno} {node.name}"] = length
    assert not long_modules, f"modules over {MAX_MODULE_LINES} lines: {long_modules}"
    assert not long_functions, f"functions over {MAX_FUNCTION_LINES} lines: {long_functions}"


@pytest.mark.parametrize("package", tuple(f"engine/{s}" for s in SUBSYSTEMS))
def test_every_subsystem_says_what_it_owns(package):
    docstring = ast.get_docstring(ast.parse((REPO / package / "__init__.py").read_text()))
    assert docstring and len(docstring.split()) >= 8, f"{package}/__init__.py needs a docstring saying what it owns"


def test_every_command_answers_help():
    procs = {c: subprocess.Popen([sys.executable, "-m", f"engine.{c}", "--help"], cwd=REPO,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in COMMANDS}
    for command, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"engine.{command} --help: exit {proc.returncode}\n{err}"
        assert f"engine.{command}" in out and "usage:" in out, out
