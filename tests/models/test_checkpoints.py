"""Checkpoint files: every layout loads into every library's VGG, whole or not at all."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from engine.models import mmcls_vgg, zoo
from engine.models.checkpoints import (
    CheckpointError,
    CheckpointMismatch,
    detect_layout,
    load_checkpoint,
    read_state_dict,
)

# mmcls's VGG-11 checkpoint keys, transcribed from mmcls's source
# (open-mmlab/mmpretrain, mmcls/models/backbones/vgg.py: `make_vgg_layer` puts one mmcv
# ConvModule per conv and a MaxPool2d per stage into `features`; the ConvModule holds
# `conv` (+ `bn`); `classifier` is Linear/ReLU/Dropout x3; configs/_base_/models/vgg11.py
# wraps it in an ImageClassifier as `backbone`, with a parameter-free ClsHead).
MMCLS_VGG11_CONV_INDICES = (0, 2, 4, 5, 7, 8, 10, 11)  # 12 and 1, 3, 6, 9 are pools
MMCLS_VGG11_KEYS = [
    f"backbone.features.{i}.conv.{p}" for i in MMCLS_VGG11_CONV_INDICES for p in ("weight", "bias")
] + [f"backbone.classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")]
TORCHVISION_VGG11_CONV_INDICES = (0, 3, 6, 8, 11, 13, 16, 18)


@pytest.fixture(scope="module")
def torchvision_vgg11(tmp_path_factory):
    """A seeded torchvision VGG-11 saved as a bare state dict, with its logits on one input."""
    model = zoo.create("vgg11", "torchvision", seed=1)
    path = tmp_path_factory.mktemp("ckpt") / "tv_vgg11.pth"
    state = model.module.state_dict()
    torch.save(state, path)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model.module(x)
    return {"path": path, "state": state, "x": x, "logits": logits}


def logits_of(model, x):
    with torch.no_grad():
        return model.module(x)


@pytest.mark.parametrize("library", ["timm", "mmcls"])
def test_torchvision_checkpoint_gives_the_same_logits_in_other_libraries(torchvision_vgg11, library):
    model = zoo.create("vgg11", library, weights=torchvision_vgg11["path"])
    torch.testing.assert_close(logits_of(model, torchvision_vgg11["x"]), torchvision_vgg11["logits"],
                               rtol=1e-5, atol=1e-5)
    assert model.weights["file"] == str(torchvision_vgg11["path"])
    assert model.weights_label.startswith("weights tv_vgg11.pth (sha256 ")
    assert len(model.weights["sha256"]) == 64


def test_mmcls_model_has_mmcls_key_names():
    with torch.device("meta"):
        assert list(mmcls_vgg.build("vgg11").state_dict()) == MMCLS_VGG11_KEYS
        bn_keys = list(mmcls_vgg.build("vgg11_bn").state_dict())
    assert bn_keys[:7] == ["backbone.features.0.conv.weight", "backbone.features.0.conv.bias",
                           "backbone.features.0.bn.weight", "backbone.features.0.bn.bias",
                           "backbone.features.0.bn.running_mean", "backbone.features.0.bn.running_var",
                           "backbone.features.0.bn.num_batches_tracked"]


def test_mmcls_layout_checkpoint_loads_into_torchvision(torchvision_vgg11, tmp_path):
    """An mmcls checkpoint as mmcls saves it: {"meta": ..., "state_dict": {backbone...}}."""
    state = torchvision_vgg11["state"]
    tv_keys = [f"features.{i}.{p}" for i in TORCHVISION_VGG11_CONV_INDICES for p in ("weight", "bias")] + [
        f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")]
    mmcls_state = {mm: state[tv] for mm, tv in zip(MMCLS_VGG11_KEYS, tv_keys)}
    path = tmp_path / "vgg11_batch256_imagenet.pth"
    torch.save({"meta": {"epoch": 100, "mmcls_version": "0.25.0"}, "state_dict": mmcls_state}, path)
    assert detect_layout(read_state_dict(path)) == "mmcls"
    model = zoo.create("vgg11", "torchvision", weights=path)
    torch.testing.assert_close(logits_of(model, torchvision_vgg11["x"]), torchvision_vgg11["logits"],
                               rtol=1e-5, atol=1e-5)


def test_timm_layout_safetensors_with_module_prefix_loads_into_mmcls(torchvision_vgg11, tmp_path):
    """timm writes the first two fc layers as 7x7 and 1x1 convs: (4096, 512, 7, 7), (4096, 4096, 1, 1)."""
    state = torchvision_vgg11["state"]
    timm_state = {k: v for k, v in state.items() if k.startswith("features.")}
    timm_state.update({
        "pre_logits.fc1.weight": state["classifier.0.weight"].reshape(4096, 512, 7, 7),
        "pre_logits.fc1.bias": state["classifier.0.bias"],
        "pre_logits.fc2.weight": state["classifier.3.weight"].reshape(4096, 4096, 1, 1),
        "pre_logits.fc2.bias": state["classifier.3.bias"],
        "head.fc.weight": state["classifier.6.weight"],
        "head.fc.bias": state["classifier.6.bias"],
    })
    import timm

    with torch.device("meta"):
        timm_shapes = {k: v.shape for k, v in timm.create_model("vgg11").state_dict().items()}
    assert {k: v.shape for k, v in timm_state.items()} == timm_shapes
    path = tmp_path / "vgg11.safetensors"
    save_file({f"module.{k}": v.contiguous() for k, v in timm_state.items()}, str(path))
    model = zoo.create("vgg11", "mmcls", weights=path)
    torch.testing.assert_close(logits_of(model, torchvision_vgg11["x"]), torchvision_vgg11["logits"],
                               rtol=1e-5, atol=1e-5)


def test_checkpoint_of_another_depth_lists_every_offending_key(torchvision_vgg11):
    with pytest.raises(CheckpointMismatch) as err:
        zoo.create("vgg13", "timm", weights=torchvision_vgg11["path"])
    e = err.value
    assert "does not fit timm vgg13; nothing was loaded" in str(e)
    assert "features.20.weight" in e.missing  # vgg13 has two convs more
    assert any(k == "features.2.weight" for k, _, _ in e.mismatched)
    assert "features.2.weight (checkpoint (128, 64, 3, 3), model (64, 64, 3, 3))" in str(e)


def test_mis_shaped_checkpoint_names_missing_unexpected_and_mismatched_keys(tmp_path):
    path = tmp_path / "ten_classes.pth"
    torch.save({"state_dict": {"backbone.classifier.6.weight": torch.zeros(10, 4096),
                               "backbone.classifier.6.bias": torch.zeros(10),
                               "backbone.extra.weight": torch.zeros(3)}}, path)
    with pytest.raises(CheckpointMismatch) as err:
        zoo.create("vgg11", "mmcls", weights=path)
    e = err.value
    assert e.unexpected == ["backbone.extra.weight"]
    assert "backbone.features.0.conv.weight" in e.missing and len(e.missing) == 20
    assert [k for k, _, _ in e.mismatched] == ["backbone.classifier.6.bias", "backbone.classifier.6.weight"]
    text = str(e)
    assert str(path) in text
    assert "missing keys (20)" in text and "unexpected keys (1): backbone.extra.weight" in text
    assert "backbone.classifier.6.weight (checkpoint (10, 4096), model (1000, 4096))" in text


def test_a_failed_load_changes_nothing(tmp_path):
    model = zoo.create("efficientnet_lite0")
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    state = dict(before)
    state["_fc.weight"] = torch.ones(1000, 1280)  # fits
    state["_fc.bias"] = torch.ones(10)  # does not
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointMismatch, match="_fc.bias"):
        load_checkpoint(model.module, path, target="efficientnet_lite0")
    for k, v in model.module.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_wrappers_and_module_prefix_are_unwrapped(tmp_path):
    tensors = {"features.0.weight": torch.arange(6.0).reshape(2, 3), "features.0.bias": torch.ones(2)}
    for wrapper in ("state_dict", "model"):
        path = tmp_path / f"{wrapper}.pt"
        torch.save({wrapper: {f"module.{k}": v for k, v in tensors.items()}, "epoch": 3}, path)
        got = read_state_dict(path)
        assert got.keys() == tensors.keys()
        assert all(torch.equal(got[k], tensors[k]) for k in tensors)


def test_missing_unreadable_and_code_carrying_files_name_the_path(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(CheckpointError, match=f"{missing}: no such file"):
        zoo.create("vgg11", "mmcls", weights=missing)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=f"{garbage}: cannot be read"):
        read_state_dict(garbage)
    bad_safetensors = tmp_path / "broken.safetensors"
    bad_safetensors.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(CheckpointError, match=f"{bad_safetensors}: cannot be read"):
        read_state_dict(bad_safetensors)
    pickled = tmp_path / "code.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "callback": ExecutesOnLoad()}, pickled)
    with pytest.raises(CheckpointError, match=f"{pickled}: cannot be read"):
        read_state_dict(pickled)
    empty = tmp_path / "empty.pth"
    torch.save({"epoch": 1}, empty)
    with pytest.raises(CheckpointError, match=f"{empty}: no state dict in it"):
        read_state_dict(empty)


class ExecutesOnLoad:
    """An object whose unpickling would run code: weights_only loading must refuse it."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_layout_detection():
    assert detect_layout(["features.0.weight", "classifier.0.weight"]) == "torchvision"
    assert detect_layout(["features.0.weight", "pre_logits.fc1.weight", "head.fc.weight"]) == "timm"
    assert detect_layout(["backbone.features.0.conv.weight"]) == "mmcls"
    assert detect_layout(["_conv_stem.weight"]) is None


def test_checkpoint_without_batchnorm_counters_loads(tmp_path):
    """Old checkpoints lack BatchNorm's num_batches_tracked (unused in inference)."""
    packaged = zoo.create("efficientnet_lite0")
    state = {k: v for k, v in packaged.module.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pth"
    torch.save(state, path)
    model = zoo.create("efficientnet_lite0", weights=path)
    assert int(model.module._bn0.num_batches_tracked) == 0
    assert torch.equal(model.module._fc.weight, packaged.module._fc.weight)
    assert model.weights == {"file": str(path.resolve()), "sha256": model.weights["sha256"]}
