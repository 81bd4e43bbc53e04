"""engine.build: real photos, real onnxruntime quantization, real deploy folders."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from photos import PHOTOS, write_photo
from tinynet import write_tiny_onnx

from engine.backends import open_backend
from engine.build import main
from engine.builder.build import build
from engine.builder.config import ConfigError, load_config, parse_config
from engine.builder.cpu_target import TARGET_FLAGS, cpu_flags, int8_types, target_flags
from engine.builder.image_sets import spread_over_classes
from engine.builder.quantize import PREPARED_MODEL
from engine.data.dataconfig import ModelInfo
from engine.data.labels import imagenet_wnids

SIZE = 32
# Folders named after ImageNet wnids, so the build finds labels in the folder names.
CLASS_INDICES = (281, 967, 500)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("build")
    for index, photo in zip(CLASS_INDICES, PHOTOS):
        for j in range(6):
            write_photo(root / "images" / imagenet_wnids()[index] / f"{photo}_{j}.jpg", photo,
                        size=(48 + 9 * j, 40 + 6 * j))
    write_tiny_onnx(root / "tinynet.onnx", size=SIZE, classes=10)
    return root


def write_config(root, name, config: dict):
    path = root / name
    path.write_text(yaml.safe_dump(config))
    return path


def test_int8_build_writes_a_complete_deploy_folder(workspace, tmp_path):
    cfg_path = write_config(workspace, "int8.yaml", {
        "model": {"onnx": "tinynet.onnx", "input_shape": [1, 3, SIZE, SIZE]},
        "dtype": "int8",
        "quantization": {"method": "kl_divergence", "per_channel": True},
        "calibration": {"path": "images", "count": 7, "batch_size": 2},
        "check": {"count": 9},
        "softmax": True,
    })
    work = tmp_path / "work"
    assert main([str(cfg_path), "--output", str(tmp_path), "--no-progress", "--work-dir", str(work)]) == 0
    folder = tmp_path / f"tinynet-int8-kl_divergence-3_{SIZE}_{SIZE}-ort"
    assert sorted(p.name for p in folder.iterdir()) == ["build.json", "test-tinynet-vdsp_params.json", "tinynet.json",
                                                      "tinynet.onnx"]
    # --work-dir keeps the float model the int8 one was quantized from, its layers by name.
    import onnx

    from engine.builder.graph import quantized_layers
    prepared = {n.name for n in onnx.load(str(work / PREPARED_MODEL)).graph.node}
    layers = quantized_layers(onnx.load(str(folder / "tinynet.onnx")))
    assert layers and set(layers) <= prepared

    report = json.loads((folder / "build.json").read_text())
    assert report["dtype"] == "int8" and report["calibration_method"] == "entropy"
    assert report["quantization"]["format"] == "QDQ" and report["quantization"]["per_channel"]
    calib = report["calibration"]
    assert calib["images_used"] == 7 and calib["classes_covered"] == calib["classes_present"] == 3
    assert not set(calib["items"]) & set(report["check_items"]), "check images must be held out"
    check = report["check"]
    assert check["images"] == 9 and check["labelled_images"] == 9
    assert check["top1_agreement"] >= 0.8 and check["top5_overlap"] >= 0.8
    assert 10 < check["output_snr_db"] < 60, "int8 is neither exact nor noise"
    for key in ("fp32_top1", "fp32_top5", "built_top1", "built_top5"):
        assert 0.0 <= check[key] <= 1.0
    assert report["time_s"] > 0

    info = ModelInfo.load(folder / "tinynet.json")
    assert info.model_file == "tinynet.onnx" and info.extra["precision"] == "int8" and info.extra["softmax"]
    backend = open_backend("ort", folder / "tinynet.onnx")
    assert backend.describe()["precision"] == "int8"
    x = np.random.default_rng(0).standard_normal((3, 3, SIZE, SIZE)).astype(np.float32)
    (probs,) = backend.run(x)
    # The softmax output is float, not 8-bit: rows sum to 1 and the top classes differ.
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    top = np.sort(probs, axis=1)[:, -5:]
    assert (np.diff(top, axis=1) > 0).all()


def test_fp16_build_keeps_float32_io_and_matches(workspace, tmp_path):
    cfg = parse_config({"model": {"onnx": str(workspace / "tinynet.onnx")}, "dtype": "fp16",
                        "check": {"path": str(workspace / "images"), "count": 6}, "output": str(tmp_path)})
    folder = build(cfg, progress=False)
    assert folder.name == f"tinynet-fp16-none-3_{SIZE}_{SIZE}-ort"
    report = json.loads((folder / "build.json").read_text())
    assert report["calibration"]["images_used"] == 0 and report["check"]["images"] == 6
    assert report["check"]["top1_agreement"] >= 0.8 and report["check"]["output_snr_db"] > 50
    x = np.random.default_rng(1).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    built = open_backend("ort", folder / "tinynet.onnx")
    assert built.precision == "fp16"
    np.testing.assert_allclose(built.run(x)[0], open_backend("ort", workspace / "tinynet.onnx").run(x)[0],
                               rtol=2e-2, atol=2e-2)


def test_seed_compiler_keys_map_onto_native_ones(workspace):
    seed = {
        "model": {"name": "tinynet", "inputs": {"input": [1, 3, SIZE, SIZE]}, "checkpoint": "tinynet.onnx"},
        "engine": {"type": "vacc", "common": {"do_quantization": True},
                   "add_extra_ops_to_graph": {"type": "softmax"},
                   "calibration": {"quant_mode": "percentile", "per_channel": True}},
        "dataset": {"path": "images", "sampler": {"suffix": "JPG", "get_data_num": 12},
                    "transform_ops": [{"type": "DecodeImage"}, {"type": "Resize", "size": [256, 256]},
                                      {"type": "CenterCrop", "crop_size": [224, 224]},
                                      {"type": "Normalize", "mean": [123.675, 116.28, 103.53],
                                       "std": [58.395, 57.12, 57.375]}, {"type": "ToTensor"}]},
        "workspace": {"work_dir": "deploy", "enable_ir": False, "save_log": True},
    }
    cfg = parse_config(seed, workspace)
    assert cfg.model.onnx == workspace / "tinynet.onnx" and cfg.model.input_name == "input"
    assert cfg.dtype == "int8" and cfg.quantization.method == "percentile" and cfg.quantization.per_channel
    assert cfg.calibration.path == workspace / "images" and cfg.calibration.count == 12
    assert cfg.calibration.suffix == "JPG" and cfg.softmax and cfg.output == workspace / "deploy"
    assert set(cfg.ignored) == {"engine.type", "workspace.enable_ir", "workspace.save_log"}
    (workspace / "seed.yaml").write_text(yaml.safe_dump(seed))
    assert load_config(workspace / "seed.yaml").calibration.count == 12


@pytest.mark.parametrize("config, message", [
    ({"model": {"onnx": "m.onnx"}, "colour": 1}, "colour: unknown key"),
    ({"model": {"onnx": "m.onnx", "shape": [1]}}, "model.shape: unknown key"),
    ({"model": {"onnx": "m.onnx"}, "quantization": {"method": "max"},
      "engine": {"calibration": {"quant_mode": "percentile"}}, "calibration": {"path": "x"}},
     "engine.calibration.quant_mode: sets quantization.method to 'percentile', but quantization.method"),
    ({"model": {"onnx": "m.onnx"}, "dtype": "fp16", "quantization": {"method": "max"}},
     "quantization.method: quantization settings given but dtype is fp16"),
    ({"model": {"onnx": "m.onnx"}, "dtype": "int8"}, "int8 needs calibration images"),
    ({"model": {"onnx": "m.onnx"}, "dtype": "int4"}, "dtype: 'int4' is not one of"),
    ({"model": {"onnx": "m.onnx"}, "calibration": {"path": "x"}, "quantization": {"method": "mse"}},
     "quantization.method: 'mse' is not one of"),
    ({"model": {"onnx": "m.onnx"}, "calibration": {"path": "x"},
      "quantization": {"method": "max", "percentile": 99.9}}, "needs method percentile"),
    ({"model": {"onnx": "m.onnx", "weights": "w.pth"}}, "model.weights: weights are for a zoo model"),
    ({"model": {"checkpoint": "m.onnx", "onnx": "n.onnx"}}, "model.onnx: sets model.onnx to 'n.onnx'"),
    ({"dtype": "fp32"}, "give model.name"),
    ({"model": {"onnx": "m.onnx"}, "calibration": {"path": "x", "count": 0}}, "calibration.count: 0"),
    ({"model": {"onnx": "m.onnx"}, "calibration": {"path": "x"}, "quantization": {"float_fallback": -1}},
     "quantization.float_fallback: -1 is out of range"),
    ({"model": {"onnx": "m.onnx"}, "dtype": "fp16", "quantization": {"float_fallback": 2}},
     "quantization.float_fallback: quantization settings given but dtype is fp16"),
    ({"model": {"onnx": "m.onnx"}, "calibration": {"path": "x"}, "quantization": {"float_fallback_macs": 0}},
     "quantization.float_fallback_macs: 0 must be a fraction in (0, 1]"),
    ({"model": {"onnx": "m.onnx"}, "calibration": {"path": "x"}, "quantization": {"float_fallback_macs": "5%"}},
     "quantization.float_fallback_macs: '5%' must be a fraction in (0, 1]"),
    ({"model": {"onnx": "m.onnx"}, "calibration": {"path": "x"}, "quantization": {"adaround": "yes"}},
     "quantization.adaround: expected true or false"),
    ({"model": {"onnx": "m.onnx"}, "engine": {"common": {"do_quantization": "yes"}}},
     "engine.common.do_quantization: expected true or false"),
    ({"model": {"onnx": "m.onnx"}, "calibration": {"path": "x"}, "quantization": {"target_cpu": "riscv"}},
     "quantization.target_cpu: 'riscv' is not one of native, x86, x86_vnni, arm"),
    ({"model": {"onnx": "m.onnx"}, "dtype": "fp32", "quantization": {"target_cpu": "x86"}},
     "quantization.target_cpu: quantization settings given but dtype is fp32"),
])
def test_config_errors_name_the_key(config, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_config(config)


def test_skip_layers_keeps_those_layers_in_float(workspace, tmp_path):
    import onnx

    cfg = parse_config({"model": {"onnx": str(workspace / "tinynet.onnx")},
                        "engine": {"calibration": {"quant_mode": "max", "skip_conv_layers": [-1]}},
                        "dataset": {"path": str(workspace / "images"), "sampler": {"get_data_num": 3}},
                        "check": {"count": 3}, "output": str(tmp_path)})
    folder = build(cfg, progress=False)
    report = json.loads((folder / "build.json").read_text())
    assert report["quantization"]["float_layers"] and report["check"]["images"] == 3
    graph = onnx.load(str(folder / "tinynet.onnx")).graph
    (gemm,) = [n for n in graph.node if n.op_type == "Gemm"]
    assert gemm.input[1] == "wf", "the last layer keeps its float weights"
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert all(c.input[1].endswith("DequantizeLinear_Output") for c in convs)
    bad = parse_config({"model": {"onnx": str(workspace / "tinynet.onnx")},
                        "calibration": {"path": str(workspace / "images")}, "quantization": {"skip_layers": [5]},
                        "output": str(tmp_path)})
    with pytest.raises(ConfigError, match="quantization.skip_layers: layer 5 does not exist; the model has 3"):
        build(bad, progress=False)


def test_a_float_layer_between_int8_layers_runs_in_float(workspace, tmp_path):
    """onnxruntime quantizes the weights of a Conv between a DequantizeLinear and a
    QuantizeLinear itself when it loads the model (per tensor); the middle layer kept in
    float must not match that pattern, so its results are the same with graph
    optimizations on and off."""
    import onnx
    import onnxruntime as ort

    cfg = parse_config({"model": {"onnx": str(workspace / "tinynet.onnx")}, "dtype": "int8",
                        "quantization": {"method": "max", "skip_layers": [1]},
                        "calibration": {"path": str(workspace / "images"), "count": 6},
                        "check": {"count": 3}, "output": str(tmp_path)})
    folder = build(cfg, progress=False)
    report = json.loads((folder / "build.json").read_text())
    (middle,) = report["quantization"]["float_layers"]
    graph = onnx.load(str(folder / "tinynet.onnx")).graph
    producers = {o: n for n in graph.node for o in n.output}
    (conv,) = [n for n in graph.node if n.name == middle]
    assert conv.input[1] == "w2" and producers[conv.input[0]].op_type == "Clip"
    x = np.random.default_rng(3).uniform(-2, 2, (4, 3, SIZE, SIZE)).astype(np.float32)
    outputs = []
    for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        session = ort.InferenceSession(str(folder / "tinynet.onnx"), options, providers=["CPUExecutionProvider"])
        outputs.append(session.run(None, {"input": x})[0])
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-4, atol=1e-4)


def test_float_fallback_puts_back_the_layers_that_cost_most(workspace, tmp_path):
    import onnx

    cfg = parse_config({"model": {"onnx": str(workspace / "tinynet.onnx")}, "dtype": "int8",
                        "quantization": {"method": "max", "float_fallback": 1},
                        "calibration": {"path": str(workspace / "images"), "count": 8},
                        "check": {"count": 4}, "output": str(tmp_path)})
    folder = build(cfg, progress=False)
    fallback = json.loads((folder / "build.json").read_text())["quantization"]["float_fallback"]
    gains = list(fallback["gain_db_alone"].items())
    assert len(gains) == 3 and [g for _, g in gains] == sorted((g for _, g in gains), reverse=True)
    assert fallback["layers"] == [gains[0][0]] and gains[0][1] > 0 and fallback["images"] == 8
    snr = fallback["output_snr_db"]
    assert snr["with_fallback"] > snr["int8"]
    graph = onnx.load(str(folder / "tinynet.onnx")).graph
    (layer,) = [n for n in graph.node if n.name == fallback["layers"][0]]
    floats = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    assert layer.input[1] in floats, "the layer's weights are float again"
    others = [n for n in graph.node if n.op_type in ("Conv", "Gemm") and n is not layer]
    assert all(n.input[1] not in floats for n in others), "the other layers stay int8"


def test_layer_macs_come_from_the_shapes_of_a_run(tmp_path):
    import onnx

    from engine.builder.float_fallback import layer_macs

    model = onnx.load(str(write_tiny_onnx(tmp_path / "t.onnx", size=SIZE, classes=10)))
    for index, node in enumerate(model.graph.node):
        node.name = f"{node.op_type}_{index}"
    macs = layer_macs(model, np.zeros((2, 3, SIZE, SIZE), np.float32))
    # conv 3->8 3x3 stride 2, conv 8->16 3x3 stride 2, gemm 16->10; per image.
    half, quarter = SIZE // 2, SIZE // 4
    assert macs == {"Conv_0": 8 * half * half * 3 * 9, "Conv_2": 16 * quarter * quarter * 8 * 9, "Gemm_6": 10 * 16}


def test_float_fallback_keeps_within_its_share_of_the_multiply_accumulates(workspace, tmp_path):
    def fallback(max_macs):
        cfg = parse_config({"model": {"onnx": str(workspace / "tinynet.onnx")}, "dtype": "int8",
                            "quantization": {"method": "max", "float_fallback": 3, "float_fallback_macs": max_macs},
                            "calibration": {"path": str(workspace / "images"), "count": 8},
                            "check": {"count": 4}, "output": str(tmp_path / str(max_macs))})
        return json.loads((build(cfg, progress=False) / "build.json").read_text())["quantization"]["float_fallback"]

    free, limited = fallback(1.0), fallback(0.3)
    shares = free["layer_macs_share"]
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-3)
    assert free["macs_share"]["float_layers"] > 0.3, "without a limit the fallback takes a big layer"
    assert limited["macs_share"] == {"float_layers": pytest.approx(sum(shares[n] for n in limited["layers"]),
                                                                   abs=1e-3), "limit": 0.3}
    assert 0 < limited["macs_share"]["float_layers"] <= 0.3
    # Layers are taken in order of gain, skipping those that would go over the limit.
    expected, used = [], 0.0
    for name, gain in free["gain_db_alone"].items():
        if gain > 0 and used + shares[name] <= 0.3:
            expected.append(name)
            used += shares[name]
    assert limited["layers"] == expected and set(expected) != set(free["layers"])


def test_adaround_learns_roundings_that_reconstruct_the_layers_better(workspace, tmp_path):
    import onnx
    from onnx import numpy_helper

    def int8_build(adaround, out):
        cfg = parse_config({"model": {"onnx": str(workspace / "tinynet.onnx")}, "dtype": "int8",
                            "quantization": {"method": "max", "adaround": adaround, "bias_correction": False,
                                             "target_cpu": "x86"},
                            "calibration": {"path": str(workspace / "images"), "count": 8},
                            "check": {"count": 4}, "output": str(out)})
        folder = build(cfg, progress=False)
        graph = onnx.load(str(folder / "tinynet.onnx")).graph
        weights = {i.name: numpy_helper.to_array(i) for i in graph.initializer
                   if i.data_type == onnx.TensorProto.INT8 and i.name.endswith("_quantized")}
        return json.loads((folder / "build.json").read_text()), weights

    report, learned = int8_build(True, tmp_path / "ada")
    _, nearest = int8_build(False, tmp_path / "nearest")
    layers = report["quantization"]["adaround"]["layers"]
    assert len(layers) == 2, "both convolutions (the Gemm is not a convolution)"
    assert all(v["mse_adaround"] <= v["mse_nearest"] for v in layers.values())
    assert any(v["mse_adaround"] < 0.95 * v["mse_nearest"] for v in layers.values())
    changed = [name for name in nearest if not np.array_equal(nearest[name], learned[name])]
    assert changed and all(np.abs(nearest[n].astype(int) - learned[n]).max() == 1 for n in changed), \
        "only rounding directions change: each weight moves by at most one step"
    # Built for x86 without VNNI: learned roundings stay inside the ranges that cannot saturate.
    from engine.builder.weight_ranges import PAIR_LIMIT, pair_sums

    assert report["quantization"]["reduce_range"] is True
    for w in learned.values():
        q = w.astype(int).reshape(w.shape[0], w.shape[1], -1)
        assert all(pair_sums(np.abs(c), np.sign(c)).max() <= PAIR_LIMIT for c in q)


def write_pad_conv_onnx(path, size=SIZE, classes=8):
    """input -> Pad(2, reflect) -> 1x1 Conv -> mean over H, W: the border counts in every
    logit. (A zero Pad the build would fold into the Conv, engine.builder.pad_folding.)"""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    weights = numpy_helper.from_array(rng.standard_normal((classes, 3, 1, 1)).astype(np.float32), "w")
    pads = numpy_helper.from_array(np.array([0, 0, 2, 2, 0, 0, 2, 2], np.int64), "pads")
    graph = helper.make_graph(
        [helper.make_node("Pad", ["input", "pads"], ["padded"], mode="reflect", name="pad"),
         helper.make_node("Conv", ["padded", "w"], ["conv"], name="conv"),
         helper.make_node("ReduceMean", ["conv"], ["logits"], axes=[2, 3], keepdims=0, name="mean")],
        "padnet", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])], [weights, pads])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_a_float_first_layer_keeps_its_pad_in_float(workspace, tmp_path):
    import onnx

    model = write_pad_conv_onnx(tmp_path / "padnet.onnx")
    cfg = parse_config({"model": {"onnx": str(model)}, "dtype": "int8",
                        "quantization": {"method": "max", "skip_layers": [0]},
                        "calibration": {"path": str(workspace / "images"), "count": 6},
                        "check": {"count": 3}, "output": str(tmp_path / "out")})
    folder = build(cfg, progress=False)
    assert json.loads((folder / "build.json").read_text())["quantization"]["float_layers"] == ["conv", "pad"]
    (pad,) = [n for n in onnx.load(str(folder / "padnet.onnx")).graph.node if n.op_type == "Pad"]
    assert pad.input[0] == "input", "the Pad reads the float network input, not a dequantized copy"
    x = np.random.default_rng(1).uniform(-2, 2, (4, 3, SIZE, SIZE)).astype(np.float32)
    np.testing.assert_allclose(open_backend("ort", folder / "padnet.onnx").run(x)[0],
                               open_backend("ort", model).run(x)[0], rtol=1e-5, atol=1e-6)


def write_two_conv_onnx(path, size=SIZE, hidden=15, classes=8):
    """input -> 1x1 Conv -> Relu -> 1x1 Conv -> mean over H, W: the second conv's inputs
    are all >= 0, so its weight rounding shifts every logit's mean. An odd number of
    hidden channels keeps reduce_range's 7-bit weights on x86 (no channel pairing,
    engine.builder.channel_pairing), whose rounding shift is the one to see."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(11)
    inits = [numpy_helper.from_array(a.astype(np.float32), name) for name, a in (
        ("w1", rng.standard_normal((hidden, 3, 1, 1))), ("b1", rng.standard_normal(hidden) * 0.1),
        ("w2", rng.standard_normal((classes, hidden, 1, 1)) * 0.3), ("b2", rng.standard_normal(classes) * 0.1))]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1"),
         helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
         helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2"),
         helper.make_node("ReduceMean", ["c2"], ["logits"], axes=[2, 3], keepdims=0, name="mean")],
        "twoconv", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_bias_correction_removes_the_weight_rounding_mean_shift(workspace, tmp_path):
    """With bias correction the int8 model's mean logits over the calibration images sit
    much closer to fp32's than without; the biases move, the quantized weights do not.
    Built for x86 without VNNI (7-bit weights, whatever this machine has), where the
    rounding shift to correct is largest."""
    import onnx
    from onnx import numpy_helper

    from engine.builder.calibration import iter_batches

    model = write_two_conv_onnx(tmp_path / "twoconv.onnx")
    folders, reports = {}, {}
    for corrected in (False, True):
        cfg = parse_config({"model": {"onnx": str(model)}, "dtype": "int8",
                            "quantization": {"method": "max", "bias_correction": corrected, "target_cpu": "x86"},
                            "calibration": {"path": str(workspace / "images"), "count": 12},
                            "check": {"count": 3}, "output": str(tmp_path / str(corrected))})
        folders[corrected] = build(cfg, progress=False)
        reports[corrected] = json.loads((folders[corrected] / "build.json").read_text())
    assert reports[False]["quantization"]["bias_correction"] is None
    assert reports[True]["quantization"]["bias_correction"]["layers"] == 2

    def initializers(folder):
        return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(folder / "twoconv.onnx")).graph.initializer}

    plain, fixed = initializers(folders[False]), initializers(folders[True])
    np.testing.assert_array_equal(plain["w2_quantized"], fixed["w2_quantized"])
    assert not np.array_equal(plain["b2_quantized"], fixed["b2_quantized"])

    items = reports[True]["calibration"]["items"]
    config = ModelInfo.load(ModelInfo.path_for(folders[True] / "twoconv.onnx")).data_config
    backends = {k: open_backend("ort", path) for k, path in (
        ("fp32", model), ("plain", folders[False] / "twoconv.onnx"), ("fixed", folders[True] / "twoconv.onnx"))}
    logits = {k: [] for k in backends}
    for _, batch in iter_batches(items, config, 4):
        for k, backend in backends.items():
            logits[k].append(backend.run(batch)[0])
    means = {k: np.concatenate(v).mean(axis=0) for k, v in logits.items()}
    shift_plain = np.abs(means["plain"] - means["fp32"]).mean()
    shift_fixed = np.abs(means["fixed"] - means["fp32"]).mean()
    assert shift_fixed < 0.5 * shift_plain, (shift_fixed, shift_plain)


def test_preprocess_ops_that_contradict_the_model_are_refused(workspace, tmp_path):
    cfg = parse_config({"model": {"onnx": str(workspace / "tinynet.onnx")}, "dtype": "fp32",
                        "dataset": {"transform_ops": [{"type": "CenterCrop", "crop_size": [20, 20]}]},
                        "output": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"dataset.transform_ops\[0\] \(CenterCrop\): crop \[20, 20\]"):
        build(cfg, progress=False)


def test_cli_reports_config_errors(tmp_path, capsys):
    path = write_config(tmp_path, "bad.yaml", {"model": {"onnx": "m.onnx"}, "calibraton": {"path": "x"}})
    assert main([str(path)]) == 2
    assert "calibraton.path: unknown key" in capsys.readouterr().err
    path = write_config(tmp_path, "missing.yaml", {"model": {"onnx": "m.onnx"}})
    assert main([str(path)]) == 2
    assert "model.onnx: " in capsys.readouterr().err
    path = write_config(tmp_path, "zoo.yaml", {"model": {"name": "vgg99"}})
    assert main([str(path)]) == 2
    assert "model 'vgg99' is not in the zoo" in capsys.readouterr().err
    assert main([str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_calibration_spreads_round_robin_over_classes():
    items = [f"/d/{c}/{i}.jpg" for c in "abc" for i in range(4)] + ["/d/d/0.jpg"]
    by_folder = lambda p: p.split("/")[2]  # noqa: E731
    chosen = spread_over_classes(items[::-1], 6, by_folder)
    assert chosen == ["/d/a/0.jpg", "/d/b/0.jpg", "/d/c/0.jpg", "/d/d/0.jpg", "/d/a/1.jpg", "/d/b/1.jpg"]
    assert spread_over_classes(items, 100, by_folder) == spread_over_classes(list(reversed(items)), 100, by_folder)
    assert len(spread_over_classes(items, 100, by_folder)) == len(items)


def test_int8_types_follow_the_cpu():
    assert int8_types({"sse2", "avx2", "fma"}).reduce_range is True
    assert int8_types({"sse2", "avx2", "avx512f", "avx512_vnni"}).reduce_range is False
    assert int8_types({"asimd", "asimddp"}).reduce_range is False
    assert int8_types(target_flags("x86")).reduce_range is True
    assert not int8_types(target_flags("x86_vnni")).reduce_range and not int8_types(target_flags("arm")).reduce_range
    assert target_flags("native") == cpu_flags()
    assert set(TARGET_FLAGS) == {"x86", "x86_vnni", "arm"}


def test_calibration_that_would_use_every_image_holds_some_out_for_the_check(workspace, tmp_path, capsys):
    """Defect 2: calibration.count at least the number of images given, no check.path:
    a fifth of them (spread over the classes) is held out so the build is still checked."""
    cfg = parse_config({"model": {"onnx": str(workspace / "tinynet.onnx")}, "dtype": "int8",
                        "quantization": {"method": "max"},
                        "calibration": {"path": str(workspace / "images"), "count": 1000},
                        "output": str(tmp_path)})
    report = json.loads((build(cfg, progress=False) / "build.json").read_text())
    calib = report["calibration"]
    pool = 6 * len(CLASS_INDICES)
    held = calib["held_out_for_check"]
    assert held["images"] == pool // 5 == 3 and "calibration.count 1000 would leave 0 of the 18" in held["why"]
    assert calib["images_used"] == pool - 3 and calib["classes_covered"] == 3
    assert report["check"]["images"] == 3 and report["check"]["labelled_images"] == 3
    assert "error_budget" in report["check"]
    assert not set(calib["items"]) & set(report["check_items"])
    assert len({p.rsplit("/", 2)[-2] for p in report["check_items"]}) == 3, "one held-out image per class"
    assert "would leave 0 of the 18 images for the accuracy check" in capsys.readouterr().err
    again = json.loads((build(cfg, progress=False) / "build.json").read_text())
    assert again["check_items"] == report["check_items"], "the same config holds out the same images"


def test_a_build_that_cannot_be_checked_says_why_on_stderr(workspace, tmp_path, capsys):
    (tmp_path / "one").mkdir()
    only = next((workspace / "images").rglob("*.jpg"))
    (tmp_path / "one" / only.name).write_bytes(only.read_bytes())
    cfg = parse_config({"model": {"onnx": str(workspace / "tinynet.onnx")}, "dtype": "int8",
                        "quantization": {"method": "max"}, "calibration": {"path": str(tmp_path / "one")},
                        "output": str(tmp_path / "out")})
    report = json.loads((build(cfg, progress=False) / "build.json").read_text())
    assert report["calibration"]["images_used"] == 1 and report["calibration"]["held_out_for_check"] is None
    assert report["check"]["images"] == 0 and "give check.path" in report["check"]["skipped"]
    err = capsys.readouterr().err
    assert "warning: no accuracy check of the built model" in err and "give check.path" in err
    quiet = parse_config({"model": {"onnx": str(workspace / "tinynet.onnx")}, "dtype": "fp32",
                          "check": {"path": str(workspace / "images"), "count": 0}, "output": str(tmp_path / "q")})
    assert json.loads((build(quiet, progress=False) / "build.json").read_text())["check"] == {
        "images": 0, "skipped": "check.count is 0"}
    assert "warning" not in capsys.readouterr().err, "no check was asked for: nothing to warn about"


@pytest.mark.slow
def test_build_from_a_zoo_name_exports_then_converts(workspace, tmp_path):
    """model.name without an ONNX file: exported from the zoo (trained EfficientNet-Lite0)."""
    cfg = parse_config({"model": {"name": "efficientnet_lite0", "input_shape": [1, 3, 224, 224]},
                        "dtype": "fp16", "softmax": True,
                        "check": {"path": str(workspace / "images"), "count": 6}, "output": str(tmp_path)})
    folder = build(cfg, progress=False)
    assert folder.name == "efficientnet_lite0-fp16-none-3_224_224-ort"
    report = json.loads((folder / "build.json").read_text())
    assert report["library"] == "efficientnet_lite_pytorch" and report["softmax"]
    assert report["check"]["images"] == 6 and report["check"]["top1_agreement"] >= 5 / 6
    info = ModelInfo.load(folder / "efficientnet_lite0.json")
    assert info.extra["precision"] == "fp16" and info.data_config.crop == 224
