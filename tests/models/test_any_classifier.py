"""Any timm / torchvision image classifier by name (issue 17): resolution, errors, and the whole
path. For several families from both libraries a ``--weights`` file made here goes through
``engine.run --model`` on real photo files, and the engine's outputs equal the library's own
network on the library's own eval transform (timm's ``create_transform(**resolve_data_config)``,
torchvision's ``weights.transforms()``) within 1e-4."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torchvision
from photos import write_photo
from PIL import Image

from engine.models import zoo
from engine.models.catalog import UnknownModelError
from engine.models.library_models import resolve_model_ref
from engine.models.onnx_export import max_relative_error

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = (("chelsea", ".jpg", None), ("coffee", ".png", (300, 200)), ("astronaut", ".jpg", (180, 260)))
FAMILIES = [("timm", "resnet18"), ("timm", "mobilenetv3_small_100"),
            ("torchvision", "mobilenet_v3_small"), ("torchvision", "squeezenet1_0")]
MORE_FAMILIES = [("timm", "efficientnet_b0"), ("timm", "convnext_atto"), ("timm", "regnetx_002"),
                 ("timm", "vit_tiny_patch16_224"), ("timm", "resnet50.a1_in1k"), ("torchvision", "resnet18"),
                 ("torchvision", "shufflenet_v2_x0_5"), ("torchvision", "efficientnet_b0"),
                 ("torchvision", "mnasnet0_5"), ("torchvision", "regnet_y_400mf")]


def _library_network(library: str, name: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    if library == "timm":
        return timm.create_model(name, pretrained=False).eval()
    return torchvision.models.get_model(name, weights=None).eval()


def _library_transform(library: str, name: str, network: torch.nn.Module):
    if library == "timm":
        return timm.data.create_transform(**timm.data.resolve_data_config({}, model=network))
    return torchvision.models.get_model_weights(name).DEFAULT.transforms()


@pytest.fixture(scope="module")
def photo_files(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for name, suffix, size in PHOTOS:
        paths.append(folder / f"{name}{suffix}")
        write_photo(paths[-1], name, size=size)
    return paths


def _engine_run(tmp_path: Path, photo_files: list[Path], *args) -> tuple[np.ndarray, str]:
    datalist = tmp_path / "datalist.txt"
    datalist.write_text("".join(f"{p}\n" for p in photo_files))
    out = tmp_path / "out"
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-m", "engine.run", "--datalist", datalist, *map(str, args),
                           "--path_output", out, "-b", "2", "--workers", "1", "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    outputs = [np.load(out / f"output_{i:06d}.npz")["output_0"] for i in range(len(photo_files))]
    return np.concatenate(outputs), proc.stderr


def _check_family(tmp_path: Path, photo_files: list[Path], library: str, name: str) -> str:
    """engine.run's stderr, once its outputs are checked against the library's."""
    network = _library_network(library, name, seed=7)
    weights = tmp_path / ("weights.safetensors" if library == "timm" else "weights.pth")
    if weights.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(weights))
    else:
        torch.save(network.state_dict(), weights)
    got, stderr = _engine_run(tmp_path, photo_files, "--model", name, "--model-library", library,
                              "--weights", weights)

    transform = _library_transform(library, name, network)
    with torch.no_grad():
        expected = np.concatenate([network(transform(Image.open(p).convert("RGB"))[None]).numpy()
                                   for p in photo_files])
    assert got.shape == expected.shape
    assert max_relative_error(expected, got) <= 1e-4, (library, name, max_relative_error(expected, got))
    return stderr


@pytest.mark.parametrize(("library", "name"), FAMILIES)
def test_engine_run_equals_the_library_on_its_own_transform(tmp_path, photo_files, library, name):
    _check_family(tmp_path, photo_files, library, name)


@pytest.mark.slow
@pytest.mark.parametrize(("library", "name"), MORE_FAMILIES)
def test_more_families_equal_the_library_on_its_own_transform(tmp_path, photo_files, library, name):
    _check_family(tmp_path, photo_files, library, name)


@pytest.mark.slow
def test_a_model_onnx_cannot_hold_runs_on_the_torch_backend(tmp_path, photo_files):
    """VOLO's exported graph keeps the example's batch of 1 (onnxruntime refuses batch 3):
    engine.export fails naming that, and engine.run runs the model on the torch backend
    with a one-line notice, its outputs still the library's."""
    export = subprocess.run([sys.executable, "-m", "engine.export", "--model-name", "volo_d1_224",
                             "--save-dir", tmp_path / "onnx"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert export.returncode == 1
    assert "engine.export: error:" in export.stderr and "onnxruntime could not run it" in export.stderr
    stderr = _check_family(tmp_path, photo_files, "timm", "volo_d1_224")
    notices = [line for line in stderr.splitlines() if "runs on the torch backend" in line]
    assert len(notices) == 1 and "volo_d1_224" in notices[0] and "onnxruntime could not run it" in notices[0]
    assert "backend torch/cpu" in stderr


def test_the_default_library_is_timm_when_it_has_the_name_else_torchvision():
    assert resolve_model_ref("resnet18").library == "timm"
    assert resolve_model_ref("resnet50.a1_in1k").library == "timm"
    assert resolve_model_ref("mobilenet_v3_small").library == "torchvision"
    assert resolve_model_ref("resnet18", "torchvision").library == "torchvision"
    assert resolve_model_ref("vgg11").library == "timm" and resolve_model_ref("vgg11").in_table
    assert not resolve_model_ref("resnet18").in_table


def test_unknown_names_and_wrong_libraries_are_refused_with_what_exists():
    with pytest.raises(UnknownModelError, match=r"'resnet5O' is not in the zoo's table .*close matches: resnet50"):
        resolve_model_ref("resnet5O")
    with pytest.raises(UnknownModelError, match=r"'convnext_atto' is not offered by torchvision .*it is by timm"):
        resolve_model_ref("convnext_atto", "torchvision")
    with pytest.raises(UnknownModelError, match=r"'squeezenet1_0' is not offered by timm .*it is by torchvision"):
        resolve_model_ref("squeezenet1_0", "timm")
    with pytest.raises(UnknownModelError, match=r"'resnet18' is not offered by 'mmcls', which has the VGG family"):
        resolve_model_ref("resnet18", "mmcls")


def test_a_library_model_carries_its_library_data_config_and_counts():
    spec = zoo.get_spec("convnext_atto")
    assert spec.data_config.interpolation == "bicubic" and spec.data_config.input_size == (3, 224, 224)
    counts = zoo.complexity("convnext_atto")
    network = timm.create_model("convnext_atto")
    assert counts.params == sum(p.numel() for p in network.parameters())
    assert 0.4 < counts.gmacs < 0.7


def test_a_checkpoint_of_another_network_is_refused_naming_the_keys(tmp_path):
    weights = tmp_path / "other.pth"
    torch.save(_library_network("torchvision", "squeezenet1_0", seed=0).state_dict(), weights)
    with pytest.raises(ValueError, match="resnet18"):
        zoo.create("resnet18", "timm", weights=weights)
