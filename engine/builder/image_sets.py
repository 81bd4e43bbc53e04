"""Which images ``engine.build`` calibrates on and which it checks the built model on.

Images are chosen round-robin over their classes (the folder an image sits in, or its
label from a ``val_label.txt`` file), in sorted order, so every class present is
represented and the same config always picks the same images. The images not used for
calibration are the held-out pool the build's accuracy check draws from; the check never
sees a calibration image.

When calibration would use (nearly) every image it was given and no ``check.path`` names
other images, a share of them is held out of calibration first, spread over the classes
in the same way, so that the build still has an accuracy check; build.json records how
many and why. Only when even that is impossible (a single image) is there no check, and
the reason is reported.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.builder.config import BuildConfig
from engine.data.datalist import ITEM_SUFFIXES, read_datalist, scan_images
from engine.data.labels import LabelSource, imagenet_wnid_index

# At least one in this many calibration images is kept for the check when calibration
# would leave fewer (and never more than check.count).
HELD_OUT_SHARE = 5


def list_items(path, suffix: str | None = None) -> list[str]:
    """The items of an image folder (recursive, sorted) or of a datalist file.

    ``suffix`` (the seed's ``dataset.sampler.suffix``, e.g. ``JPEG``) keeps only files
    with that extension, in any case.
    """
    path = Path(path)
    if path.is_dir():
        items = scan_images(path, ITEM_SUFFIXES)
    elif path.is_file():
        items = read_datalist(path)
    else:
        raise FileNotFoundError(f"calibration data {path}: no such folder or datalist")
    if suffix:
        wanted = "." + suffix.lower().lstrip(".")
        items = [i for i in items if Path(i).suffix.lower() == wanted]
    if not items:
        raise ValueError(f"calibration data {path}: no images found" + (f" with suffix {suffix!r}" if suffix else ""))
    return items


def class_key_function(labels: LabelSource | None) -> Callable[[str], str]:
    """What an item's class is for spreading: its label when known, else its folder."""

    def key(item: str) -> str:
        if labels is not None and labels.active:
            label = labels(item)
            if label is not None:
                return f"label:{label:06d}"
        return f"folder:{Path(item).parent}"

    return key


def spread_over_classes(items: list[str], count: int, class_of: Callable[[str], str]) -> list[str]:
    """Up to ``count`` items taken round-robin over classes (classes and items sorted)."""
    if count < 0:
        raise ValueError(f"count {count}: must be >= 0")
    groups: dict[str, list[str]] = defaultdict(list)
    for item in sorted(items):
        groups[class_of(item)].append(item)
    queues = [groups[k] for k in sorted(groups)]
    chosen: list[str] = []
    depth = 0
    while len(chosen) < count and any(depth < len(q) for q in queues):
        for queue in queues:
            if depth < len(queue):
                chosen.append(queue[depth])
                if len(chosen) == count:
                    break
        depth += 1
    return chosen


def folder_labels_apply(items: list[str]) -> bool:
    """True when every item sits in a folder named after an ImageNet wnid."""
    index = imagenet_wnid_index()
    return bool(items) and all(Path(i).parent.name in index for i in items)


def labels_for(label_file: Path | None, items: list[str]) -> LabelSource | None:
    """The labels of ``items``: from ``label_file``, else from wnid folder names, else none."""
    if label_file is not None:
        return LabelSource(label_file)
    if folder_labels_apply(items):
        return LabelSource(from_folders=True)
    return None


@dataclass(frozen=True)
class ImageSets:
    """The images of one build."""
    pool: list[str]                      # every calibration image found
    calibration: list[str]
    check: list[str]
    class_of: Callable[[str], str]       # the class of a calibration image, for spreading and the report
    check_labels: LabelSource | None
    held_out: dict | None                # images held out of calibration for the check: how many, why
    no_check: str | None                 # why there is no accuracy check; None when there is one
    skipped: list[dict]                  # {item, error}: chosen images that do not decode, left out


def _held_out_count(cfg: BuildConfig, pool: list[str]) -> int:
    """How many of ``pool`` to hold out of an int8 calibration for the check (0: none needed or possible)."""
    if cfg.dtype != "int8" or cfg.check.path is not None or cfg.check.count == 0:
        return 0
    wanted = min(cfg.check.count, max(1, len(pool) // HELD_OUT_SHARE))
    left = len(pool) - min(cfg.calibration.count, len(pool))
    return wanted if left < wanted < len(pool) else 0


def _why_no_check(cfg: BuildConfig, pool: list[str]) -> str:
    if cfg.check.count == 0:
        return f"{cfg.key('check.count')} is 0"
    if cfg.check.path is not None:
        return f"every image of {cfg.key('check.path')} is also a calibration image"
    if not pool:
        return "no images: give check.path (or calibration.path) for an accuracy check"
    return (f"the {len(pool)} calibration image(s) are all needed for calibration and none can be held out; "
            f"give check.path for an accuracy check")


def readable(items: list[str]) -> tuple[list[str], list[dict]]:
    """The items that decode, and ``{item, error}`` for those that do not: one corrupt
    file is skipped and listed (as engine.run and engine.image2npz do), not fatal.

    This is a decode of its own, before calibration, because the calibration pass cannot
    find unreadable images as it reaches them: onnxruntime's strided calibration takes the
    reader's batch count before the first batch, and its histogram calibrators (percentile,
    entropy) refuse a stride that yields no data, so the batches must be known to be full.
    Keeping the decoded images for the later passes instead would hold every calibration
    image in memory at once; a decode alone is a small share of what the build does with
    each image (the measurement is in docs/build.md)."""
    from engine.data.decode import load_item

    ok, skipped = [], []
    for item in items:
        try:
            load_item(item)
        except (OSError, ValueError) as e:  # DecodeError is a ValueError naming the item
            skipped.append({"item": item, "error": str(e)})
        else:
            ok.append(item)
    return ok, skipped


def choose_images(cfg: BuildConfig) -> ImageSets:
    """The calibration and check images of ``cfg`` (calibration images for int8 only)."""
    pool = list_items(cfg.calibration.path, cfg.calibration.suffix) if cfg.calibration.path else []
    class_of = class_key_function(labels_for(cfg.calibration.labels, pool))
    held = spread_over_classes(pool, _held_out_count(cfg, pool), class_of)
    held_out = None
    if held:
        held_out = {"images": len(held),
                    "why": f"{cfg.key('calibration.count')} {cfg.calibration.count} would leave "
                           f"{len(pool) - min(cfg.calibration.count, len(pool))} of the {len(pool)} images for the "
                           f"accuracy check and no check.path is given: {len(held)} held out of calibration for it, "
                           f"spread over the classes"}
    kept = set(held)
    count = cfg.calibration.count if cfg.dtype == "int8" else 0
    calibration, skipped = readable(spread_over_classes([i for i in pool if i not in kept], count, class_of))
    chosen = set(calibration) | {s["item"] for s in skipped}
    check_pool = [i for i in (list_items(cfg.check.path) if cfg.check.path else pool) if i not in chosen]
    check_labels = labels_for(cfg.check.labels or cfg.calibration.labels, check_pool)
    check, skipped_check = readable(spread_over_classes(check_pool, cfg.check.count, class_key_function(check_labels)))
    return ImageSets(pool=pool, calibration=calibration, check=check, class_of=class_of, check_labels=check_labels,
                     held_out=held_out, no_check=None if check else _why_no_check(cfg, pool),
                     skipped=skipped + skipped_check)
