"""The model reaches a node as bytes and lands in a per-node cache keyed by content hash."""
from __future__ import annotations

import onnxruntime as ort

from engine.cluster.model_package import ModelPackage
from engine.data.dataconfig import ModelInfo


def test_a_package_unpacks_into_its_hash_folder_once(tiny_model, tmp_path):
    package = ModelPackage.read(str(tiny_model))
    path = package.unpack(tmp_path)
    assert path == str(tmp_path / package.digest / "tiny.onnx")
    assert ModelInfo.load(ModelInfo.path_for(path)).data_config == ModelInfo.load(
        ModelInfo.path_for(tiny_model)).data_config
    ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    written = (tmp_path / package.digest / "tiny.onnx").stat().st_mtime_ns
    assert package.unpack(tmp_path) == path
    assert (tmp_path / package.digest / "tiny.onnx").stat().st_mtime_ns == written


def test_another_model_info_is_another_package(tiny_model, tmp_path):
    copy = tmp_path / "src" / "tiny.onnx"
    copy.parent.mkdir()
    copy.write_bytes(tiny_model.read_bytes())
    info = ModelInfo.load(ModelInfo.path_for(tiny_model))
    info.name = "renamed"
    info.save(ModelInfo.path_for(copy))
    assert ModelPackage.read(str(copy)).digest != ModelPackage.read(str(tiny_model)).digest
