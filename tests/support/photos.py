"""Real photo files for tests: scikit-image's bundled photos written as JPEG/PNG/BMP/WebP.

``write_photo(path, "chelsea", mode="P")`` writes the cat as a palette image in the
format the suffix names. Modes are PIL modes made from the RGB photo; ``RGBA``/``LA``
get a real alpha ramp (so encoders keep the channel), ``I;16`` is the grayscale photo
scaled to the full 16-bit range (``L * 257``). ``write_png16_rgb`` writes a 48-bit RGB PNG,
which PIL cannot write itself.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import skimage.data
from PIL import Image

PHOTOS = ("chelsea", "coffee", "astronaut")

# The modes each format can store and reopen as themselves (WebP always reopens as RGB
# or RGBA; JPEG stores "1" as L).
FORMAT_MODES = {
    ".jpg": ("RGB", "L", "CMYK"),
    ".png": ("RGB", "L", "1", "P", "RGBA", "LA", "I;16"),
    ".bmp": ("RGB", "L", "1", "P"),
    ".webp": ("RGB", "RGBA"),
}

EXIF_ORIENTATION = 0x0112


def photo_array(name: str = "chelsea", size: tuple[int, int] | None = None) -> np.ndarray:
    """The photo as uint8 HWC RGB, resized to ``size`` = (width, height) when given."""
    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; choose from {', '.join(PHOTOS)}")
    image = getattr(skimage.data, name)()
    if size is not None:
        image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    return image


def photo_image(name: str = "chelsea", mode: str = "RGB",
                size: tuple[int, int] | None = None) -> Image.Image:
    """The photo as a PIL image in ``mode``."""
    rgb = Image.fromarray(photo_array(name, size))
    if mode in ("RGBA", "LA"):
        image = rgb.convert(mode)
        ramp = np.linspace(0, 255, rgb.width, dtype=np.float64).astype(np.uint8)
        image.putalpha(Image.fromarray(np.tile(ramp, (rgb.height, 1))))
        return image
    if mode == "I;16":
        gray = np.asarray(rgb.convert("L")).astype(np.uint16) * 257
        return Image.fromarray(gray)
    if mode == "P":
        return rgb.quantize(colors=200)
    return rgb.convert(mode)


def write_photo(path: str | Path, name: str = "chelsea", *, mode: str = "RGB",
                size: tuple[int, int] | None = None, exif_orientation: int | None = None,
                **save_options) -> Path:
    """Write the photo to ``path`` (format from its suffix); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = photo_image(name, mode, size)
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = exif_orientation
        save_options["exif"] = exif
    image.save(path, **save_options)
    return path


def write_class_folders(root: str | Path) -> Path:
    """Six photos in two ImageNet class folders (``n01440764``: chelsea, ``n01443537``:
    coffee), three sizes each, as ``val/<wnid>/`` lays them out; returns ``root``."""
    root = Path(root)
    for folder, name in (("n01440764", "chelsea"), ("n01443537", "coffee")):
        for i in range(3):
            write_photo(root / folder / f"{name}_{i}.jpg", name, size=(48 + 8 * i, 40))
    return root


def write_png16_rgb(path: str | Path, name: str = "chelsea",
                    size: tuple[int, int] | None = None) -> Path:
    """A 16-bit-per-channel RGB PNG of the photo (values ``v * 257``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb16 = photo_array(name, size).astype(np.uint16) * 257
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb16[:, :, ::-1])):
        raise OSError(f"cv2 could not write {path}")
    return path
