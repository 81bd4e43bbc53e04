"""The OpenVINO backend against onnxruntime fp32: real sessions on tiny seeded nets, real
int8 and bf16 deploy folders built from real photos."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from photos import PHOTOS, write_photo
from tinynet import write_inverted_residual_onnx, write_tiny_onnx

from engine.backends import open_backend
from engine.backends.openvino_backend import BF16_REL_ERR_BOUND
from engine.builder.build import build
from engine.builder.config import load_config
from engine.data.labels import imagenet_wnids

SIZE = 32


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    """Largest absolute difference over the largest absolute reference logit."""
    return float(np.abs(got - want).max() / np.abs(want).max())


def batch_of(n, seed=1):
    return np.random.default_rng(seed).standard_normal((n, 3, SIZE, SIZE)).astype(np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("ov")
    return {"tiny": write_tiny_onnx(root / "tiny.onnx", size=SIZE),
            "inverted_residual": write_inverted_residual_onnx(root / "ir.onnx", size=SIZE, computed_padding=True),
            "fixed_batch": write_tiny_onnx(root / "fixed.onnx", size=SIZE, batch=1)}


@pytest.mark.parametrize("name", ["tiny", "inverted_residual", "fixed_batch"])
def test_fp32_matches_onnxruntime_fp32(models, name):
    x = batch_of(5)
    (want,) = open_backend("ort", models[name]).run(x)
    with open_backend("openvino", models[name], threads=2, precision="fp32") as ov:
        (got,) = ov.run(x)
        assert ov.describe()["inference_precision"] == "fp32" and ov.precision == "fp32"
    assert got.shape == want.shape and got.dtype == np.float32
    assert rel_err(got, want) <= 1e-4


def test_default_precision_is_fp32_never_openvinos_own_bf16(models):
    """OpenVINO picks bf16 by itself on this kind of CPU; the backend asks for f32 and reads it back."""
    import openvino.properties.hint as hints

    x = batch_of(8, seed=2)
    (want,) = open_backend("ort", models["tiny"]).run(x)
    with open_backend("openvino", models["tiny"]) as ov:
        assert str(ov.compiled.get_property(hints.inference_precision)) == "<Type: 'float32'>"
        assert ov.describe()["precision"] == "fp32"
        assert rel_err(ov.run(x)[0], want) <= 1e-4


@pytest.mark.parametrize("name", ["tiny", "inverted_residual"])
def test_bf16_is_within_the_documented_bound_and_really_bf16(models, name):
    x = batch_of(16, seed=3)
    (want,) = open_backend("ort", models[name]).run(x)
    with open_backend("openvino", models[name], precision="bf16") as ov:
        (got,) = ov.run(x)
        assert ov.describe()["inference_precision"] == "bf16"
    err = rel_err(got, want)
    assert 1e-5 < err <= BF16_REL_ERR_BOUND  # above fp32's rounding: bf16 really ran
    assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.9


def test_bad_options_are_refused_before_loading(models, tmp_path):
    with pytest.raises(ValueError, match="precision 'fp16'"):
        open_backend("openvino", models["tiny"], precision="fp16")
    with pytest.raises(RuntimeError, match="runs on the CPU"):
        open_backend("openvino", models["tiny"], device="cuda")
    with pytest.raises(FileNotFoundError, match="no such file"):
        open_backend("openvino", tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(RuntimeError, match="OpenVINO could not read it"):
        open_backend("openvino", tmp_path / "junk.onnx")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Photos in ImageNet wnid folders and the tiny net, as engine.build takes them."""
    root = tmp_path_factory.mktemp("ovbuild")
    for index, photo in zip((281, 967, 500), PHOTOS):
        for j in range(6):
            write_photo(root / "images" / imagenet_wnids()[index] / f"{photo}_{j}.jpg", photo,
                        size=(48 + 9 * j, 40 + 6 * j))
    write_tiny_onnx(root / "tinynet.onnx", size=SIZE, classes=10)
    return root


def build_folder(root, name: str, config: dict):
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return build(load_config(path), progress=False)


def check_images(folder):
    from engine.builder.calibration import iter_batches
    from engine.data.dataconfig import ModelInfo

    report = json.loads((folder / "build.json").read_text())
    config = ModelInfo.load(folder / "tinynet.json").data_config
    return report, np.concatenate([b for _, b in iter_batches(report["check_items"], config, 8)])


def test_int8_qdq_deploy_folder_runs_on_openvino(workspace):
    folder = build_folder(workspace, "int8", {
        "model": {"onnx": "tinynet.onnx"}, "dtype": "int8",
        "calibration": {"path": "images", "count": 9, "batch_size": 3}, "check": {"count": 9, "backend": "openvino"},
        "output": str(workspace / "out")})
    report, x = check_images(folder)
    assert report["check"]["backend"] == "openvino" and report["check"]["images"] == 9  # the build's check ran there
    model = folder / "tinynet.onnx"
    (ort_int8,) = open_backend("ort", model).run(x)
    (fp32,) = open_backend("ort", workspace / "tinynet.onnx").run(x)
    with open_backend("openvino", model, threads=2) as ov:
        assert ov.describe()["precision"] == "int8"
        (got,) = ov.run(x)
    assert got.shape == ort_int8.shape
    # OpenVINO runs the same QDQ graph with its own int8 kernels: close to onnxruntime's
    # int8 answers, and as close to fp32 as the build's check (on OpenVINO) found.
    assert np.mean(got.argmax(1) == ort_int8.argmax(1)) >= 0.8
    snr = 10 * np.log10(np.square(fp32).sum() / np.square(fp32 - got).sum())
    assert snr >= report["check"]["output_snr_db"] - 6


def test_bf16_build_writes_an_openvino_folder_checked_against_fp32(workspace):
    folder = build_folder(workspace, "bf16", {
        "model": {"onnx": "tinynet.onnx"}, "dtype": "bf16", "check": {"path": "images", "count": 12},
        "output": str(workspace / "out")})
    assert folder.name == f"tinynet-bf16-none-3_{SIZE}_{SIZE}-openvino"
    report, x = check_images(folder)
    check = report["check"]
    assert report["dtype"] == "bf16" and check["backend"] == "openvino" and check["images"] == 12
    assert check["top1_agreement"] >= 0.9 and 20 < check["output_snr_db"] < 120
    model = folder / "tinynet.onnx"
    with open_backend("openvino", model) as ov:  # the precision the build gave it, no flag needed
        assert ov.describe()["precision"] == "bf16" and ov.describe()["inference_precision"] == "bf16"
        (got,) = ov.run(x)
    (fp32,) = open_backend("ort", workspace / "tinynet.onnx").run(x)
    snr = 10 * np.log10(np.square(fp32).sum() / np.square(fp32 - got).sum())
    assert abs(snr - check["output_snr_db"]) < 0.5  # the check measured what this runs
    with pytest.raises(ValueError, match="use --backend openvino"):
        open_backend("ort", model)


def test_bf16_build_refuses_an_onnxruntime_check(workspace):
    from engine.builder.config import ConfigError

    path = workspace / "bad.yaml"
    path.write_text(yaml.safe_dump({"model": {"onnx": "tinynet.onnx"}, "dtype": "bf16",
                                    "check": {"backend": "ort"}}))
    with pytest.raises(ConfigError, match="check.backend: ort: a bf16 model runs on openvino"):
        load_config(path)


def test_the_python_api_takes_the_backend_and_precision(workspace):
    import engine

    photos = sorted(str(p) for p in (workspace / "images").rglob("*.jpg"))
    top1 = {}
    for backend, precision in (("ort", None), ("openvino", "bf16")):
        with engine.Classifier(onnx=str(workspace / "tinynet.onnx"), batch_size=4, backend=backend,
                               precision=precision) as clf:
            results = list(clf.stream(photos))
        assert all(r.error is None for r in results)
        top1[backend] = [r.topk[0][0] for r in results]
    assert len(top1["ort"]) == len(photos)
    assert np.mean(np.equal(top1["ort"], top1["openvino"])) >= 0.9
    with pytest.raises(engine.UsageError, match="--backend openvino runs fp32 or bf16"):
        engine.Classifier(onnx=str(workspace / "tinynet.onnx"), backend="openvino", precision="fp16")
