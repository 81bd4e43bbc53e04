"""Turn a validated request's payload into a uint8 HWC RGB image, refusing bombs.

Every failure raises ``engine.decode.DecodeError`` naming the request and the reason, so
the server can answer the client and carry on.
"""
from __future__ import annotations

import io
import zipfile

import numpy as np

from engine.decode import NPZ_KEY, DecodeError, decode_image
from engine.serving.protocol import Request

MAGIC = {"jpeg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n"}


def decode_payload(request: Request, *, max_pixels: int) -> np.ndarray:
    """The request's image as uint8 HWC RGB (C-contiguous or a view the kernels accept)."""
    name = f"request {request.id!r}"
    payload = request.payload
    if request.encoding == "raw":
        return np.frombuffer(payload, np.uint8).reshape(request.shape)
    if request.encoding == "npz":
        return load_npz_bytes(payload, name=name, max_pixels=max_pixels)
    magic = MAGIC[request.encoding]
    if bytes(payload[: len(magic)]) != magic:
        raise DecodeError(name, f"payload is not a {request.encoding.upper()} image (wrong signature)")
    return decode_image(payload, name=name, max_pixels=max_pixels)


def load_npz_bytes(payload, *, name: str, max_pixels: int) -> np.ndarray:
    """``input_0`` of an npz archive held in memory, as uint8 HWC.

    The array's declared shape is checked against ``max_pixels`` before any of it is
    read, so a small compressed archive cannot expand into gigabytes.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(payload))
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise DecodeError(name, f"payload is not an npz archive ({e})") from None
    with archive:
        member = NPZ_KEY + ".npy"
        if member not in archive.namelist():
            keys = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
            raise DecodeError(name, f"npz has no key {NPZ_KEY!r} (keys: {', '.join(keys) or 'none'})")
        try:
            with archive.open(member) as fp:
                version = np.lib.format.read_magic(fp)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
                else:
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
                array = _read_checked(fp, shape, fortran, dtype, name, max_pixels)
        except DecodeError:
            raise
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, RuntimeError) as e:
            raise DecodeError(name, f"cannot read {NPZ_KEY!r} from the npz ({e})") from None
    return _to_hwc(array)


def _read_checked(fp, shape, fortran, dtype, name, max_pixels) -> np.ndarray:
    if dtype != np.uint8:
        raise DecodeError(name, f"{NPZ_KEY!r} has dtype {dtype}, expected uint8")
    if len(shape) != 3 or 3 not in (shape[0], shape[-1]) or min(shape) < 1:
        raise DecodeError(name, f"{NPZ_KEY!r} has shape {shape}, expected CHW or HWC with 3 channels")
    count = int(np.prod(shape))
    if count // 3 > max_pixels:
        raise DecodeError(name, f"{NPZ_KEY!r} holds {count // 3} pixels, above the limit of {max_pixels}")
    data = fp.read(count)
    if len(data) != count:
        raise DecodeError(name, f"{NPZ_KEY!r} is truncated: {len(data)} of {count} bytes")
    order = "F" if fortran else "C"
    return np.frombuffer(data, np.uint8).reshape(shape, order=order)


def _to_hwc(array: np.ndarray) -> np.ndarray:
    if array.shape[0] == 3:
        return np.ascontiguousarray(array.transpose(1, 2, 0))
    return np.ascontiguousarray(array)
