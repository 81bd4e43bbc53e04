"""What ``python -m engine.image2npz``'s two writers share (engine/data/npz_convert.py, the
``.npz`` files; engine/data/shard_writer.py, the tar shards): refusing images that would
take one output, a pool of processes over the images with a progress bar, and the summary's
report of the images skipped."""
from __future__ import annotations

import multiprocessing
from collections import defaultdict
from collections.abc import Callable, Iterator

from tqdm import tqdm


class SkipReport:
    """A summary's ``ok`` and ``report``: its ``headline()`` and one line per image in ``skipped``
    (``(image, reason)`` pairs)."""

    skipped: list[tuple[str, str]]

    @property
    def ok(self) -> bool:
        return not self.skipped

    def headline(self) -> str:
        raise NotImplementedError

    def report(self) -> str:
        return "\n".join([self.headline()] + [f"  skipped {image}: {reason}" for image, reason in self.skipped])


def refuse_shared(images: list[str], output_of: Callable[[str], object],
                  reason: Callable[[object, str], str]) -> tuple[list[str], list[tuple[str, str]]]:
    """The images that have an output of their own, in order; those whose output another image
    would also take refused, each with ``reason(output, the others)``."""
    by_output: dict[object, list[str]] = defaultdict(list)
    for image in images:
        by_output[output_of(image)].append(image)
    refused = [(image, reason(output, ", ".join(o for o in sources if o != image)))
               for output, sources in by_output.items() if len(sources) > 1 for image in sources]
    clashing = {image for image, _ in refused}
    return [image for image in images if image not in clashing], refused


def map_with_progress(fn: Callable, items: list, workers: int, desc: str, quiet: bool) -> Iterator:
    """``fn`` of every item, in order, in up to ``workers`` spawned processes (one: in this one),
    with a progress bar unless ``quiet``."""
    workers = max(1, min(workers, len(items)))
    with tqdm(total=len(items), unit="img", desc=desc, disable=quiet) as bar:
        if workers == 1:
            yield from _counted(map(fn, items), bar)
            return
        chunksize = max(1, min(32, len(items) // (workers * 8)))
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            yield from _counted(pool.imap(fn, items, chunksize), bar)


def _counted(results: Iterator, bar: tqdm) -> Iterator:
    for result in results:
        bar.update()
        yield result
