"""Files that appear whole or not at all: written under a hidden temporary name beside the
final one and renamed into place (``os.replace``, atomic on one file system), so a reader,
a killed run or a second writer never sees half a file. Hidden (a leading dot): pyarrow,
pandas and DuckDB skip such names in a folder table."""
from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replaced_when_written(path: Path) -> Iterator[Path]:
    """The temporary path to write ``path``'s content to: renamed to ``path`` when the block
    ends, removed when it raises. Unique per call (processes and threads may write one
    ``path`` at once: the last rename wins, whole)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
