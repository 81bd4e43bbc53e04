"""``--shards SPEC``: which tar shards a run reads, in which order, and their items.

SPEC is one of (WebDataset's spellings):
- a brace range or list, ``data-{000000..000099}.tar``, ``{train,val}-{0..3}.tar``
  (expanded by ``braceexpand``, in the order written);
- a glob, ``shards/*.tar`` (sorted);
- a text file of shard paths, one per line (blank and ``#`` lines skipped, relative paths
  from the file's folder), in the file's order;
- one ``.tar`` path.

A shard that is named but missing or unreadable is an error record of the run, like any
other bad item (the other shards complete, exit 3); a SPEC that names no existing shard at
all is a usage error. Items come in shard order, then member order
(:mod:`engine.data.tar_shards`). Headers are scanned in a few processes when there are
many shards: tarfile's header parsing is Python, tens of microseconds per member.
"""
from __future__ import annotations

import glob
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from braceexpand import braceexpand

from engine.data.arg_checks import UsageError
from engine.data.tar_shards import scan_shard

PARALLEL_FROM = 8  # shards; fewer are scanned in this process (a pool costs ~1 s to start)
_GLOB_CHARS = frozenset("*?[")


@dataclass
class ShardInput:
    shards: list[str]
    items: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _from_list_file(path: Path) -> list[str]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--shards {path}: cannot read the shard list ({getattr(e, 'strerror', None) or e})") from None
    base = path.resolve().parent
    lines = (line.strip() for line in text.splitlines())
    return [line if os.path.isabs(line) else str(base / line) for line in lines if line and not line.startswith("#")]


def expand_shards(spec: str) -> list[str]:
    """The shard paths SPEC names, in order (see the module docstring)."""
    if "{" in spec:
        paths = []
        for name in braceexpand(spec):
            paths.extend(sorted(glob.glob(name)) if _GLOB_CHARS & set(name) else [name])
    elif _GLOB_CHARS & set(spec):
        paths = sorted(glob.glob(spec))
    elif Path(spec).is_file() and not spec.endswith(".tar"):
        paths = _from_list_file(Path(spec))
    else:
        paths = [spec]
    if not paths:
        raise UsageError(f"--shards {spec}: names no shard")
    not_tar = [p for p in paths if not p.endswith(".tar")]
    if not_tar:
        raise UsageError(f"--shards {spec}: {not_tar[0]} is not a .tar shard (shards are uncompressed .tar files)")
    if not any(os.path.isfile(p) for p in paths):
        raise UsageError(f"--shards {spec}: no such shard" + (f" (none of the {len(paths)} named)"
                                                               if len(paths) > 1 else ""))
    return [os.path.abspath(p) for p in paths]


def read_shards(spec: str, workers: int = 1) -> ShardInput:
    """Expand SPEC and scan its shards' headers (in up to ``workers`` processes)."""
    shards = expand_shards(spec)
    found = ShardInput(shards)
    if workers > 1 and len(shards) >= PARALLEL_FROM:
        with ProcessPoolExecutor(min(workers, len(shards))) as pool:
            scans = list(pool.map(scan_shard, shards, chunksize=max(1, len(shards) // (4 * workers))))
    else:
        scans = map(scan_shard, shards)
    for scan in scans:
        found.items.extend(scan.items)
        found.warnings.extend(scan.warnings)
    return found
