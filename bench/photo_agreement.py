"""The photo set of the build suite and top-1 agreement per photo group.

The photos ship with scikit-image and matplotlib (nothing to download): five of objects
ImageNet has classes for, where a trained classifier is confident, and nine textures,
medical and space images, where it is not; agreement is reported per group, on the
images fp32 is confident about, and per bucket of fp32's top-1 margin.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

OBJECT_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "grace_hopper")
OTHER_PHOTOS = ("hubble_deep_field", "retina", "immunohistochemistry", "brick", "grass", "gravel",
                "camera", "coins", "moon")
CONFIDENT = 0.5
MARGIN_EDGES = (0.0, 0.05, 0.2, 0.4, 1.0)  # buckets of fp32's top-1 minus top-2 probability


def photo(name: str) -> Image.Image:
    if name == "grace_hopper":
        from matplotlib import cbook

        return Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    import skimage.data

    array = getattr(skimage.data, name)()
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return Image.fromarray(np.ascontiguousarray(array[..., :3]))


def make_photo_set(folder: Path, per_photo: int, seed: int = 0) -> None:
    """``per_photo`` JPEG crops (scale, aspect, flip, brightness varied) of every photo,
    one folder per photo so calibration and the check are spread over all of them."""
    rng = np.random.default_rng(seed)
    for name in OBJECT_PHOTOS + OTHER_PHOTOS:
        image = photo(name)
        w, h = image.size
        for j in range(per_photo):
            scale = rng.uniform(0.55, 1.0)
            cw = int(w * scale)
            ch = min(h, int(h * scale * rng.uniform(0.85, 1.15)))
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            crop = image.crop((x0, y0, x0 + cw, y0 + ch))
            if rng.random() < 0.5:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            crop = Image.fromarray(np.clip(np.asarray(crop) * rng.uniform(0.85, 1.15), 0, 255).astype(np.uint8))
            path = folder / name / f"{name}_{j:03d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            crop.save(path, quality=92)


def object_photos(items: list[str]) -> np.ndarray:
    """Which of ``items`` are crops of the photos of objects ImageNet has classes for."""
    return np.asarray([Path(i).parent.name in OBJECT_PHOTOS for i in items])


def agreement_by_group(a: np.ndarray, b: np.ndarray, items: list[str]) -> dict:
    """Top-1 agreement of outputs ``b`` with reference outputs ``a`` (rows: ``items``)
    per photo group and on the images fp32 is confident about."""
    p = np.exp(a - a.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    top2 = np.sort(p, axis=1)[:, -2:]
    confidence, margin = top2[:, 1], top2[:, 1] - top2[:, 0]
    same = a.argmax(axis=1) == b.argmax(axis=1)
    objects = object_photos(items)

    def rate(mask):
        return {"agreement": float(same[mask].mean()) if mask.any() else None, "images": int(mask.sum())}

    return {"objects": rate(objects), "others": rate(~objects), "all": rate(np.ones_like(objects)),
            "confident": rate(confidence > CONFIDENT),
            "by_fp32_margin": margin_buckets(margin, rate),
            "others_median_confidence": float(np.median(confidence[~objects])) if (~objects).any() else None,
            "objects_median_confidence": float(np.median(confidence[objects])) if objects.any() else None}


def margin_buckets(margin: np.ndarray, rate) -> dict:
    """``rate(mask)`` for each bucket of ``MARGIN_EDGES``, keyed "[lo, hi)" (the last one closed)."""
    buckets = {}
    last = len(MARGIN_EDGES) - 2
    for i, (lo, hi) in enumerate(zip(MARGIN_EDGES, MARGIN_EDGES[1:])):
        upper = margin <= hi if i == last else margin < hi
        buckets[f"[{lo}, {hi}{']' if i == last else ')'}"] = rate((margin >= lo) & upper)
    return buckets
