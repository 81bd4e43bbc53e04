"""The top-k text results format of the seed's sample script, read and written.

For each item, ``k`` lines, best first::

    {item path}: Relay top-{i} id: {class id}, prob: {score:.8f}, class name: {name}

Class names hold ``,`` (``crane, bird``) and may hold ``:``, so a line is parsed from
its fixed structure (the first `` Relay top-N id: ...`` group after the path) rather
than by splitting on separators; the name is everything after ``class name: ``.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

_LINE = re.compile(
    r"^(?P<path>.*?): Relay top-(?P<rank>\d+) id: (?P<cls>-?\d+), "
    r"prob: (?P<prob>[^,]+), class name: (?P<name>.*)$"
)


class TopkEntry(NamedTuple):
    class_id: int
    prob: float
    name: str


def format_topk_lines(path: str, indices: Sequence[int], probs: Sequence[float],
                      names: Sequence[str] | None) -> list[str]:
    """The ``k`` result lines (no newline) of one item, ranks from 0.

    ``names[i]`` is the class name of ``indices[i]`` (None: empty names).
    """
    if len(indices) != len(probs) or (names is not None and len(names) != len(indices)):
        raise ValueError(f"{path}: {len(indices)} class ids, {len(probs)} scores and "
                         f"{'no' if names is None else len(names)} names do not pair up")
    if names is None:
        names = [""] * len(indices)
    return [f"{path}: Relay top-{rank} id: {int(cls)}, prob: {float(prob):.8f}, class name: {name}"
            for rank, (cls, prob, name) in enumerate(zip(indices, probs, names))]


def parse_topk_line(line: str) -> tuple[str, int, TopkEntry] | None:
    """``(item path, rank, entry)`` of one line, None when it is not a result line."""
    m = _LINE.match(line.rstrip("\r\n"))
    if m is None:
        return None
    try:
        prob = float(m["prob"])
    except ValueError:
        return None
    return m["path"], int(m["rank"]), TopkEntry(int(m["cls"]), prob, m["name"].strip())


def iter_topk_blocks(path: str | Path):
    """``(item path, [entry of rank 0, rank 1, ...])`` per block of lines, in file order.

    A block starts at ``top-0`` and its ranks run 1, 2, ... on the following lines; an
    item listed twice in the datalist appears as two blocks. Blank lines are skipped. A
    line that is not a result line, or a rank out of sequence, is an error naming the
    file and line.
    """
    path = Path(path)
    try:
        f = open(path)
    except OSError as e:
        raise OSError(f"top-k results {path}: {e.strerror or e}") from None
    item, ranks = None, []
    with f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            parsed = parse_topk_line(raw)
            if parsed is None:
                raise ValueError(f"top-k results {path}:{lineno}: not a result line ('<path>: Relay top-<i> id: "
                                 f"<id>, prob: <p>, class name: <name>'): {raw.rstrip()!r}")
            line_item, rank, entry = parsed
            if rank == 0:
                if item is not None:
                    yield item, ranks
                item, ranks = line_item, [entry]
            elif line_item == item and rank == len(ranks):
                ranks.append(entry)
            else:
                expected = f"top-{len(ranks)} of {item} or top-0" if item is not None else "top-0"
                raise ValueError(f"top-k results {path}:{lineno}: top-{rank} of {line_item} where {expected} "
                                 f"was expected")
    if item is not None:
        yield item, ranks


def read_topk_file(path: str | Path) -> dict[str, list[TopkEntry]]:
    """``{item path: [entry of rank 0, rank 1, ...]}`` in file order (an item listed
    twice keeps its first block); errors as :func:`iter_topk_blocks`."""
    results: dict[str, list[TopkEntry]] = {}
    for item, ranks in iter_topk_blocks(path):
        results.setdefault(item, ranks)
    return results


def write_topk_file(path: str | Path, items, class_names: Sequence[str] | None) -> int:
    """Write ``(item path, indices, probs)`` triples in order; returns the item count.

    ``class_names`` is indexed by class id; an id it does not cover gets an empty name.
    """
    count = 0
    with open(path, "w") as f:
        for item, indices, probs in items:
            names = [class_names[int(c)] if class_names is not None and 0 <= int(c) < len(class_names) else ""
                     for c in indices]
            f.writelines(line + "\n" for line in format_topk_lines(item, indices, probs, names))
            count += 1
    return count
