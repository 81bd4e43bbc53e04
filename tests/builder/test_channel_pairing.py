"""engine.builder.channel_pairing: reordering the channels of a chain into a 1x1 convolution so
that neighbouring input channels rarely hold large same-sign weights; the float model
must compute what it did, and the int8 build must gain from it."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper
from photos import PHOTOS, write_photo
from tinynet import write_inverted_residual_onnx

import engine.builder.verified_rewrites
from engine.builder.build import build
from engine.builder.channel_pairing import pair_channels, pairing_order, private_chains
from engine.builder.config import parse_config
from engine.builder.error_budget import activations_alone
from engine.builder.graph import output_snr_db
from engine.builder.quantize import PREPARED_MODEL, name_unnamed_nodes
from engine.builder.verified_rewrites import pair_prepared_channels
from engine.builder.weight_ranges import FULL, channel_ranges


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def weights_of(model: onnx.ModelProto, name: str) -> np.ndarray:
    return numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == name))


def named(model: onnx.ModelProto) -> onnx.ModelProto:
    for index, node in enumerate(model.graph.node):
        node.name = f"{node.op_type}_{index}"
    return model


def test_pairing_order_puts_each_large_weight_beside_small_or_opposite_ones():
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((6, 12)) * 0.05
    for out in range(6):
        weights[out, 2 * out:2 * out + 2] = [1.0, 0.95]  # same-sign peaks on neighbours
    order = pairing_order(weights)
    assert sorted(order) == list(range(12))
    assert channel_ranges(weights[:, :, None, None]).max() < 70
    # A peak of 127 leaves room for a same-sign neighbour of 1 at most: near, not always at, the full range.
    paired = channel_ranges(weights[:, order, None, None])
    assert np.median(paired) == FULL and paired.min() >= 120


def test_reordered_chain_computes_the_same_with_wider_ranges(tmp_path):
    model = named(onnx.load(str(write_inverted_residual_onnx(tmp_path / "net.onnx"))))
    x = np.random.default_rng(1).random((2, 3, 32, 32), np.float32)
    before_out, before_w = run(model, x), weights_of(model, "w4")
    chains = {(source.input[1], tuple(n.op_type for n in between), consumer.input[1]): consumer.name
              for source, between, consumer in private_chains(model, skipped=set())}
    assert set(chains) == {("w1", ("Relu",), "w2"), ("w2", ("Clip", "Conv", "Clip"), "w4")}

    layers = {layer["layer"]: layer for layer in pair_channels(model, skipped=set())}
    layer = layers[chains["w2", ("Clip", "Conv", "Clip"), "w4"]]
    assert layer["channels"] == 16
    assert layer["median_range"][0] < 70 and layer["median_range"][1] == FULL
    np.testing.assert_allclose(run(model, x), before_out, rtol=1e-5, atol=1e-5)
    assert not np.array_equal(weights_of(model, "w4"), before_w)


def test_channels_another_node_reads_keep_their_order(tmp_path):
    model = named(onnx.load(str(write_inverted_residual_onnx(tmp_path / "net.onnx"))))
    model.graph.node.append(helper.make_node("Shape", ["r2"], ["r2_shape"], name="shape_reader"))
    def consumers():
        return {consumer.input[1] for _, _, consumer in private_chains(model, skipped=set())}

    assert consumers() == {"w2", "w4"}, "a Shape reader leaves the channel order free"
    model.graph.output.append(helper.make_tensor_value_info("r2", onnx.TensorProto.FLOAT, None))
    assert consumers() == {"w2"}


def test_float_consumers_are_left_alone(tmp_path):
    model = named(onnx.load(str(write_inverted_residual_onnx(tmp_path / "net.onnx"))))
    project = next(n.name for n in model.graph.node if n.input[1:2] == ["w4"])
    assert {consumer.input[1] for _, _, consumer in private_chains(model, skipped={project})} == {"w2"}


def test_a_reordering_that_changes_the_model_is_not_kept(tmp_path):
    """A Pad whose pads are computed in the graph may move channels (here: one in front,
    one cropped at the end); the chain walk cannot see that, the output check does."""
    model = named(onnx.load(str(write_inverted_residual_onnx(tmp_path / "net.onnx"))))
    graph = model.graph
    clip = next(n for n in graph.node if n.output == ["r3"])
    clip.output[:] = ["r3_unshifted"]
    shift = numpy_helper.from_array(np.array([0, 1, 0, 0, 0, -1, 0, 0], np.int64), "shift_value")
    graph.node.extend([helper.make_node("Constant", [], ["shift"], value=shift, name="shift"),
                       helper.make_node("Pad", ["r3_unshifted", "shift"], ["r3"], name="shifting_pad")])
    onnx.save(model, str(tmp_path / "prepared.onnx"))
    assert "w4" in {consumer.input[1] for _, _, consumer in private_chains(model, skipped=set())}

    x = np.random.default_rng(2).random((2, 3, 32, 32), np.float32)
    record, kept_model = pair_prepared_channels(tmp_path / "prepared.onnx", set(), "input", x)
    assert record["layers"] == [] and "changed the float model's outputs" in record["error"]
    for kept in (kept_model, onnx.load(str(tmp_path / "prepared.onnx"))):
        np.testing.assert_array_equal(weights_of(kept, "w4"), weights_of(model, "w4"))


def test_int8_build_pairs_channels_and_gains_output_snr(tmp_path, monkeypatch):
    """Built for x86 without VNNI (whatever this machine has), where pairs cap the ranges."""
    for j, photo in enumerate(PHOTOS * 8):
        write_photo(tmp_path / "images" / photo / f"{photo}_{j}.jpg", photo, size=(40 + 7 * j, 36 + 5 * j))
    write_inverted_residual_onnx(tmp_path / "net.onnx")

    def built(output: str) -> dict:
        cfg = parse_config({"model": {"onnx": str(tmp_path / "net.onnx")}, "dtype": "int8",
                            "quantization": {"method": "max", "skip_layers": [0, 1, -1], "target_cpu": "x86"},
                            "calibration": {"path": str(tmp_path / "images"), "count": 8},
                            "check": {"count": 30}, "output": str(tmp_path / output)})
        folder = build(cfg, progress=False, work_dir=tmp_path / f"{output}_work")
        return json.loads((folder / "build.json").read_text()) | {"folder": folder}

    paired = built("paired")
    # The int8 model's channels follow the reordered float model kept in the work folder,
    # not the source; float weights from the source are refused, not silently mixed in.
    int8_model = onnx.load(str(paired["folder"] / paired["model_file"]))
    source = tmp_path / "named_source.onnx"
    source.write_bytes((tmp_path / "net.onnx").read_bytes())
    name_unnamed_nodes(source)  # as the build names them
    with pytest.raises(ValueError, match="not the one this int8 model was quantized from"):
        activations_alone(int8_model, onnx.load(str(source)))
    ceiling = activations_alone(int8_model, onnx.load(str(tmp_path / "paired_work" / PREPARED_MODEL)))
    x = np.random.default_rng(3).random((2, 3, 32, 32), np.float32)
    assert output_snr_db([run(onnx.load(str(tmp_path / "net.onnx")), x)], [run(ceiling, x)]) > 30

    layers = paired["quantization"]["paired_channels"]["layers"]
    layer = max(layers, key=lambda layer: layer["channels"])  # the 16 channels into the last 1x1
    assert layer["channels"] == 16 and layer["median_range"][0] < 70 and layer["median_range"][1] == FULL
    monkeypatch.setattr(engine.builder.verified_rewrites, "pair_channels", lambda model, skipped: [])
    unpaired = built("unpaired")
    assert unpaired["quantization"]["paired_channels"] == {"layers": []}
    # Only the depthwise and the last 1x1 convolution are int8: halving the latter's step
    # shows as about 6 dB in the error of the weights alone.
    def weights_alone(report):
        return report["check"]["error_budget"]["weights_alone"]["output_snr_db"]

    assert weights_alone(paired) > weights_alone(unpaired) + 4.0
