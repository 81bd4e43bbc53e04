"""Lay a flat ILSVRC2012 ``val/`` folder out as ``val/<wnid>/`` (``python -m engine.valprep``).

The ground truth is either Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString``,
the prediction string starting with the wnid), or the devkit's
``ILSVRC2012_validation_ground_truth.txt`` (line n holds the ILSVRC2012_ID of
``ILSVRC2012_val_{n:08d}``, ids in the devkit's meta.mat order) together with a file
mapping those ids to wnids (``<id> <wnid>`` lines): the mapping is never guessed.

Writes ``val_label.txt`` (``<file> <class index>``, the index being the wnid's position
in the sorted list of the 1000 wnids) and ``label.txt`` (one class name per index).

Every file is checked before any is moved: a ground-truth line naming a missing image,
an image already in another class's folder, or a clash stops the run with the full list
and nothing moved. Re-running on an arranged folder finds everything in place.
"""
from __future__ import annotations

import csv
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from engine.data.datalist import IMAGE_SUFFIXES
from engine.data.labels import imagenet_class_names, imagenet_wnid_index

LISTED = 50
"""How many problems are printed before the rest are counted."""


@dataclass(frozen=True)
class Truth:
    stem: str
    wnid: str
    where: str
    """File and line the entry came from, for error messages."""


def _check_wnid(wnid: str, where: str) -> str:
    if wnid not in imagenet_wnid_index():
        raise ValueError(f"{where}: {wnid!r} is not one of the 1000 ILSVRC2012 wnids")
    return wnid


def _collect(entries, source: Path) -> list[Truth]:
    """Entries in file order; a stem given two classes is an error."""
    seen: dict[str, Truth] = {}
    for t in entries:
        earlier = seen.get(t.stem)
        if earlier is not None and earlier.wnid != t.wnid:
            raise ValueError(f"{t.where}: {t.stem} is {t.wnid} but {earlier.where} says {earlier.wnid}")
        seen.setdefault(t.stem, t)
    if not seen:
        raise ValueError(f"ground truth {source}: no entries")
    return list(seen.values())


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except OSError as e:
        raise OSError(f"{what} {path}: {e.strerror or e}") from None


def read_solution_csv(path: str | Path) -> list[Truth]:
    """Kaggle's ``LOC_val_solution.csv``: ``ILSVRC2012_val_00008726,n02119789 255 142 ...``."""
    path = Path(path)
    rows = csv.reader(_read_text(path, "ground truth").splitlines())

    def entries():
        for lineno, row in enumerate(rows, 1):
            if not row or not "".join(row).strip() or (lineno == 1 and row[0].strip() == "ImageId"):
                continue
            where = f"{path}:{lineno}"
            if len(row) < 2 or not row[1].split():
                raise ValueError(f"{where}: expected 'ImageId,PredictionString', got {','.join(row)!r}")
            yield Truth(Path(row[0].strip()).stem, _check_wnid(row[1].split()[0], where), where)

    return _collect(entries(), path)


def read_id_map(path: str | Path) -> dict[int, str]:
    """``<ILSVRC2012_ID> <wnid>`` lines (blank and ``#`` lines skipped)."""
    path = Path(path)
    mapping: dict[int, str] = {}
    for lineno, raw in enumerate(_read_text(path, "id map").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        where = f"{path}:{lineno}"
        if len(parts) != 2 or not parts[0].isdigit():
            raise ValueError(f"{where}: expected '<id> <wnid>', got {raw!r}")
        ident = int(parts[0])
        if mapping.get(ident, parts[1]) != parts[1]:
            raise ValueError(f"{where}: id {ident} mapped to {mapping[ident]} and {parts[1]}")
        mapping[ident] = _check_wnid(parts[1], where)
    return mapping


def read_devkit_ground_truth(path: str | Path, id_map: dict[int, str]) -> list[Truth]:
    """``ILSVRC2012_validation_ground_truth.txt``: line n is the id of ``ILSVRC2012_val_{n:08d}``."""
    path = Path(path)

    def entries():
        for lineno, raw in enumerate(_read_text(path, "ground truth").splitlines(), 1):
            line = raw.strip()
            where = f"{path}:{lineno}"
            if not line.isdigit():
                raise ValueError(f"{where}: expected one ILSVRC2012_ID per line, got {raw!r}")
            if int(line) not in id_map:
                raise ValueError(f"{where}: id {line} is not in the id map")
            yield Truth(f"ILSVRC2012_val_{lineno:08d}", id_map[int(line)], where)

    return _collect(entries(), path)


@dataclass
class Plan:
    moves: list[tuple[Path, Path]] = field(default_factory=list)
    in_place: list[Path] = field(default_factory=list)
    labels: list[tuple[str, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unlisted: list[Path] = field(default_factory=list)


def _images_by_stem(folders) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for folder in folders:
        for entry in os.scandir(folder):
            path = Path(entry.path)
            if path.suffix.lower() in IMAGE_SUFFIXES and (entry.is_file() or entry.is_symlink()):
                found.setdefault(path.stem, []).append(path)
    return found


def _subfolders(root: Path) -> list[Path]:
    return sorted(Path(e.path) for e in os.scandir(root) if e.is_dir()) if root.is_dir() else []


def make_plan(val_dir: Path, truth: list[Truth], dest_root: Path) -> Plan:
    """What to move where, what is already in place, and every reason to refuse."""
    plan = Plan()
    index = imagenet_wnid_index()
    flat = _images_by_stem([val_dir])
    sources = dict(flat)
    if dest_root != val_dir:  # an arranged val/ can be the source of a linked tree too
        for stem, paths in _images_by_stem(_subfolders(val_dir)).items():
            sources.setdefault(stem, []).extend(paths)
    arranged = _images_by_stem(_subfolders(dest_root))
    for t in truth:
        placed = arranged.get(t.stem, [])
        if len(placed) > 1:
            plan.problems.append(f"{t.stem}: several files in class folders: {', '.join(map(str, placed))}")
        elif placed:
            path = placed[0]
            if path.parent.name != t.wnid:
                plan.problems.append(f"{path} is in folder {path.parent.name} but {t.where} says {t.wnid}")
            elif not path.exists():
                plan.problems.append(f"{path} is a broken link")
            else:
                plan.in_place.append(path)
                plan.labels.append((path.name, index[t.wnid]))
            continue
        candidates = sources.get(t.stem, [])
        if not candidates:
            plan.problems.append(f"{t.where} names {t.stem}, which is not in {val_dir}")
        elif len(candidates) > 1:
            plan.problems.append(f"{t.stem}: several source files: {', '.join(map(str, candidates))}")
        else:
            src = candidates[0]
            plan.moves.append((src, dest_root / t.wnid / src.name))
            plan.labels.append((src.name, index[t.wnid]))
    named = {t.stem for t in truth}
    plan.unlisted = sorted(p for stem, paths in flat.items() if stem not in named for p in paths)
    plan.labels.sort()
    return plan


def permission_problems(plan: Plan, dest_root: Path, link: bool) -> list[str]:
    """Folders the planned moves need to write to but cannot."""
    if not plan.moves:
        return []
    folders = {dest_root} | ({src.parent for src, _ in plan.moves} if not link else set())
    problems = []
    for folder in sorted(folders):
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not os.access(existing, os.W_OK | os.X_OK):
            problems.append(f"{existing}: no permission to write")
    return problems


def carry_out(plan: Plan, link: bool) -> int:
    """Move or symlink every planned file; returns how many were placed."""
    done = 0
    for src, dest in tqdm(plan.moves, desc="linking" if link else "moving", unit="img", disable=None):
        dest.parent.mkdir(parents=True, exist_ok=True)
        if link:
            os.symlink(src.resolve(), dest)
        else:
            shutil.move(src, dest)
        done += 1
    return done


def label_file_texts(plan: Plan, out_dir: Path) -> dict[Path, str]:
    """``val_label.txt`` and ``label.txt`` as they will be written."""
    return {out_dir / "val_label.txt": "".join(f"{name} {index}\n" for name, index in plan.labels),
            out_dir / "label.txt": "".join(f"{name}\n" for name in imagenet_class_names())}


def overwrite_problems(texts: dict[Path, str]) -> list[str]:
    """Existing label files that would change: someone else's file is never silently replaced."""
    problems = []
    for path, text in texts.items():
        if not path.exists():
            continue
        try:
            same = path.read_text() == text
        except (OSError, UnicodeDecodeError) as e:
            problems.append(f"{path} exists and cannot be read: {e}")
            continue
        if not same:
            problems.append(f"{path} exists with other content (pass --overwrite to replace it, "
                            f"or --out-dir to write elsewhere)")
    return problems


def write_label_files(texts: dict[Path, str]) -> None:
    for path, text in texts.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
