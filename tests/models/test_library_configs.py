"""Data configs read from timm and torchvision, and the preprocessing built from them, bit for
bit against the libraries' own eval transforms on real photos and odd/extreme/tiny images."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import timm
import torchvision
from photos import PHOTOS, photo_array
from PIL import Image
from timm.models import get_pretrained_cfg

from engine.data.dataconfig import DataConfig
from engine.models.library_config import at_input_size, data_config_for
from engine.models.preprocessing import Preprocessing

# bicubic and bilinear; crop_pct 0.875 / 0.9 / 0.95 / 1.0; center and squash; 224 to 448
TIMM_NAMES = (
    "resnet50.a1_in1k", "convnext_tiny", "vit_base_patch16_384", "efficientnet_b3", "deit_small_patch16_224",
    "regnety_040", "vgg16_bn.tv_in1k", "resnet50.tv_in1k", "mobilenetv3_large_100", "inception_v3.tv_in1k",
    "swin_base_patch4_window12_384", "convnext_tiny.fb_in22k_ft_in1k_384", "beit_base_patch16_224",
    "tf_efficientnet_b4", "eva02_base_patch14_448.mim_in22k_ft_in22k_in1k", "tf_efficientnet_b2",
    "mobilevit_s.cvnets_in1k", "resnetv2_50x1_bit.goog_in21k_ft_in1k", "deit_base_patch16_384",
    "efficientnet_b0.ra_in1k",
)
TORCHVISION_NAMES = ("resnet50", "efficientnet_b7", "vit_b_16", "regnet_y_16gf", "convnext_tiny", "swin_t",
                     "mobilenet_v3_large", "inception_v3", "efficientnet_v2_s", "efficientnet_b4")
# timm's crop_mode "border" (ResizeKeepRatio + CenterCropOrPad): the library path
BORDER_MODEL = "deepseek_vit_412m.deepseek_v4_flash_vision_exp"
# (width, height): odd, extreme both ways, tiny
SYNTHETIC_SIZES = ((517, 333), (997, 61), (61, 997), (7, 5), (1, 1))
SAMPLED_IN_DEFAULT_RUN = 6


def _timm_transform(name: str):
    cfg = timm.data.resolve_data_config(pretrained_cfg=get_pretrained_cfg(name).to_dict())
    return timm.data.create_transform(**cfg)


def _torchvision_transform(name: str):
    return torchvision.models.get_model_weights(name).DEFAULT.transforms()


@functools.cache
def _images() -> tuple[np.ndarray, ...]:
    photos = tuple(photo_array(name) for name in PHOTOS)
    return photos + tuple(photo_array("coffee", size) for size in SYNTHETIC_SIZES)


@functools.cache
def _distinct_timm_configs() -> dict[tuple, str]:
    """One pretrained tag per distinct resolved data config of the installed timm."""
    distinct = {}
    for name in timm.list_pretrained():
        cfg = timm.data.resolve_data_config(pretrained_cfg=get_pretrained_cfg(name).to_dict())
        key = tuple((k, tuple(v) if isinstance(v, tuple | list) else v) for k, v in sorted(cfg.items()))
        distinct.setdefault(key, name)
    return distinct


def _sampled_timm_names(count: int | None) -> list[str]:
    names = sorted(_distinct_timm_configs().values())
    if count is None:
        return names
    return names[:: max(1, len(names) // count)][:count]


def _assert_equal_to_library(preprocessing: Preprocessing, transform) -> None:
    for img in _images():
        expected = transform(Image.fromarray(img)).numpy()
        got = preprocessing(img)
        assert got.shape == expected.shape == tuple(preprocessing.config.input_size)
        assert np.array_equal(got, expected), (preprocessing.config, img.shape)
    chw_view = np.ascontiguousarray(_images()[0].transpose(2, 0, 1)).transpose(1, 2, 0)
    assert np.array_equal(preprocessing(chw_view), transform(Image.fromarray(_images()[0])).numpy())


@pytest.mark.parametrize("name", TIMM_NAMES)
def test_timm_models_preprocess_on_the_kernel_as_timm_does(name):
    preprocessing = Preprocessing(data_config_for(name, "timm"), name)
    assert preprocessing.on_kernel, preprocessing.reason
    _assert_equal_to_library(preprocessing, _timm_transform(name))


@pytest.mark.parametrize("name", TORCHVISION_NAMES)
def test_torchvision_models_preprocess_on_the_kernel_as_their_weights_transforms(name):
    preprocessing = Preprocessing(data_config_for(name, "torchvision"), name)
    assert preprocessing.on_kernel, preprocessing.reason
    _assert_equal_to_library(preprocessing, _torchvision_transform(name))


def test_the_named_models_cover_at_least_20_distinct_configs_of_every_kind():
    configs = {data_config_for(n, "timm") for n in TIMM_NAMES} | {
        data_config_for(n, "torchvision") for n in TORCHVISION_NAMES}
    shapes = {(c.input_size, c.resize, c.crop, c.interpolation, c.mean, c.std) for c in configs}
    assert len(shapes) >= 20
    assert {c.interpolation for c in configs} >= {"bilinear", "bicubic"}
    pcts = {c.library_transform["config"]["crop_pct"] for c in configs if c.library_transform["library"] == "timm"}
    assert pcts >= {0.875, 0.9, 0.95, 1.0}
    assert {c.input_size[1] for c in configs} >= {224, 288, 384}


@pytest.mark.parametrize("name", _sampled_timm_names(SAMPLED_IN_DEFAULT_RUN))
def test_sampled_timm_configs_preprocess_as_timm_does(name):
    _assert_equal_to_library(Preprocessing(data_config_for(name, "timm"), name), _timm_transform(name))


@pytest.mark.slow
def test_every_distinct_timm_config_preprocesses_as_timm_does():
    names = _sampled_timm_names(None)
    assert len(names) >= 100
    for name in names:
        _assert_equal_to_library(Preprocessing(data_config_for(name, "timm"), name), _timm_transform(name))


@pytest.mark.slow
def test_every_torchvision_classifier_with_weights_preprocesses_as_its_transforms():
    seen = set()
    for name in torchvision.models.list_models(module=torchvision.models):
        config = data_config_for(name, "torchvision")
        if config.library_transform is None or config in seen:
            continue
        seen.add(config)
        _assert_equal_to_library(Preprocessing(config, name), _torchvision_transform(name))
    assert len(seen) >= 10


def test_timm_resize_is_what_timm_computes_not_a_rounding_of_it():
    config = data_config_for("resnet50.a1_in1k", "timm")  # 224 / 0.95 = 235.79: timm floors it
    assert (config.resize, config.crop, config.interpolation) == (235, 224, "bicubic")
    assert config.source == "timm pretrained_cfg of resnet50.a1_in1k"


def test_torchvision_config_is_its_default_weights_transforms():
    config = data_config_for("resnet50", "torchvision")
    assert (config.resize, config.crop, config.interpolation) == (232, 224, "bilinear")
    assert config.library_transform == {"library": "torchvision", "weights": "ResNet50_Weights.IMAGENET1K_V2"}
    big = data_config_for("efficientnet_b7", "torchvision")
    assert (big.input_size, big.resize, big.interpolation) == ((3, 600, 600), 600, "bicubic")


def test_squash_mode_is_an_exact_size_resize():
    config = data_config_for("eva02_base_patch14_448.mim_in22k_ft_in22k_in1k", "timm")
    assert (config.resize, config.crop) == ((448, 448), 448)


@pytest.mark.parametrize("size", [160, 320])
def test_timm_config_at_another_export_size_is_timms_at_that_size(size):
    name = "deit_small_patch16_224"
    config = at_input_size(data_config_for(name, "timm"), size)
    cfg = timm.data.resolve_data_config(pretrained_cfg=get_pretrained_cfg(name).to_dict())
    transform = timm.data.create_transform(**{**cfg, "input_size": (3, size, size)})
    assert config.input_size == (3, size, size)
    _assert_equal_to_library(Preprocessing(config, name), transform)


def test_torchvision_config_at_another_size_scales_resize_and_drops_the_recipe():
    config = at_input_size(data_config_for("resnet50", "torchvision"), 112)
    assert (config.input_size, config.resize, config.crop, config.library_transform) == ((3, 112, 112), 116, 112,
                                                                                          None)


def test_configs_survive_the_model_info_json_round_trip():
    import json

    for config in (data_config_for("resnet50.a1_in1k", "timm"), data_config_for("resnet50", "torchvision"),
                   data_config_for(BORDER_MODEL, "timm"),
                   data_config_for("eva02_base_patch14_448.mim_in22k_ft_in22k_in1k", "timm")):
        assert DataConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_unknown_library_and_unknown_timm_name_are_refused():
    with pytest.raises(ValueError, match="library 'keras'"):
        data_config_for("resnet50", "keras")
    with pytest.raises(ValueError, match="no pretrained config"):
        data_config_for("not_a_model_at_all", "timm")
    with pytest.raises(ValueError, match="'fasterrcnn_resnet50_fpn': not one of torchvision's classifiers"):
        data_config_for("fasterrcnn_resnet50_fpn", "torchvision")
