"""The preprocessing object's two paths: the fused kernel, and the library's own transform
for what the kernel does not do (timm's border crop mode, an interpolation it lacks), plus
the data config's validation."""
from __future__ import annotations

import numpy as np
import pytest
import timm
from photos import photo_array
from PIL import Image

from engine.data.dataconfig import DataConfig
from engine.models.library_config import data_config_for
from engine.models.preprocessing import Preprocessing

BORDER_MODEL = "deepseek_vit_412m.deepseek_v4_flash_vision_exp"  # timm crop_mode "border", 392 bicubic
IMAGES = (photo_array("chelsea"), photo_array("coffee", (997, 61)), photo_array("astronaut", (7, 5)))
OLD_MODEL_INFO_CONFIG = {"input_size": [3, 224, 224], "resize": 256, "crop": 224, "interpolation": "bilinear",
                         "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "num_classes": 1000}


def _lanczos_timm_config() -> DataConfig:
    """A real timm recipe with an interpolation the kernel does not have."""
    cfg = {"input_size": [3, 96, 96], "interpolation": "lanczos", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
           "crop_pct": 0.9, "crop_mode": "center"}
    return DataConfig(input_size=(3, 96, 96), resize=106, crop=96, interpolation="lanczos", mean=(0.5,) * 3,
                      std=(0.5,) * 3, library_transform={"library": "timm", "config": cfg}, source="a lanczos test")


def test_border_crop_mode_runs_through_timms_transform_bit_for_bit():
    config = data_config_for(BORDER_MODEL, "timm")
    assert "ResizeKeepRatio" in config.library_only_reason
    preprocessing = Preprocessing(config, BORDER_MODEL)
    assert not preprocessing.on_kernel
    assert BORDER_MODEL in preprocessing.notice and "timm's own transform, slower" in preprocessing.notice
    transform = timm.data.create_transform(**timm.data.resolve_data_config(
        pretrained_cfg=timm.models.get_pretrained_cfg(BORDER_MODEL).to_dict()))
    for img in IMAGES:
        expected = transform(Image.fromarray(img))
        assert np.array_equal(preprocessing(img), expected.numpy())
        half = np.empty(config.input_size, np.float16)
        assert np.array_equal(preprocessing(img, half), expected.half().numpy())


def test_an_interpolation_the_kernel_lacks_runs_through_the_library():
    config = _lanczos_timm_config()
    assert "lanczos" in config.kernel_limitation()
    preprocessing = Preprocessing(config, "lanczos-model")
    assert not preprocessing.on_kernel and "lanczos" in preprocessing.notice
    transform = timm.data.create_transform(**config.library_transform["config"])
    for img in IMAGES:
        assert np.array_equal(preprocessing(img), transform(Image.fromarray(img)).numpy())


def test_uint8_slots_are_refused_off_the_kernel_path():
    preprocessing = Preprocessing(_lanczos_timm_config(), "lanczos-model")
    with pytest.raises(ValueError, match=r"lanczos-model: uint8 input slots \(--normalize-on device\) need"):
        preprocessing.check_output_dtype(np.uint8)
    with pytest.raises(ValueError, match="uint8 input slots"):
        preprocessing(IMAGES[0], np.empty((3, 96, 96), np.uint8))


def test_uint8_slots_on_the_kernel_path_hold_the_resized_crop():
    name = "resnet50.a1_in1k"
    preprocessing = Preprocessing(data_config_for(name, "timm"), name)
    assert preprocessing.on_kernel and preprocessing.notice is None
    resize_crop = timm.data.create_transform(**timm.data.resolve_data_config(
        pretrained_cfg=timm.models.get_pretrained_cfg(name).to_dict())).transforms[:2]
    out = np.empty((3, 224, 224), np.uint8)
    for img in IMAGES:
        pil = Image.fromarray(img)
        for step in resize_crop:
            pil = step(pil)
        assert np.array_equal(preprocessing(img, out), np.asarray(pil).transpose(2, 0, 1))


def test_warm_up_runs_every_input_layout_on_both_paths():
    for config in (data_config_for("resnet50", "torchvision"), _lanczos_timm_config()):
        Preprocessing(config).warm_up(np.float32)


def test_a_kernel_limitation_without_a_recipe_is_refused_naming_the_model():
    with pytest.raises(ValueError, match="model my-net: the kernel cannot preprocess it .*lanczos.* no library_tr"):
        Preprocessing(DataConfig(interpolation="lanczos"), "my-net")


def test_old_model_info_configs_still_load_and_run_on_the_kernel():
    config = DataConfig.from_dict(OLD_MODEL_INFO_CONFIG)
    assert config == DataConfig() and config.kernel_limitation() is None
    assert DataConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("change, message", [
    ({"interpolation": "cubic"}, "interpolation 'cubic': choose from"),
    ({"crop": 200}, r"crop 200 does not give input_size"),
    ({"resize": 200}, "crop 224 is larger than resize 200"),
    ({"resize": [0, 224]}, r"resize \(0, 224\): need a positive int or \[height, width\]"),
    ({"input_size": [1, 224, 224]}, r"input_size \(1, 224, 224\): need \[3, height, width\]"),
    ({"num_classes": 0}, "num_classes 0: need a positive int"),
    ({"library_transform": {"library": "keras"}}, "library_transform .*: need a dict whose 'library' is one of"),
    ({"library_transform": {"library": "timm"}}, "library_transform for timm needs 'config'"),
    ({"library_only_reason": "border mode"}, "library_only_reason 'border mode' without a library_transform"),
    ({"colour": "rgb"}, r"unknown keys \['colour'\]"),
])
def test_bad_data_configs_are_refused_with_the_reason(change, message):
    with pytest.raises(ValueError, match=f"data config: {message}"):
        DataConfig.from_dict({**OLD_MODEL_INFO_CONFIG, **change})


def test_non_square_exact_resize_and_crop_round_trip():
    config = DataConfig.from_dict({**OLD_MODEL_INFO_CONFIG, "input_size": [3, 192, 256], "resize": [200, 270],
                                   "crop": [192, 256]})
    assert (config.resize, config.crop) == ((200, 270), (192, 256))
    assert DataConfig.from_dict(config.to_dict()) == config
