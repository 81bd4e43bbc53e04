"""Up-front checks of what a command is given: numbers, input files, output paths.

Every command runs these before any work, so a mistake costs the user a one-line usage
error (exit status 2) that names the flag, the value and the reason, instead of a
traceback after an hour of conversion. Output paths are checked by doing what the
command will do later: creating the missing folders and writing (then removing) a probe
file where the output will go; that is the only check that tells ``/proc/x`` or a
read-only mount from a usable place, whoever the user is.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


class UsageError(ValueError):
    """A command-line value that cannot work; the message is the whole line to print."""


def at_least(flag: str, value: int | float | None, minimum: int | float) -> None:
    """``value`` (None: not given) must be ``minimum`` or more."""
    if value is not None and value < minimum:
        raise UsageError(f"{flag} must be at least {minimum}, got {value}")


def at_most(flag: str, value: int | float, maximum: int | float, what: str) -> None:
    """``value`` must not exceed ``maximum``, which is ``what`` (as in "the model's classes")."""
    if value > maximum:
        raise UsageError(f"{flag} {value} exceeds {what} ({maximum})")


def input_file(flag: str, path: str | os.PathLike) -> Path:
    """An existing, readable regular file."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{flag} {p}: is a directory, not a file")
    if not p.exists():
        raise UsageError(f"{flag} {p}: no such file")
    if not os.access(p, os.R_OK):
        raise UsageError(f"{flag} {p}: not readable")
    return p


def input_dir(flag: str, path: str | os.PathLike) -> Path:
    """An existing folder."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{flag} {p}: is a file, not a folder")
    if not p.exists():
        raise UsageError(f"{flag} {p}: no such folder")
    return p


def _probe_writable(flag: str, shown: Path, folder: Path) -> None:
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as e:
        raise UsageError(f"{flag} {shown}: cannot write in {folder} ({e.strerror or e})") from None


def _make_folder(flag: str, shown: Path, folder: Path) -> None:
    for ancestor in (folder, *folder.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise UsageError(f"{flag} {shown}: {ancestor} is a file, not a folder")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{flag} {shown}: cannot create folder {folder} ({e.strerror or e})") from None


def output_file(flag: str, path: str | os.PathLike | None) -> Path | None:
    """A file the command will write (None: not given): its folder is created and checked
    writable; an existing folder in its place, or an existing read-only file, is refused."""
    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{flag} {p}: is a directory, not a file")
    _make_folder(flag, p, p.parent)
    if p.exists() and not os.access(p, os.W_OK):
        raise UsageError(f"{flag} {p}: the existing file is not writable")
    _probe_writable(flag, p, p.parent)
    return p


def output_dir(flag: str, path: str | os.PathLike | None) -> Path | None:
    """A folder the command will write into (None: not given): created and checked writable."""
    if path is None:
        return None
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{flag} {p}: is a file, not a folder")
    _make_folder(flag, p, p)
    _probe_writable(flag, p, p)
    return p
