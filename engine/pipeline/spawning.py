"""Starting worker processes without re-running the parent's ``__main__``.

Workers are started with multiprocessing's ``spawn`` (a fresh interpreter: the parent has
threads, ZeroMQ contexts and numba state that ``fork`` would copy half-made). ``spawn``
prepares each child by re-running the parent's main script, or re-importing its ``-m``
module, so that functions defined there can be unpickled. The engine's workers run engine
functions on plain data and need nothing from ``__main__``; re-running it would execute
a user's script (a notebook cell's module, an evaluation script without an ``if __name__
== "__main__"`` guard) once more in every worker. So while a worker starts, ``__main__``
is shown to multiprocessing as a module without a file or spec, which it skips.
"""
from __future__ import annotations

import contextlib
import sys
import threading

_lock = threading.Lock()


@contextlib.contextmanager
def main_module_hidden():
    """Within the block, processes started with ``spawn`` do not re-run ``__main__``."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    with _lock:
        saved_file = main.__dict__.pop("__file__", None)
        saved_spec = main.__dict__.get("__spec__")
        main.__spec__ = None
        try:
            yield
        finally:
            main.__spec__ = saved_spec
            if saved_file is not None:
                main.__file__ = saved_file
