"""Decoding items (image files and seed-style ``.npz`` files) to uint8 HWC RGB arrays.

Images are decoded the way a torchvision user's ``pil_loader`` does it,
``Image.open(f).convert("RGB")``, so the pixels that enter preprocessing are the pixels
the reference pipeline sees. That includes PIL's own conversions: palette and grayscale
images are expanded, alpha is dropped (not composited), CMYK JPEGs go through PIL's
CMYK->RGB formula, and EXIF orientation is ignored. One departure: a 16-bit grayscale
PNG (PIL mode ``I;16``) is scaled to 8 bits by keeping the high byte (``v >> 8``), which
is what torchvision's ``decode_png`` + ``to_dtype(uint8, scale=True)`` gives and what
PIL itself does for 16-bit RGB PNGs; PIL's ``convert("RGB")`` would clip it at 255,
turning a normally exposed 16-bit photo almost entirely white. Decoding uses stock Pillow; pillow-simd is
only a resize baseline for the benchmarks, in its own environment, and its decoders are
the same libjpeg/libpng/libwebp anyway. Truncated files are errors as long as PIL's
process-wide ``ImageFile.LOAD_TRUNCATED_IMAGES`` keeps its default, False.
"""
from __future__ import annotations

import io
import math
import os
import struct
import zipfile
from pathlib import Path

import numpy as np

# Importing these registers their formats in Image.OPEN, which _open_image reads.
from PIL import BmpImagePlugin, Image, JpegImagePlugin, PngImagePlugin, WebPImagePlugin  # noqa: F401

from engine.data import fast_decode
from engine.data.datalist import IMAGE_SUFFIXES
from engine.data.tar_shards import MemberReadError, MemberRef, parse_ref, read_member

# PIL's own default (about 89.5 Mpx): a 1 GiB RGBA image. Above it we raise, where PIL
# would only warn.
DEFAULT_MAX_PIXELS = 89_478_485

# The formats this engine accepts, tried in this order on the file's leading bytes.
IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "WEBP")

NPZ_KEY = "input_0"
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK"

# A 16-bit grayscale PNG opens as I;16 (as "I" in older Pillow versions; PNG has no
# deeper integers, so "I" from PNG is 16-bit too).
_GRAY16_MODES = ("I;16", "I;16B", "I;16L", "I")

# What PIL's plugins raise for malformed data.
_PIL_DATA_ERRORS = (OSError, ValueError, SyntaxError, IndexError, TypeError, EOFError,
                    struct.error)


class DecodeError(ValueError):
    """An item that cannot be turned into an RGB image: names the item and the reason."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


def _open_image(fp, name: str, filename: str) -> Image.Image:
    """Open (header only) with the accepted formats' plugins.

    ``Image.open`` would do the same, plus a decompression-bomb check against PIL's
    process-wide ``Image.MAX_IMAGE_PIXELS``; calling the registered plugin factories
    directly lets each caller apply its own limit without touching that global.
    ``filename`` must be the file ``fp`` reads, or empty: PIL memory-maps it to load
    uncompressed images.
    """
    prefix = fp.read(16)
    for fmt in IMAGE_FORMATS:
        factory, accept = Image.OPEN[fmt]
        accepted = accept(prefix) if accept else True
        if not accepted or isinstance(accepted, str):
            continue
        fp.seek(0)
        try:
            return factory(fp, filename)
        except _PIL_DATA_ERRORS as e:
            raise DecodeError(name, f"corrupt {fmt} header ({e})") from None
    if not prefix:
        raise DecodeError(name, "empty file")
    raise DecodeError(name, "not a JPEG, PNG, BMP or WebP image")


def _check_pixels(im: Image.Image, name: str, max_pixels: int | None) -> None:
    width, height = im.size
    if width < 1 or height < 1:
        raise DecodeError(name, f"image has no pixels ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise DecodeError(
            name, f"image is {width}x{height} = {width * height} pixels, above the "
                  f"decompression-bomb limit of {max_pixels} (raise --max-pixels to allow it)")


def _gray16_to_rgb(im: Image.Image) -> np.ndarray:
    """16-bit gray to 8-bit RGB by its high byte (see the module docstring)."""
    gray8 = (np.clip(np.asarray(im).astype(np.int64), 0, 65535) >> 8).astype(np.uint8)
    return np.repeat(gray8[:, :, None], 3, axis=2)


def _decode_stream(fp, name: str, filename: str, max_pixels: int | None,
                   draft: fast_decode.Draft | None = None) -> np.ndarray:
    im = _open_image(fp, name, filename)
    try:
        _check_pixels(im, name, max_pixels)
        fast_decode.apply(im, draft)
        try:
            im.load()
            if im.mode in _GRAY16_MODES:
                return _gray16_to_rgb(im)
            rgb = im if im.mode == "RGB" else im.convert("RGB")
        except _PIL_DATA_ERRORS as e:
            raise DecodeError(name, f"corrupt or truncated {im.format} data ({e})") from None
        return np.asarray(rgb)
    finally:
        im.close()


def decode_image(source: str | os.PathLike | bytes, *, name: str | None = None,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 draft: fast_decode.Draft | None = None) -> np.ndarray:
    """Decode a JPEG, PNG, BMP or WebP file (a path, or its bytes) to uint8 HWC RGB.

    The pixels equal ``np.asarray(Image.open(source).convert("RGB"))``. ``name`` labels
    errors for bytes input (default ``<bytes>``). Images with more than ``max_pixels``
    pixels are refused before their data is decoded; ``None`` disables the limit. The
    returned array is read-only. Raises ``DecodeError`` for anything unreadable. With a
    ``draft`` (``--fast-decode``), a JPEG far larger than it decodes at a reduced DCT
    scale instead (:mod:`engine.data.fast_decode`); the limit applies to the full size.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _decode_stream(io.BytesIO(source), name or "<bytes>", "", max_pixels, draft)
    filename = os.fspath(source)
    name = name or filename
    try:
        fp = open(filename, "rb")
    except OSError as e:
        raise DecodeError(name, _os_reason(e)) from None
    with fp:
        return _decode_stream(fp, name, filename, max_pixels, draft)


def load_npz(source: str | os.PathLike | bytes, *, name: str | None = None,
             max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The image under ``input_0`` of a seed-style ``.npz`` (a path, or its bytes), uint8 HWC.

    The array is CHW (what image2npz writes; returned as a transposed view, no copy), or
    HWC when its last axis is 3 and its first is not. Its declared shape is checked
    (including against ``max_pixels``; ``None`` disables) before any data is read, so a
    small compressed archive cannot expand into gigabytes. Uncompressed members (what
    ``np.savez`` writes) are read straight into the array, skipping ``zipfile``'s CRC
    pass, which costs more than the read itself; their sizes are still checked.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        name = name or "<bytes>"
        return _to_hwc(_read_npz_input(io.BytesIO(source), name, max_pixels))
    name = name or os.fspath(source)
    try:
        with open(source, "rb") as f:
            return _to_hwc(_read_npz_input(f, name, max_pixels))
    except OSError as e:
        raise DecodeError(name, _os_reason(e)) from None


def _read_npz_input(f, name: str, max_pixels: int | None) -> np.ndarray:
    magic = f.read(len(_NPY_MAGIC))
    if magic == _NPY_MAGIC:
        raise DecodeError(name, "not an npz archive (a bare .npy array)")
    if not magic.startswith(_ZIP_MAGIC):
        raise DecodeError(name, "not an npz archive (no zip signature)")
    f.seek(0)
    try:
        archive = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, ValueError, EOFError) as e:
        raise DecodeError(name, f"not a readable npz archive ({e})") from None
    with archive:
        try:
            info = archive.getinfo(NPZ_KEY + ".npy")
        except KeyError:
            keys = ", ".join(n.removesuffix(".npy") for n in archive.namelist()) or "none"
            raise DecodeError(name, f"no key {NPZ_KEY!r} (keys: {keys})") from None
        try:
            if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 0x1:
                return _read_stored_member(f, info, name, max_pixels)
            with archive.open(info) as member:
                _check_npy_header(*_read_npy_header(member), name, max_pixels)
                member.seek(0)
                return np.lib.format.read_array(member, allow_pickle=False)
        except DecodeError:
            raise
        except (ValueError, OSError, EOFError, struct.error, zipfile.BadZipFile) as e:
            raise DecodeError(name, f"cannot read {NPZ_KEY!r} ({e})") from None


def _read_stored_member(f, info: zipfile.ZipInfo, name: str, max_pixels: int | None) -> np.ndarray:
    """An uncompressed ``.npy`` member, read with one ``readinto`` into a fresh array."""
    f.seek(info.header_offset)
    local = f.read(30)
    if len(local) != 30 or not local.startswith(b"PK\x03\x04"):
        raise ValueError("bad zip local header")
    name_length, extra_length = struct.unpack("<HH", local[26:30])
    data_start = info.header_offset + 30 + name_length + extra_length
    f.seek(data_start)
    shape, fortran_order, dtype = _read_npy_header(f)
    _check_npy_header(shape, fortran_order, dtype, name, max_pixels)
    count = math.prod(shape)
    data_bytes = data_start + info.compress_size - f.tell()
    if data_bytes != count:
        raise ValueError(f"member holds {data_bytes} data bytes, its header declares shape "
                         f"{shape} ({count} bytes)")
    array = np.empty(shape[::-1] if fortran_order else shape, np.uint8)
    if f.readinto(memoryview(array.reshape(-1))) != count:
        raise ValueError("file is truncated")
    return array.T if fortran_order else array


def _read_npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")


def _check_npy_header(shape, fortran_order, dtype, name: str, max_pixels: int | None) -> None:
    if dtype != np.uint8:
        raise DecodeError(name, f"{NPZ_KEY!r} has dtype {dtype}, expected uint8")
    if len(shape) != 3:
        raise DecodeError(name, f"{NPZ_KEY!r} has shape {shape}, expected 3 axes (CHW or HWC)")
    if 0 in shape:
        raise DecodeError(name, f"{NPZ_KEY!r} has shape {shape}, which holds no pixels")
    if shape[0] != 3 and shape[-1] != 3:
        raise DecodeError(name, f"{NPZ_KEY!r} has shape {shape}: neither CHW nor HWC with 3 channels")
    pixels = math.prod(shape) // 3
    if max_pixels is not None and pixels > max_pixels:
        raise DecodeError(name, f"{NPZ_KEY!r} has shape {shape} = {pixels} pixels, above the "
                                f"decompression-bomb limit of {max_pixels}")


def _to_hwc(array: np.ndarray) -> np.ndarray:
    """CHW (first axis 3) as a transposed view; HWC as it is. Shapes are checked already."""
    return array.transpose(1, 2, 0) if array.shape[0] == 3 else array


def load_item(path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
              draft: fast_decode.Draft | None = None) -> np.ndarray:
    """A datalist item (``.npz`` or an image file, suffix in any case, or a tar shard's member
    named by a reference of :mod:`engine.data.tar_shards`) as uint8 HWC RGB; ``draft``:
    see ``decode_image``."""
    name = os.fspath(path)
    ref = parse_ref(name)
    if ref is not None:
        return _load_member(ref, max_pixels, draft)
    suffix = Path(name).suffix.lower()
    if suffix == ".npz":
        return load_npz(name, max_pixels=max_pixels)
    if suffix in IMAGE_SUFFIXES:
        return decode_image(name, max_pixels=max_pixels, draft=draft)
    accepted = " ".join(sorted(IMAGE_SUFFIXES | {".npz"}))
    raise DecodeError(name, f"unknown item type {suffix or '(no suffix)'!r} (accepted: {accepted})")


def _load_member(ref: MemberRef, max_pixels: int | None, draft: fast_decode.Draft | None) -> np.ndarray:
    """A shard member's bytes, decoded as its extension says."""
    try:
        data = read_member(ref)
    except MemberReadError as e:
        raise DecodeError(ref.source, str(e).removeprefix(f"{ref.source}: ")) from None
    if ref.extension == "npz":
        return load_npz(data, name=ref.source, max_pixels=max_pixels)
    return decode_image(data, name=ref.source, max_pixels=max_pixels, draft=draft)


def _os_reason(error: OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, IsADirectoryError):
        return "is a directory"
    return error.strerror or str(error)
