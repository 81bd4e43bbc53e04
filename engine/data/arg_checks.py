"""Up-front checks of what a command is given: numbers, input files, output paths.

Every command runs these before any work, so a mistake costs the user a one-line usage
error (exit status 2) that names the flag, the value and the reason, instead of a
traceback after an hour of conversion. Output paths are checked by doing what the
command will do later: creating the missing folders and writing a probe file where the
output will go; that is the only check that tells ``/proc/x`` or a read-only mount from a
usable place, whoever the user is. :func:`check_output_dir` and :func:`check_output_file`
then remove the probe and every folder they made, so a command refused for a later
argument leaves nothing behind; the command's writers make the folders when they write.
:func:`output_dir` and :func:`output_file` keep the folders, for a command whose writers
expect them to exist once its checks are done.
"""
from __future__ import annotations

import contextlib
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


def _missing_folders(flag: str, shown: Path, folder: Path) -> list[Path]:
    """The folders from the deepest existing ancestor of ``folder`` down to it that do not exist yet,
    outermost first; an ancestor that is a file is refused."""
    missing = []
    for ancestor in (folder, *folder.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise UsageError(f"{flag} {shown}: {ancestor} is a file, not a folder")
            break
        missing.append(ancestor)
    return missing[::-1]


def _probe_folder(flag: str, shown: Path, folder: Path, keep: bool) -> None:
    """Make the missing folders down to ``folder`` and write a probe file in it; unless ``keep``,
    remove the folders made here again (the innermost first), whether the probe passed or not."""
    made = []
    try:
        for missing in _missing_folders(flag, shown, folder):
            try:
                missing.mkdir(exist_ok=True)
            except OSError as e:
                raise UsageError(f"{flag} {shown}: cannot create folder {folder} ({e.strerror or e})") from None
            made.append(missing)
        _probe_writable(flag, shown, folder)
    finally:
        if not keep:
            for created in reversed(made):
                with contextlib.suppress(OSError):  # another process wrote into it meanwhile: it is theirs now
                    created.rmdir()


def _check_file(flag: str, path: str | os.PathLike, keep: bool) -> Path:
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{flag} {p}: is a directory, not a file")
    if p.exists() and not os.access(p, os.W_OK):
        raise UsageError(f"{flag} {p}: the existing file is not writable")
    _probe_folder(flag, p, p.parent, keep)
    return p


def _check_dir(flag: str, path: str | os.PathLike, keep: bool) -> Path:
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{flag} {p}: is a file, not a folder")
    _probe_folder(flag, p, p, keep)
    return p


def check_output_file(flag: str, path: str | os.PathLike | None) -> Path | None:
    """A file the command will write (None: not given), checked and nothing left behind: its
    folder could be made and written in; an existing folder in its place, or an existing
    read-only file, is refused."""
    return None if path is None else _check_file(flag, path, keep=False)


def check_output_dir(flag: str, path: str | os.PathLike | None) -> Path | None:
    """A folder the command will write into (None: not given), checked and nothing left behind:
    it could be made and written in."""
    return None if path is None else _check_dir(flag, path, keep=False)


def output_file(flag: str, path: str | os.PathLike | None) -> Path | None:
    """:func:`check_output_file`, keeping the file's folder."""
    return None if path is None else _check_file(flag, path, keep=True)


def output_dir(flag: str, path: str | os.PathLike | None) -> Path | None:
    """:func:`check_output_dir`, keeping the folder."""
    return None if path is None else _check_dir(flag, path, keep=True)
