"""Tiny seeded classifiers written straight as ONNX (no torch export), each with its
model-info JSON: the models of the tests and of the benchmarks that measure everything
but the model (server overhead, pipeline plumbing).

- ``write_tiny_onnx``: conv3x3(3->8, stride 2) + relu -> conv3x3(8->16, stride 2) + relu
  -> global average pool -> gemm(16 -> classes); ``tiny_torch_module`` is the same net in
  torch; a fraction of any zoo model's cost per image.
- ``write_inverted_residual_onnx``: conv3x3(3->8, stride 2) + relu -> conv1x1(8->16) +
  clip(0, 6) -> depthwise conv3x3 + clip(0, 6) -> conv1x1(16->8) -> global average pool
  -> gemm(8 -> classes), MobileNet's block; with ``crowded_pairs`` each output channel of
  the last 1x1 convolution has its two largest weights, of one sign, on neighbouring
  input channels (2j, 2j+1), the layout that caps x86 int8 weight ranges; with
  ``computed_padding`` its 3x3 convolutions are padded by Pad nodes whose amounts the
  graph computes from the input's shape, as EfficientNet exports do.
- ``write_pool_linear_onnx``: global average pool -> gemm(3 -> classes), next to no work
  per image: the model for measuring the plumbing around a model.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from engine.data.dataconfig import DataConfig, ModelInfo


def tiny_weights(seed: int = 0, classes: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "w1": (rng.standard_normal((8, 3, 3, 3)) * 0.4).astype(np.float32),
        "b1": (rng.standard_normal(8) * 0.1).astype(np.float32),
        "w2": (rng.standard_normal((16, 8, 3, 3)) * 0.2).astype(np.float32),
        "b2": (rng.standard_normal(16) * 0.1).astype(np.float32),
        "wf": (rng.standard_normal((classes, 16)) * 0.5).astype(np.float32),
        "bf": (rng.standard_normal(classes) * 0.1).astype(np.float32),
    }


def write_tiny_onnx(path, *, size: int = 32, classes: int = 10, seed: int = 0, batch="batch",
                    with_info: bool = True, resize: int | None = None) -> Path:
    """Write the tiny net to ``path`` (and its model-info JSON beside it, with class names
    ``tiny class <i>`` and ``resize`` defaulting to ``size + size // 8``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
    ]
    graph = _pooled_classifier("tinynet", body, "r2", tiny_weights(seed, classes), batch, size, classes)
    return _save(graph, path, size, classes, seed, batch, with_info, resize)


def _pooled_classifier(name: str, body: list, features: str, weights: dict[str, np.ndarray], batch, size: int,
                       classes: int):
    """The graph of ``body`` (from ``input``) then global average pool -> gemm(``wf``,
    ``bf``) -> ``output``, with ``weights`` as initializers (the float ones as float32)."""
    head = [helper.make_node("GlobalAveragePool", [features], ["p"]),
            helper.make_node("Flatten", ["p"], ["f"], axis=1),
            helper.make_node("Gemm", ["f", "wf", "bf"], ["output"], transB=1)]
    return helper.make_graph(
        body + head,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, classes])],
        initializer=[numpy_helper.from_array(v.astype(np.float32) if v.dtype.kind == "f" else v, k)
                     for k, v in weights.items()],
    )


def same_padding(data: str, padded: str, kernel: int, stride: int) -> tuple[list[onnx.NodeProto], dict]:
    """Nodes that pad ``data`` into ``padded`` as TensorFlow's "same" padding does, with
    the amounts computed at run time from the input's shape (as exports of EfficientNet's
    convolutions do): per spatial axis total = (kernel - 1) - (size - 1) mod stride, the
    smaller half in front. Returns the nodes and the int64 constants they read."""
    constants = {f"{padded}_{k}": np.asarray(v, np.int64) for k, v in
                 {"one": 1, "stride": stride, "span": kernel - 1, "two": 2, "axis0": [0], "zeros": [0, 0]}.items()}
    c = {k: f"{padded}_{k}" for k in ("one", "stride", "span", "two", "axis0", "zeros")}
    nodes = [helper.make_node("Shape", [data], [f"{padded}_shape"])]
    begins, ends = [], []
    for axis in (2, 3):
        p = f"{padded}_{axis}"
        constants[f"{p}_index"] = np.asarray(axis, np.int64)
        nodes += [
            helper.make_node("Gather", [f"{padded}_shape", f"{p}_index"], [f"{p}_size"]),
            helper.make_node("Sub", [f"{p}_size", c["one"]], [f"{p}_last"]),
            helper.make_node("Mod", [f"{p}_last", c["stride"]], [f"{p}_rest"]),
            helper.make_node("Sub", [c["span"], f"{p}_rest"], [f"{p}_total"]),
            helper.make_node("Div", [f"{p}_total", c["two"]], [f"{p}_begin"]),
            helper.make_node("Sub", [f"{p}_total", f"{p}_begin"], [f"{p}_end"]),
            helper.make_node("Unsqueeze", [f"{p}_begin", c["axis0"]], [f"{p}_begin_1d"]),
            helper.make_node("Unsqueeze", [f"{p}_end", c["axis0"]], [f"{p}_end_1d"]),
        ]
        begins.append(f"{p}_begin_1d")
        ends.append(f"{p}_end_1d")
    nodes += [helper.make_node("Concat", [c["zeros"], *begins, c["zeros"], *ends], [f"{padded}_amounts"], axis=0),
              helper.make_node("Pad", [data, f"{padded}_amounts"], [padded], mode="constant")]
    return nodes, constants


def write_inverted_residual_onnx(path, *, size: int = 32, classes: int = 10, seed: int = 0, batch="batch",
                                 crowded_pairs: bool = True, computed_padding: bool = False) -> Path:
    """Write the inverted-residual net to ``path`` (and its model-info JSON beside it).
    With ``computed_padding`` its two 3x3 convolutions get TensorFlow's "same" padding from
    :func:`same_padding` instead of their own symmetric pads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    project = rng.standard_normal((8, 16)) * 0.1
    if crowded_pairs:
        for out in range(8):
            sign = 1 if out % 2 else -1
            project[out, 2 * out:2 * out + 2] = sign * np.array([1.0, 0.9])
    weights = {
        "w1": rng.standard_normal((8, 3, 3, 3)) * 0.4, "b1": rng.standard_normal(8) * 0.1,
        "w2": rng.standard_normal((16, 8, 1, 1)) * 0.4, "b2": rng.standard_normal(16) * 0.1 + 0.5,
        "w3": rng.standard_normal((16, 1, 3, 3)) * 0.3, "b3": rng.standard_normal(16) * 0.1,
        "w4": project.reshape(8, 16, 1, 1), "b4": rng.standard_normal(8) * 0.1,
        "wf": rng.standard_normal((classes, 8)) * 0.5, "bf": rng.standard_normal(classes) * 0.1,
        "low": np.asarray(0.0), "high": np.asarray(6.0),
    }
    if computed_padding:
        stem_pad, stem_constants = same_padding("input", "input_padded", 3, 2)
        depthwise_pad, depthwise_constants = same_padding("r2", "r2_padded", 3, 1)
        weights |= stem_constants | depthwise_constants
        stem = [*stem_pad, helper.make_node("Conv", ["input_padded", "w1", "b1"], ["c1"], strides=[2, 2])]
        depthwise = [*depthwise_pad, helper.make_node("Conv", ["r2_padded", "w3", "b3"], ["c3"], group=16)]
    else:
        stem = [helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2])]
        depthwise = [helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"], pads=[1, 1, 1, 1], group=16)]
    body = [
        *stem,
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"]),
        helper.make_node("Clip", ["c2", "low", "high"], ["r2"]),
        *depthwise,
        helper.make_node("Clip", ["c3", "low", "high"], ["r3"]),
        helper.make_node("Conv", ["r3", "w4", "b4"], ["c4"]),
    ]
    graph = _pooled_classifier("inverted_residual", body, "c4", weights, batch, size, classes)
    return _save(graph, path, size, classes, seed, batch, True, None)


def write_pool_linear_onnx(path, *, size: int = 224, classes: int = 1000, seed: int = 0, batch="batch",
                           resize: int | None = None) -> Path:
    """Write the pool + linear net to ``path`` (and its model-info JSON beside it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    weights = {"w": rng.standard_normal((classes, 3)).astype(np.float32),
               "b": rng.standard_normal(classes).astype(np.float32)}
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
         helper.make_node("Gemm", ["flat", "w", "b"], ["output"], transB=1)],
        "pool_linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, classes])],
        initializer=[numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    return _save(graph, path, size, classes, seed, batch, True, resize)


def _save(graph, path: Path, size: int, classes: int, seed: int, batch, with_info: bool,
          resize: int | None) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    if with_info:
        config = DataConfig(input_size=(3, size, size), resize=resize or size + size // 8, crop=size,
                            num_classes=classes)
        ModelInfo(
            name=graph.name, library="test", model_file=path.name,
            input_shape=[batch, 3, size, size], output_shapes=[[batch, classes]],
            data_config=config, class_names=[f"tiny class {i}" for i in range(classes)],
            weights={"random": True, "seed": seed}, extra={"weights_label": f"random weights (seed {seed})"},
        ).save(ModelInfo.path_for(path))
    return path


def tiny_torch_module(seed: int = 0, classes: int = 10):
    """The same network as a torch module with the same weights."""
    import torch
    from torch import nn

    w = tiny_weights(seed, classes)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, classes),
    )
    with torch.no_grad():
        for layer, (wk, bk) in zip((net[0], net[2], net[6]), (("w1", "b1"), ("w2", "b2"), ("wf", "bf"))):
            layer.weight.copy_(torch.from_numpy(w[wk]))
            layer.bias.copy_(torch.from_numpy(w[bk]))
    return net.eval()
