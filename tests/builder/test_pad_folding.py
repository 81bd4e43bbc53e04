"""engine.builder.pad_folding: Pads with computed amounts folded into their convolutions, on real
onnxruntime sessions and real builds."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from onnx import helper, numpy_helper
from photos import PHOTOS, write_photo
from tinynet import write_inverted_residual_onnx

from engine.builder.build import build
from engine.builder.config import load_config
from engine.builder.pad_folding import fold_pads

SIZE = 32


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"input": x})[0]


def batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, SIZE, SIZE)).astype(np.float32)


def conv_pads(model: onnx.ModelProto) -> dict[str, list[int]]:
    return {node.output[0]: next((list(a.ints) for a in node.attribute if a.name == "pads"), [])
            for node in model.graph.node if node.op_type == "Conv"}


def test_computed_same_padding_moves_into_the_convolutions(tmp_path):
    model = onnx.load(str(write_inverted_residual_onnx(tmp_path / "net.onnx", computed_padding=True)))
    folded, count = fold_pads(model, "input", batch(2))
    assert count == 2
    ops = {node.op_type for node in folded.graph.node}
    assert not ops & {"Pad", "Shape", "Gather", "Concat"}, ops  # the arithmetic that computed them is gone too
    # TensorFlow's "same": stride 2 on an even size pads only the end; stride 1 both sides.
    assert conv_pads(folded) == {"c1": [0, 0, 1, 1], "c2": [], "c3": [1, 1, 1, 1], "c4": []}
    for n in (2, 5):  # the amounts depend on height and width only, not on the batch
        x = batch(n, seed=n)
        np.testing.assert_allclose(run(folded, x), run(model, x), rtol=1e-6, atol=1e-6)


def test_pads_that_do_not_pad_with_zeros_for_a_conv_stay(tmp_path):
    model = onnx.load(str(write_inverted_residual_onnx(tmp_path / "net.onnx", computed_padding=True)))
    graph = model.graph
    stem_pad = next(n for n in graph.node if n.op_type == "Pad" and n.output[0] == "input_padded")
    stem_pad.attribute[0].CopyFrom(helper.make_attribute("mode", "reflect"))
    depthwise_pad = next(n for n in graph.node if n.op_type == "Pad" and n.output[0] == "r2_padded")
    graph.initializer.append(numpy_helper.from_array(np.asarray(0.5, np.float32), "half"))
    depthwise_pad.input.append("half")
    x = batch(3)
    folded, count = fold_pads(model, "input", x)
    assert count == 0
    assert [n.op_type for n in folded.graph.node] == [n.op_type for n in model.graph.node]
    np.testing.assert_array_equal(run(folded, x), run(model, x))

    # A zero Pad that something other than a Conv also reads stays as well.
    model = onnx.load(str(write_inverted_residual_onnx(tmp_path / "net.onnx", computed_padding=True)))
    model.graph.output.append(helper.make_tensor_value_info("r2_padded", onnx.TensorProto.FLOAT, None))
    folded, count = fold_pads(model, "input", x)
    assert count == 1 and conv_pads(folded)["c1"] == [0, 0, 1, 1] and conv_pads(folded)["c3"] == []


@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_the_build_folds_the_pads_and_records_it(tmp_path, dtype):
    for i, photo in enumerate(PHOTOS):
        for j in range(3):
            write_photo(tmp_path / "images" / photo / f"{photo}_{j}.jpg", photo, size=(48 + 8 * j, 40 + 6 * i))
    write_inverted_residual_onnx(tmp_path / "net.onnx", size=SIZE, computed_padding=True)
    config = tmp_path / "build.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"onnx": str(tmp_path / "net.onnx")}, "dtype": dtype,
        "calibration": {"path": str(tmp_path / "images"), "count": 4, "batch_size": 2},
        "check": {"count": 5}, "output": str(tmp_path / "deploy")}))
    folder = build(load_config(config), progress=False)
    report = json.loads((folder / "build.json").read_text())
    assert report["graph_rewrites"]["pads_folded"] == 2
    built = onnx.load(str(folder / "inverted_residual.onnx"))
    assert "Pad" not in {node.op_type for node in built.graph.node}
    # The check runs the built model against the source model as given, Pads and all.
    assert report["check"]["images"] == 5
    if dtype == "fp32":
        assert report["check"]["top1_agreement"] == 1.0 and report["check"]["output_snr_db"] > 100
