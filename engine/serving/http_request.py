"""Parse a KServe v2 HTTP inference request (JSON, or JSON then binary tensors) into checked parts.

Every field is checked for its JSON type before use: a fuzzer found requests whose wrong
types (an integer where a BYTES element belongs, a list where ``parameters`` belongs)
reached code that raised ``TypeError`` and answered 500. Anything malformed raises
:class:`~engine.serving.kserve.KServeError` naming the field (400).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from engine.serving.kserve import KServeError, OutputRequest


@dataclass
class InferRequest:
    """A parsed inference request: ``inputs`` as (name, datatype, shape, data), ``outputs`` as (name, request)."""

    id: str | None
    inputs: list
    outputs: list
    binary_output: bool  # the request-level binary_data_output parameter


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parameters(holder: dict, where: str) -> dict:
    params = holder.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise KServeError(f"{where}: 'parameters' must be a JSON object, got {type(params).__name__}")
    return params


def _bool_param(params: dict, key: str, where: str) -> bool:
    value = params.get(key, False)
    if not isinstance(value, bool):
        raise KServeError(f"{where}: parameter {key!r} must be true or false, got {value!r}")
    return value


def split_body(body: bytes, header_length: bytes | None) -> tuple[dict, memoryview]:
    """The JSON inference request and the binary data after it."""
    if header_length is None:
        json_part, binary = body, memoryview(b"")
    else:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise KServeError(f"Inference-Header-Content-Length {header_length.decode(errors='replace')!r} "
                              f"must be a byte count within the {len(body)}-byte body")
        json_part, binary = body[:int(header_length)], memoryview(body)[int(header_length):]
    try:
        request = json.loads(json_part)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise KServeError(f"inference request is not valid JSON ({str(e)[:200]})") from None
    if not isinstance(request, dict):
        raise KServeError(f"inference request must be a JSON object, got {type(request).__name__}")
    return request, binary


def parse_infer_request(request: dict, binary: memoryview) -> InferRequest:
    """The checked parts of a JSON inference request; binary tensors are cut from ``binary``."""
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise KServeError(f"inference request: 'id' must be a string, got {type(request_id).__name__}")
    raw_inputs = request.get("inputs")
    if not isinstance(raw_inputs, list):
        raise KServeError("inference request: 'inputs' must be a list")
    inputs, offset = [], 0
    for index, tensor in enumerate(raw_inputs):
        name, data, offset = _input(index, tensor, binary, offset)
        inputs.append((name, tensor["datatype"], tensor["shape"], data))
    if offset != len(binary):
        raise KServeError(f"{len(binary) - offset} bytes of binary data after the last input")
    raw_outputs = request.get("outputs", [])
    if not isinstance(raw_outputs, list):
        raise KServeError("inference request: 'outputs' must be a list")
    outputs = [_output(index, tensor) for index, tensor in enumerate(raw_outputs)]
    binary_output = _bool_param(_parameters(request, "inference request"), "binary_data_output", "inference request")
    return InferRequest(request_id, inputs, outputs, binary_output)


def _input(index: int, tensor, binary: memoryview, offset: int) -> tuple[str, object, int]:
    if not isinstance(tensor, dict) or not {"name", "datatype", "shape"} <= tensor.keys():
        raise KServeError(f"inference request: input {index} needs 'name', 'datatype' and 'shape'")
    name, datatype = tensor["name"], tensor["datatype"]
    if not isinstance(name, str) or not isinstance(datatype, str):
        raise KServeError(f"inference request: input {index}'s 'name' and 'datatype' must be strings")
    where = f"input {name!r}"
    size = _parameters(tensor, where).get("binary_data_size")
    if size is not None:
        if not _is_int(size) or size < 0:
            raise KServeError(f"{where}: binary_data_size {size!r} must be a non-negative integer")
        if offset + size > len(binary):
            raise KServeError(f"{where}: binary_data_size {size} runs past the body's "
                              f"{len(binary) - offset} remaining bytes")
        return name, binary[offset:offset + size], offset + size
    if "data" not in tensor:
        raise KServeError(f"{where}: neither 'data' nor binary_data_size")
    leaves = _flatten(tensor["data"])
    if datatype == "BYTES":
        if not all(isinstance(leaf, str) for leaf in leaves):
            raise KServeError(f"{where}: BYTES data must be strings")
        return name, [leaf.encode("utf-8", "surrogateescape") for leaf in leaves], offset
    if not all(_is_int(leaf) for leaf in leaves):
        raise KServeError(f"{where}: {datatype} data must be integers")
    return name, leaves, offset


def _output(index: int, tensor) -> tuple[str, OutputRequest]:
    if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
        raise KServeError(f"inference request: output {index} needs a string 'name'")
    where = f"output {tensor['name']!r}"
    params = _parameters(tensor, where)
    classification = params.get("classification", 0)
    if not _is_int(classification) or classification < 0:
        raise KServeError(f"{where}: classification {classification!r} must be a non-negative integer")
    return tensor["name"], OutputRequest(classification, _bool_param(params, "binary_data", where))


def _flatten(data) -> list:
    """The leaves of nested JSON lists, in order (a scalar is one leaf)."""
    if not isinstance(data, list):
        return [data]
    leaves, stack = [], [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            leaves.append(item)
        else:
            stack.pop()
    return leaves
