"""engine.builder.error_budget: each source of int8 error alone, on hand-made QDQ graphs with
known answers, and in a real build's report."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from photos import PHOTOS, write_photo
from tinynet import write_tiny_onnx

from engine.builder.build import build
from engine.builder.config import parse_config
from engine.builder.error_budget import activations_alone, error_budget, limited_by, simulated_outputs, weights_alone

SCALE, ZERO = 0.1, 128  # activation quantization: uint8, representable range [-12.8, 12.7]
W_SCALE = 0.05
W_INT = np.array([[3, -7], [12, 5], [-20, 9], [1, -1]], np.int8)
W_FLOAT = W_INT.astype(np.float32) * W_SCALE + np.float32(0.013)  # off the int8 grid


def qdq_model() -> onnx.ModelProto:
    """x[1, 4] -> QuantizeLinear -> DequantizeLinear -> MatMul with int8 weights -> y[1, 2]."""
    inits = [numpy_helper.from_array(np.asarray(SCALE, np.float32), "x_scale"),
             numpy_helper.from_array(np.asarray(ZERO, np.uint8), "x_zero"),
             numpy_helper.from_array(W_INT, "w_quantized"),
             numpy_helper.from_array(np.asarray(W_SCALE, np.float32), "w_scale")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["x_q"], name="x_q"),
             helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zero"], ["x_dq"], name="x_dq"),
             helper.make_node("DequantizeLinear", ["w_quantized", "w_scale"], ["w_dq"], name="w_dq"),
             helper.make_node("MatMul", ["x_dq", "w_dq"], ["y"], name="matmul")]
    return _model(nodes, inits)


def float_model() -> onnx.ModelProto:
    return _model([helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul")],
                  [numpy_helper.from_array(W_FLOAT, "w")])


def _model(nodes, inits) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


# Off-grid values (rounding shows) and two outside the range (clipping shows).
X = np.array([[0.1234, -0.5678, 20.0, -30.0]], np.float32)


def quantized(x):
    return (np.clip(np.rint(x / SCALE) + ZERO, 0, 255) - ZERO) * SCALE


def test_weights_alone_clips_activations_but_does_not_round_them():
    model = weights_alone(qdq_model())
    assert not [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    (y,) = simulated_outputs(model, [X], threads=1)
    expected = np.clip(X, -ZERO * SCALE, (255 - ZERO) * SCALE) @ (W_INT.astype(np.float32) * W_SCALE)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(y, quantized(X) @ (W_INT.astype(np.float32) * W_SCALE), atol=1e-3), \
        "the activation rounding is gone"


def test_activations_alone_gives_the_layers_their_float_weights_back():
    model = activations_alone(qdq_model(), float_model())
    (y,) = simulated_outputs(model, [X], threads=1)
    np.testing.assert_allclose(y, quantized(X) @ W_FLOAT, rtol=1e-5, atol=1e-5)


def test_error_budget_reports_each_source_against_the_reference():
    batches = [X, X * 0.5]
    reference = [b @ W_FLOAT for b in batches]
    budget = error_budget(float_model(), qdq_model(), batches, reference, threads=1)
    assert budget["images"] == 2 and budget["simulated"]

    def snr(outputs):
        signal = sum(float(np.square(r).sum()) for r in reference)
        return 10 * np.log10(signal / sum(float(np.square(r - o).sum()) for r, o in zip(reference, outputs)))

    w = W_INT.astype(np.float32) * W_SCALE
    expected = {"weights_alone": [np.clip(b, -12.8, 12.7) @ w for b in batches],
                "activations_alone": [quantized(b) @ W_FLOAT for b in batches],
                "both": [quantized(b) @ w for b in batches]}
    for source, outputs in expected.items():
        assert budget[source]["output_snr_db"] == pytest.approx(snr(outputs), abs=0.01)
        assert 0 <= budget[source]["top1_agreement"] <= 1
    gap = snr(expected["activations_alone"]) - snr(expected["weights_alone"])
    assert budget["limited_by"] == ("weights" if gap >= 3 else "activations" if gap <= -3 else "both")


def test_limited_by_names_the_source_with_at_least_twice_the_noise():
    assert limited_by(18.0, 28.0) == "weights"
    assert limited_by(30.0, 26.0) == "activations"
    assert limited_by(25.0, 26.5) == limited_by(26.5, 25.0) == "both"


def test_int8_build_reports_its_error_budget(tmp_path):
    for j, photo in enumerate(PHOTOS * 3):
        write_photo(tmp_path / "images" / photo / f"{photo}_{j}.jpg", photo, size=(40 + 7 * j, 36 + 5 * j))
    write_tiny_onnx(tmp_path / "tinynet.onnx", size=32, classes=10)
    cfg = parse_config({"model": {"onnx": str(tmp_path / "tinynet.onnx")}, "dtype": "int8",
                        "quantization": {"method": "max"},
                        "calibration": {"path": str(tmp_path / "images"), "count": 4},
                        "check": {"count": 5}, "output": str(tmp_path / "out")})
    report = json.loads((build(cfg, progress=False) / "build.json").read_text())
    check = report["check"]
    budget = check["error_budget"]
    assert budget["images"] == check["images"] == 5
    assert set(budget) == {"images", "simulated", "weights_alone", "activations_alone", "both", "limited_by"}
    # With no int16 saturation (reduce_range on AVX2, VNNI elsewhere) the int8 kernels
    # compute what the float arithmetic does, up to their own rounding of the requantization.
    assert budget["both"]["output_snr_db"] == pytest.approx(check["output_snr_db"], abs=1.5)
    assert budget["activations_alone"]["output_snr_db"] > budget["both"]["output_snr_db"]
    assert budget["weights_alone"]["output_snr_db"] > budget["both"]["output_snr_db"]
    assert "error_budget_s" in report["timings_s"]


def test_weights_alone_refuses_a_quantized_tensor_read_by_anything_but_a_dequantizer():
    model = qdq_model()
    model.graph.node.append(helper.make_node("Identity", ["x_q"], ["x_q_copy"], name="raw_reader"))
    with pytest.raises(ValueError, match="x_q is read by raw_reader"):
        weights_alone(model)
