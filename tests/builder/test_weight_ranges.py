"""engine.builder.weight_ranges: which weight pairs onnxruntime's int8 kernels add in int16 on
this CPU (inputs at 255 through weights built to overflow one pairing), the ranges
chosen from that, and a build that uses them."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from photos import PHOTOS, write_photo
from tinynet import write_tiny_onnx

from engine.builder.build import build
from engine.builder.config import parse_config
from engine.builder.cpu_target import int8_types
from engine.builder.weight_ranges import FULL, PAIR_LIMIT, REDUCED, channel_ranges, pair_sums, widened_weights

CHANNELS, OUTPUTS, WEIGHT_SCALE = 32, 8, 0.01

# The kernel measurements need this machine's CPU to be one without VNNI; the builds below
# choose their target CPU in the config, so they run everywhere.
needs_vpmaddubsw = pytest.mark.skipif(not int8_types().reduce_range,
                                      reason="the int16 pair saturation is x86 without VNNI's")


def qdq_layer(kind: str, weights: np.ndarray, cancel: bool = False) -> tuple[onnx.ModelProto, np.ndarray, float]:
    """Input (scale 1/255, so an input of 1.0 is 255) -> Conv or MatMul with the int8
    ``weights`` -> output quantized with zero point 128; the model, an all-ones input and
    the output step. The step is 1/120 of the largest output the weights could give or,
    with ``cancel`` (convolutions), 16 accumulator units, with a bias that cancels the
    exact accumulator at a full 3x3 window: any saturation then shows at full scale."""
    per_output = (weights.reshape(weights.shape[0], -1) if kind != "matmul" else weights.T).astype(np.int64)
    outputs = per_output.shape[0]
    unit = WEIGHT_SCALE / 255
    step = 16 * unit if cancel else float(np.abs(per_output).sum(axis=1).max()) * WEIGHT_SCALE / 120
    axis = 1 if kind == "matmul" else 0
    inits = [numpy_helper.from_array(np.asarray(1 / 255, np.float32), "x_scale"),
             numpy_helper.from_array(np.asarray(0, np.uint8), "x_zero"),
             numpy_helper.from_array(weights.astype(np.int8), "w"),
             numpy_helper.from_array(np.full(outputs, WEIGHT_SCALE, np.float32), "w_scale"),
             numpy_helper.from_array(np.zeros(outputs, np.int8), "w_zero"),
             numpy_helper.from_array(np.asarray(step, np.float32), "y_scale"),
             numpy_helper.from_array(np.asarray(128, np.uint8), "y_zero")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "w_scale", "w_zero"], ["wd"], axis=axis)]
    if cancel:
        inits += [numpy_helper.from_array((-255 * per_output.sum(axis=1)).astype(np.int32), "b"),
                  numpy_helper.from_array(np.full(outputs, unit, np.float32), "b_scale")]
        nodes.append(helper.make_node("DequantizeLinear", ["b", "b_scale"], ["bd"], axis=0))
    if kind == "matmul":
        nodes.append(helper.make_node("MatMul", ["xd", "wd"], ["y"]))
        shape = [4, CHANNELS]
    else:
        size = weights.shape[2]
        group = CHANNELS if kind == "depthwise" else 1
        nodes.append(helper.make_node("Conv", ["xd", "wd", *(["bd"] if cancel else [])], ["y"],
                                      pads=[size // 2] * 4, group=group))
        shape = [1, CHANNELS, 6, 6]
    nodes += [helper.make_node("QuantizeLinear", ["y", "y_scale", "y_zero"], ["yq"]),
              helper.make_node("DequantizeLinear", ["yq", "y_scale", "y_zero"], ["out"])]
    graph = helper.make_graph(nodes, "layer", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), np.ones(shape, np.float32), step


def kernel_error_steps(kind: str, weights: np.ndarray, cancel: bool = False) -> float:
    """Largest difference, in output steps, between onnxruntime's int8 kernels and the
    same QDQ model run as float arithmetic, at the largest input."""
    model, x, step = qdq_layer(kind, weights, cancel)
    outputs = []
    for level in (ort.GraphOptimizationLevel.ORT_ENABLE_ALL, ort.GraphOptimizationLevel.ORT_DISABLE_ALL):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        outputs.append(session.run(None, {"x": x})[0])
    return float(np.abs(outputs[0] - outputs[1]).max() / step)


def layer_weights(kind: str, pattern) -> np.ndarray:
    """``pattern`` repeated along the input channels of every output (every tap of a 3x3)."""
    row = np.tile(np.asarray(pattern), CHANNELS // len(pattern))
    if kind == "matmul":
        return np.tile(row[:, None], (1, OUTPUTS))
    size = 3 if kind == "conv3x3" else 1
    return np.tile(row[None, :, None, None], (OUTPUTS, 1, size, size))


@needs_vpmaddubsw
@pytest.mark.parametrize("kind", ["conv1x1", "conv3x3", "matmul"])
def test_kernels_add_neighbouring_input_channels_in_a_saturating_int16(kind):
    assert kernel_error_steps(kind, layer_weights(kind, [127, 127, 0, 0])) > 10, "pairs (2j, 2j+1) saturate"
    assert kernel_error_steps(kind, layer_weights(kind, [127, 0, 127, 0])) < 1, "not pairs (2j, 2j+2)"
    assert kernel_error_steps(kind, layer_weights(kind, [0, 127, 127, 0])) < 1, "not pairs (2j+1, 2j+2)"
    assert kernel_error_steps(kind, layer_weights(kind, [127, -127, 127, -100])) < 1, "opposite signs never"


@needs_vpmaddubsw
@pytest.mark.parametrize("kind", ["conv1x1", "conv3x3"])
def test_a_pair_of_weights_may_add_up_to_128_and_no_more(kind):
    assert kernel_error_steps(kind, layer_weights(kind, [127, PAIR_LIMIT - 127]), cancel=True) < 1
    assert kernel_error_steps(kind, layer_weights(kind, [127, PAIR_LIMIT + 1 - 127]), cancel=True) > 10


@needs_vpmaddubsw
@pytest.mark.parametrize("size", [3, 5])
def test_depthwise_kernels_take_the_full_range_at_every_tap(size):
    for value in (127, -127):
        weights = np.full((CHANNELS, 1, size, size), value)
        assert kernel_error_steps("depthwise", weights, cancel=True) < 1


@needs_vpmaddubsw
def test_taps_of_a_kernel_are_not_paired():
    weights = np.zeros((OUTPUTS, CHANNELS, 3, 3))
    weights[:, 0] = 127  # one input channel at all nine taps
    assert kernel_error_steps("conv3x3", weights) < 1


def test_pair_sums_add_same_signs_and_take_the_larger_of_opposite_ones():
    w = np.array([100, 30, -50, 70, -60, -60])
    np.testing.assert_array_equal(pair_sums(np.abs(w), np.sign(w)), [130, 70, 120])
    np.testing.assert_array_equal(pair_sums(np.abs(w[:5]), np.sign(w[:5])), [130, 70, 60])


def channel_range(weights: np.ndarray) -> int:
    return int(channel_ranges(weights[None])[0])


def test_channel_range_is_the_widest_whose_rounded_up_pairs_fit():
    lonely_peak = np.array([1.0, 0.05, 0.3, -0.3, 0.2, 0.0])  # the peak's neighbour is small
    limit = channel_range(lonely_peak)
    assert REDUCED < limit < FULL
    magnitudes = np.ceil(np.abs(lonely_peak) * limit / 1.0 - 1e-9)
    assert pair_sums(magnitudes, np.sign(lonely_peak)).max() <= PAIR_LIMIT
    wider = np.ceil(np.abs(lonely_peak) * (limit + 1) - 1e-9)
    assert pair_sums(wider, np.sign(lonely_peak)).max() > PAIR_LIMIT, "one step wider would not fit"
    assert channel_range(np.array([1.0, -1.0, 0.5, -0.5])) == FULL, "opposite signs allow the full range"
    assert channel_range(np.array([1.0, 1.0, 0.0, 0.0])) == REDUCED
    assert channel_range(np.array([1.0, 0.1, 0.2])) == REDUCED, "odd channel counts keep reduce_range"


def test_channel_ranges_bisection_finds_what_a_scan_of_every_range_finds():
    rng = np.random.default_rng(11)
    weights = rng.standard_normal((150, 16, 3, 3)) * rng.uniform(0.1, 3, (150, 1, 1, 1))
    weights[::7, ::3] *= 6  # some lonely peaks
    weights[5] = 0

    def scan(channel):
        peak = np.abs(channel).max()
        if peak == 0:
            return REDUCED
        return next((r for r in range(FULL, REDUCED, -1)
                     if pair_sums(np.ceil(np.abs(channel) * r / peak - 1e-9), np.sign(channel)).max() <= PAIR_LIMIT),
                    REDUCED)

    found = channel_ranges(weights)
    np.testing.assert_array_equal(found, [scan(c) for c in weights])
    assert len(set(found.tolist())) > 5, "the layer's channels get different ranges"


def test_widened_weights_cover_the_quantized_ordinary_convolutions(tmp_path):
    model = onnx.load(str(write_tiny_onnx(tmp_path / "tinynet.onnx", size=32, classes=10)))
    for index, node in enumerate(model.graph.node):
        node.name = f"{node.op_type}_{index}"
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    overrides = widened_weights(model, skipped={convs[0].name})
    ordinary = [n.input[1] for n in convs[1:]
                if next((a.i for a in n.attribute if a.name == "group"), 1) == 1]
    assert ordinary and sorted(overrides) == sorted(ordinary)
    for name, channels in overrides.items():
        weights = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == name))
        assert len(channels) == weights.shape[0] and channels[0]["axis"] == 0
        assert all(c["zero_point"] == 0 and c["scale"] > 0 for c in channels)


def test_depthwise_weights_get_the_full_range_and_other_grouped_ones_none(tmp_path):
    rng = np.random.default_rng(3)

    def conv(name, weights, group):
        return (helper.make_node("Conv", ["x", name], [f"{name}_out"], group=group, pads=[1, 1, 1, 1], name=name),
                numpy_helper.from_array(weights.astype(np.float32), name))

    layers = [conv("depthwise", rng.standard_normal((8, 1, 3, 3)), 8),
              conv("multiplier", rng.standard_normal((16, 1, 3, 3)), 8),
              conv("grouped", rng.standard_normal((8, 4, 3, 3)), 2)]
    graph = helper.make_graph([n for n, _ in layers], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                          [1, 8, 6, 6])],
                              [helper.make_tensor_value_info(f"{n.name}_out", TensorProto.FLOAT, None)
                               for n, _ in layers], [w for _, w in layers])
    overrides = widened_weights(helper.make_model(graph), skipped=set())
    assert sorted(overrides) == ["depthwise"]
    weights = numpy_helper.to_array(layers[0][1])
    scales = [c["scale"] for c in overrides["depthwise"]]
    np.testing.assert_allclose(scales, np.abs(weights).reshape(8, -1).max(axis=1) / FULL, rtol=1e-6)


def tiny_int8_build(tmp_path, target_cpu: str, adaround: bool) -> tuple[dict, list[np.ndarray]]:
    """An int8 build of the tiny net for ``target_cpu``: its report and its int8 Conv weights."""
    for j, photo in enumerate(PHOTOS * 3):
        write_photo(tmp_path / "images" / photo / f"{photo}_{j}.jpg", photo, size=(40 + 7 * j, 36 + 5 * j))
    write_tiny_onnx(tmp_path / "tinynet.onnx", size=32, classes=10)
    cfg = parse_config({"model": {"onnx": str(tmp_path / "tinynet.onnx")}, "dtype": "int8",
                        "quantization": {"method": "max", "adaround": adaround, "target_cpu": target_cpu},
                        "calibration": {"path": str(tmp_path / "images"), "count": 4},
                        "check": {"count": 5}, "output": str(tmp_path / "out")})
    folder = build(cfg, progress=False)
    model = onnx.load(str(folder / "tinynet.onnx"))
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producers = {out: n for n in model.graph.node for out in n.output}
    weights = [initializers[producers[node.input[1]].input[0]].astype(np.int64) for node in model.graph.node
               if node.op_type == "Conv" and producers.get(node.input[1]) is not None]
    return json.loads((folder / "build.json").read_text()), weights


def test_int8_build_widens_weights_and_its_kernels_still_never_saturate(tmp_path):
    report, weights = tiny_int8_build(tmp_path, "x86", adaround=True)
    assert report["quantization"]["target_cpu"] == "x86" and report["quantization"]["reduce_range"] is True
    assert report["quantization"]["widened_weights"]["layers"] >= 1
    widest = 0
    for q in weights:
        for channel in q:
            assert pair_sums(np.abs(channel), np.sign(channel)).max() <= PAIR_LIMIT
        widest = max(widest, int(np.abs(q).max()))
    assert widest > REDUCED, "some weights use more than reduce_range's 7 bits"
    # Saturation would show as int8 kernels drifting from their float simulation.
    budget = report["check"]["error_budget"]
    assert budget["both"]["output_snr_db"] == pytest.approx(report["check"]["output_snr_db"], abs=1.0)


def test_int8_build_for_vnni_uses_full_8_bit_weights_without_widening(tmp_path):
    """VNNI's dot products accumulate in int32: no reduce_range, no per-channel overrides,
    no channel pairing, and every channel's largest weight at the full 127."""
    report, weights = tiny_int8_build(tmp_path, "x86_vnni", adaround=False)
    quantization = report["quantization"]
    assert quantization["target_cpu"] == "x86_vnni" and quantization["reduce_range"] is False
    assert quantization["widened_weights"] is None and quantization["paired_channels"] is None
    assert weights and all((np.abs(q).reshape(len(q), -1).max(axis=1) == FULL).all() for q in weights)
