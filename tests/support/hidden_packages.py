"""Run a command as if some packages were not installed: a core install, in this venv.

:func:`environment` returns the environment of a subprocess in which the packages named
are hidden, in that process and in every process it starts (workers, spawned children):
a ``sitecustomize.py`` on ``PYTHONPATH`` wraps each import finder so that it does not find
them. ``import torch`` then raises ``ModuleNotFoundError: No module named 'torch'`` and
``importlib.util.find_spec("torch")`` is None, as where torch was never installed; the
distribution metadata stays, which no engine code reads to decide on a feature.
"""
from __future__ import annotations

import os
from pathlib import Path

SITECUSTOMIZE = '''\
import os
import sys

_HIDDEN = frozenset(os.environ["HIDDEN_PACKAGES"].split(","))


class _Hiding:
    """An import finder that finds what the finder it wraps finds, except the hidden packages."""

    def __init__(self, finder):
        self._finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in _HIDDEN:
            return None
        find = getattr(self._finder, "find_spec", None)
        return find(name, path, target) if find else None

    def __getattr__(self, attribute):
        return getattr(self._finder, attribute)


sys.meta_path[:] = [_Hiding(finder) for finder in sys.meta_path]
'''


def environment(folder: Path, hidden: tuple[str, ...]) -> dict[str, str]:
    """``os.environ`` plus what hides ``hidden`` (top-level import names); writes the
    ``sitecustomize.py`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    paths = [str(folder), str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "HIDDEN_PACKAGES": ",".join(hidden), "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
