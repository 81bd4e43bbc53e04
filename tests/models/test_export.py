"""ONNX export round trips through onnxruntime, with the model-info file beside it."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import skimage.data
import torch
from torch import nn

from engine.data.dataconfig import DataConfig, ModelInfo
from engine.data.labels import imagenet_class_names
from engine.export import main as export_main
from engine.models import catalog, zoo
from engine.models.onnx_export import ExportCheckError, export_onnx, max_relative_error


@pytest.fixture(scope="module")
def lite0():
    return zoo.create("efficientnet_lite0")


@pytest.fixture(scope="module")
def lite0_onnx(lite0, tmp_path_factory):
    return export_onnx(lite0, tmp_path_factory.mktemp("onnx"), size=224)


def test_onnx_file_has_named_io_and_a_dynamic_batch_axis(lite0_onnx):
    assert lite0_onnx.name == "efficientnet_lite0_224.onnx"
    graph = onnx.load(str(lite0_onnx), load_external_data=False).graph
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["output"]
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 224, 224]
    assert not list(lite0_onnx.parent.glob("*.data"))  # one self-contained file


@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_matches_torch_at_any_batch(lite0, lite0_onnx, batch):
    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        expected = lite0.module(x).numpy()
    session = ort.InferenceSession(str(lite0_onnx), providers=["CPUExecutionProvider"])
    (got,) = session.run(["output"], {"input": x.numpy()})
    assert got.shape == (batch, 1000)
    assert max_relative_error(expected, got) < 1e-4


def test_model_info_travels_with_the_onnx_file(lite0, lite0_onnx):
    info = ModelInfo.load(ModelInfo.path_for(lite0_onnx))
    assert (info.name, info.library, info.model_file) == ("efficientnet_lite0", catalog.EFFICIENTNET_LIBRARY,
                                                          "efficientnet_lite0_224.onnx")
    assert info.input_name == "input" and info.output_names == ["output"]
    assert info.input_shape == ["batch", 3, 224, 224] and info.output_shapes == [["batch", 1000]]
    assert info.data_config == lite0.data_config
    assert info.class_names == list(imagenet_class_names())
    assert info.weights == lite0.weights and info.weights["sha256"].startswith("57934424")
    assert info.extra["params"] == sum(p.numel() for p in lite0.module.parameters())
    assert info.extra["gmacs"] == pytest.approx(zoo.complexity("efficientnet_lite0").gmacs)
    assert info.extra["num_classes"] == 1000 and info.extra["softmax"] is False
    assert set(info.extra["versions"]) >= {"torch", "timm", "onnx"}
    assert info.extra["versions"]["torch"] == torch.__version__


def test_exported_model_recognises_a_real_photo(lite0_onnx):
    """The ONNX model with the preprocessing its model info prescribes (torchvision's)."""
    from PIL import Image
    from torchvision import transforms

    cfg = ModelInfo.load(ModelInfo.path_for(lite0_onnx)).data_config
    tf = transforms.Compose([
        transforms.Resize(cfg.resize, interpolation=transforms.InterpolationMode.BILINEAR),
        transforms.CenterCrop(cfg.crop), transforms.ToTensor(), transforms.Normalize(cfg.mean, cfg.std)])
    x = tf(Image.fromarray(skimage.data.coffee()))[None].numpy()
    (logits,) = ort.InferenceSession(str(lite0_onnx), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    assert int(logits.argmax()) == 967  # espresso


def test_vgg_export_cli_with_the_seed_spellings(tmp_path, capsys):
    """The seed's command line. At 64x64 torchvision's VGG pools 2x2 to 7x7, which only the
    torch.export-based exporter can write; the small input keeps the check quick."""
    argv = ["--model_library", "torchvision", "--model_name", "vgg11", "--save_dir", str(tmp_path),
            "--size", "64", "--static-batch", "2", "--softmax", "--seed", "5"]
    assert export_main(argv) == 0
    out = capsys.readouterr().out
    assert "random weights (seed 5)" in out
    assert "params: 132.863 M" in out and "flops: 0.735 G" in out
    assert "max relative error" in out
    path = tmp_path / "vgg11_64.onnx"
    info = json.loads((tmp_path / "vgg11_64.json").read_text())
    assert info["input_shape"] == [2, 3, 64, 64] and info["weights"] == {"random": True, "seed": 5}
    assert info["extra"]["softmax"] is True and info["extra"]["weights_label"] == "random weights (seed 5)"
    assert (info["data_config"]["crop"], info["data_config"]["input_size"]) == (64, [3, 64, 64])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [2, 3, 64, 64]
    (probs,) = session.run(None, {"input": np.random.default_rng(0).standard_normal((2, 3, 64, 64), np.float32)})
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


class _NoisyNet(nn.Module):
    """Draws noise in its forward pass: torch and onnxruntime draw different numbers."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 1000)

    def forward(self, x):
        return self.fc(x.mean((2, 3))) + torch.rand(x.shape[0], 1000)


def test_export_fails_loudly_when_onnxruntime_disagrees(tmp_path):
    model = zoo.ZooModel(module=_NoisyNet(), name="efficientnet_lite0", library=catalog.EFFICIENTNET_LIBRARY,
                         data_config=DataConfig(), weights={"random": True, "seed": 0})
    with pytest.raises(ExportCheckError, match="relative .* \\(limit 0.0001\\).*left in place"):
        export_onnx(model, tmp_path, size=32)
    assert (tmp_path / "efficientnet_lite0_32.onnx").is_file()
    assert (tmp_path / "efficientnet_lite0_32.json").is_file()
