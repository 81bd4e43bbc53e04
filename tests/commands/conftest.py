"""Fixtures for the command tests: a tiny real ONNX model, a folder of real photos, and
``cli``, which runs ``python -m engine.<tool>`` as a subprocess the way a user does."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from photos import write_class_folders
from tinynet import write_tiny_onnx

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return write_tiny_onnx(tmp_path_factory.mktemp("model") / "tiny.onnx", size=32, classes=10)


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory) -> Path:
    """Six photos in two class folders (n01440764, n01443537)."""
    return write_class_folders(tmp_path_factory.mktemp("photos"))


@pytest.fixture
def cli():
    def run(tool: str, *args, timeout: float = 120, cwd=None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", f"engine.{tool}", *map(str, args)], cwd=cwd or ROOT,
                              capture_output=True, text=True, timeout=timeout)
    return run


@pytest.fixture
def one_line_error():
    def check(proc: subprocess.CompletedProcess, *names, code: int = 2) -> str:
        """The exit status is ``code``; stderr is one line, no traceback, naming all of ``names``."""
        assert proc.returncode == code, (proc.returncode, proc.stderr)
        assert "Traceback" not in proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        for name in names:
            assert str(name) in lines[0], (name, lines[0])
        return lines[0]
    return check
