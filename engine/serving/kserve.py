"""KServe v2 (Open Inference Protocol) tensors and descriptions, the same for HTTP and gRPC.

The served model has one input and one output:

- ``IMAGE``: ``UINT8`` ``[H, W, 3]`` (one image) or ``[N, H, W, 3]`` (N images of one size),
  or ``BYTES`` ``[N]`` (any shape of N elements) holding encoded JPEG/PNG images. Each image
  becomes one request of the batcher, preprocessed by the same fused kernel as a ZeroMQ one.
  Any H and W are accepted; metadata and config give the crop size, so that tools which
  make up their own inputs (perf_analyzer) need no ``--shape``.
- ``PROBABILITIES``: ``FP32`` ``[N, classes]`` (``[classes]`` for an unbatched UINT8 image);
  with Triton's classification extension (output parameter ``classification`` = k, which
  ``tritonclient``'s ``class_count`` sets) it is instead ``BYTES`` ``[N, k]`` of
  ``"prob:index:name"`` strings, best first.

Every bad request raises :class:`KServeError` with a one-line reason (400 /
INVALID_ARGUMENT).
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

from engine.serving.jobs import Limits, Outcome
from engine.serving.payload import MAGIC
from engine.serving.protocol import Request

INPUT_NAME = "IMAGE"
OUTPUT_NAME = "PROBABILITIES"
SERVER_NAME = "engine.serve"
SERVER_VERSION = "0.1.0"
EXTENSIONS = ["classification", "binary_tensor_data", "model_configuration", "model_repository", "statistics"]
_LENGTH = struct.Struct("<I")


class KServeError(ValueError):
    """A request the KServe front ends refuse; the message names the problem."""


@dataclass
class OutputRequest:
    """What the client asked of the output: the top ``classification`` classes, or all probabilities."""

    classification: int = 0
    binary: bool = False


def split_bytes_elements(raw: bytes) -> list[bytes]:
    """The elements of a BYTES tensor in its binary form (each a 4-byte little-endian length, then the bytes)."""
    elements, offset, view = [], 0, memoryview(raw)
    while offset < len(view):
        if offset + 4 > len(view):
            raise KServeError(f"BYTES tensor: {len(view) - offset} stray bytes where a 4-byte length belongs")
        (size,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + size > len(view):
            raise KServeError(f"BYTES tensor: an element of {size} bytes runs past the tensor's end")
        elements.append(view[offset:offset + size])
        offset += size
    return elements


def join_bytes_elements(elements: list[bytes]) -> bytes:
    return b"".join(_LENGTH.pack(len(e)) + bytes(e) for e in elements)


def _shape(shape) -> tuple[int, ...]:
    if not isinstance(shape, (list, tuple)) or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**31 for d in shape):
        raise KServeError(f"input {INPUT_NAME}: shape {shape!r} must be a list of non-negative integers")
    return tuple(shape)


def image_requests(request_id, datatype: str, shape, data, *, topk: int, limits: Limits) -> tuple[list, bool]:
    """The input tensor as batcher requests, and whether it was batched (N first).

    ``data``: the raw tensor bytes (binary extension, gRPC raw contents) for either type, or
    a list of integers (UINT8) / of byte strings (BYTES) from JSON or typed gRPC contents.
    """
    shape = _shape(shape)
    request_id = f"{INPUT_NAME}" if request_id is None else f"{request_id} {INPUT_NAME}"  # names the image in errors
    if datatype == "UINT8":
        return _uint8_requests(request_id, shape, data, topk, limits)
    if datatype == "BYTES":
        elements = split_bytes_elements(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
        if len(elements) != math.prod(shape):
            raise KServeError(f"input {INPUT_NAME}: shape {list(shape)} holds {math.prod(shape)} elements, "
                              f"the data has {len(elements)}")
        if not elements:
            raise KServeError(f"input {INPUT_NAME}: no images")
        return [_encoded_request(request_id, i, e, topk, limits) for i, e in enumerate(elements)], True
    raise KServeError(f"input {INPUT_NAME}: datatype {datatype!r} is not supported, expected UINT8 or BYTES")


def _uint8_requests(request_id, shape: tuple, data, topk: int, limits: Limits) -> tuple[list, bool]:
    if len(shape) not in (3, 4) or shape[-1] != 3 or min(shape) < 1:
        raise KServeError(f"input {INPUT_NAME}: UINT8 shape {list(shape)} must be [H, W, 3] or [N, H, W, 3]")
    batched = len(shape) == 4
    n, height, width = (shape[0] if batched else 1), shape[-3], shape[-2]
    if height * width > limits.max_pixels:
        raise KServeError(f"input {INPUT_NAME}: image {height}x{width} has more than the "
                          f"{limits.max_pixels} pixels allowed")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        try:
            data = np.asarray(data, dtype=np.int64).reshape(-1)
        except (ValueError, TypeError, OverflowError):
            raise KServeError(f"input {INPUT_NAME}: UINT8 data must be a list of integers in 0..255") from None
        if data.size and (data.min() < 0 or data.max() > 255):
            raise KServeError(f"input {INPUT_NAME}: UINT8 data has values outside 0..255")
        data = data.astype(np.uint8).tobytes()
    size = height * width * 3
    if len(data) != n * size:
        raise KServeError(f"input {INPUT_NAME}: shape {list(shape)} UINT8 needs {n * size} bytes, got {len(data)}")
    if size > limits.max_bytes:
        raise KServeError(f"input {INPUT_NAME}: an image of {size} bytes is above the limit of {limits.max_bytes}")
    view = memoryview(data)
    return [Request(f"{request_id}[{i}]", "raw", view[i * size:(i + 1) * size], topk, (height, width, 3))
            for i in range(n)], batched


def _encoded_request(request_id, index: int, element, topk: int, limits: Limits) -> Request:
    if isinstance(element, str):
        element = element.encode("utf-8", "surrogateescape")
    if not isinstance(element, (bytes, bytearray, memoryview)):
        raise KServeError(f"input {INPUT_NAME}[{index}]: a BYTES element must be bytes, got {type(element).__name__}")
    payload = memoryview(element)
    if len(payload) > limits.max_bytes:
        raise KServeError(f"input {INPUT_NAME}[{index}]: {len(payload)} bytes, above the limit of {limits.max_bytes}")
    head = bytes(payload[:8])
    for encoding, magic in MAGIC.items():
        if head.startswith(magic):
            return Request(f"{request_id}[{index}]", encoding, payload, topk)
    raise KServeError(f"input {INPUT_NAME}[{index}]: not a JPEG or PNG image (wrong signature)")


def check_topk(classification, num_classes: int) -> int:
    is_int = isinstance(classification, int) and not isinstance(classification, bool)
    if not is_int or not 1 <= classification <= num_classes:
        raise KServeError(f"output {OUTPUT_NAME}: classification {classification!r} must be an integer in "
                          f"1..{num_classes}")
    return classification


def output_tensor(outcomes: list[Outcome], wanted: OutputRequest, batched: bool, model) -> tuple[str, list, object]:
    """(datatype, shape, value) of the output: a float32 array, or a list of classification strings."""
    n = len(outcomes)
    if wanted.classification:
        names = model.class_names
        strings = [f"{p:f}:{c}:{names[c]}".encode()
                   for outcome in outcomes for c, p in zip(outcome.indices.tolist(), outcome.probs.tolist())]
        k = wanted.classification
        return "BYTES", ([n, k] if batched else [k]), strings
    probs = np.stack([model.probabilities(outcome.scores) for outcome in outcomes])
    return "FP32", ([n, model.num_classes] if batched else [model.num_classes]), probs


def check_load_parameters(keys) -> None:
    """A repository load may carry a config or model files in Triton; this server loads only
    what the repository folder holds."""
    if any(key == "config" or key.startswith("file:") for key in keys):
        raise KServeError("only parameterless loads are supported (no config or file overrides)")


def server_metadata() -> dict:
    return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS}


def _image_dims(model) -> list[int]:
    """[height, width, 3] of the image the model's crop makes (input_size is authoritative for shapes)."""
    return [*model.config.input_size[1:], 3]


def model_metadata(deployment, versions: list[str]) -> dict:
    """The model's metadata: ``versions`` lists every version served."""
    model = deployment.model
    return {
        "name": deployment.name,
        "versions": versions,
        "platform": model.triton_runtime()["platform"],
        "inputs": [{"name": INPUT_NAME, "datatype": "UINT8", "shape": [-1, *_image_dims(model)]}],
        "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, model.num_classes]}],
    }


def model_config(deployment) -> dict:
    """Triton's model configuration, as its clients (and perf_analyzer) read it."""
    model, batching = deployment.model, deployment.batching
    runtime = model.triton_runtime()
    return {
        "name": deployment.name,
        "platform": runtime["platform"],
        "backend": runtime["backend"],
        "parameters": {"precision": {"string_value": runtime["precision"]}},
        "max_batch_size": batching.max_batch,
        "input": [{"name": INPUT_NAME, "data_type": "TYPE_UINT8", "format": "FORMAT_NHWC",
                   "dims": _image_dims(model)}],
        "output": [{"name": OUTPUT_NAME, "data_type": "TYPE_FP32", "dims": [model.num_classes]}],
        "dynamic_batching": {"max_queue_delay_microseconds": batching.max_queue_delay_us},
        "instance_group": [{"count": batching.instances, "kind": "KIND_CPU"}],
    }
