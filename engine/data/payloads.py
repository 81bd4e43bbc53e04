"""Items that are not files: what the Python API takes besides paths, and how each crosses
to a preprocess worker.

``engine.Classifier`` and ``engine.preprocess`` take, item by item, a path (``str`` or
``os.PathLike``: npz, JPEG, PNG, BMP, WebP), encoded image bytes, an HWC uint8 RGB array
or a ``PIL.Image``. A path travels as itself; the others travel inside the task message
as small msgpack maps (bytes as bytes, an array as its shape and raw bytes), so a worker
never needs a file the caller did not write. An item that is none of these fails alone,
with a line naming its position and the reason, before it reaches a worker.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from engine.data.decode import DEFAULT_MAX_PIXELS, DecodeError, decode_image, load_item, load_npz
from engine.data.fast_decode import Draft

BYTES, ARRAY = "bytes", "array"


class ItemError(ValueError):
    """An item the API cannot take; the message names the item."""


def describe(item, index: int) -> str:
    """How an item is named in error lines and results: its path, or its position and kind."""
    if isinstance(item, str | os.PathLike):
        return os.fspath(item)
    return f"item {index} ({type(item).__name__})"


def _image_array(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ItemError(f"{name}: array of shape {arr.shape} and dtype {arr.dtype}; expected an HWC uint8 "
                        "RGB image (height, width, 3)")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ItemError(f"{name}: image has no pixels ({arr.shape[1]}x{arr.shape[0]})")
    return arr


def encode(item, index: int):
    """What crosses to a worker for ``item`` (at position ``index``): a path string, or a
    map holding the bytes. Raises :class:`ItemError` for anything else."""
    name = describe(item, index)
    if isinstance(item, str | os.PathLike):
        return os.fspath(item)
    if isinstance(item, bytes | bytearray | memoryview):
        return {"kind": BYTES, "name": name, "data": bytes(item)}
    if isinstance(item, np.ndarray):
        arr = _image_array(item, name)
        return {"kind": ARRAY, "name": name, "shape": list(arr.shape), "data": np.ascontiguousarray(arr).tobytes()}
    if isinstance(item, Image.Image):
        try:
            arr = np.asarray(item.convert("RGB"))
        except (OSError, ValueError) as e:
            raise ItemError(f"{name}: cannot convert the PIL image to RGB ({e})") from None
        return {"kind": ARRAY, "name": name, "shape": list(arr.shape), "data": arr.tobytes()}
    raise ItemError(f"{name}: not an image path, encoded image bytes, HWC uint8 array or PIL image")


@dataclass
class Encoded:
    """A chunk of numbered items as they cross to the workers: the encoded ones, their
    positions in the chunk, and the position and reason of each one refused."""

    items: list = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)


def encode_all(numbered: list[tuple[int, object]]) -> Encoded:
    """:func:`encode` each ``(index, item)``; an item that cannot cross is refused alone."""
    encoded = Encoded()
    for position, (index, item) in enumerate(numbered):
        try:
            encoded.items.append(encode(item, index))
        except ItemError as e:
            encoded.refused.append((position, str(e)))
            continue
        encoded.positions.append(position)
    return encoded


def load(payload, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, draft: Draft | None = None) -> np.ndarray:
    """The uint8 HWC RGB image of an encoded item (what a preprocess worker calls); ``draft``:
    ``--fast-decode`` (see ``decode_image``)."""
    if isinstance(payload, str):
        return load_item(payload, max_pixels=max_pixels, draft=draft)
    kind, name = payload["kind"], payload["name"]
    if kind == BYTES:
        data = payload["data"]
        if data[:2] == b"PK":
            return load_npz(data, name=name, max_pixels=max_pixels)
        return decode_image(data, name=name, max_pixels=max_pixels, draft=draft)
    if kind == ARRAY:
        height, width, channels = payload["shape"]
        if max_pixels is not None and height * width > max_pixels:
            raise DecodeError(name, f"image is {width}x{height} = {height * width} pixels, above the "
                                    f"decompression-bomb limit of {max_pixels}")
        return np.frombuffer(payload["data"], dtype=np.uint8).reshape(height, width, channels)
    raise DecodeError(name, f"unknown item kind {kind!r}")
