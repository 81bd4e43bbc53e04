"""The kernel against the libraries' own eval transforms, bit for bit, on real PIL images.

torchvision's ``Resize + CenterCrop + ToTensor + Normalize`` (bilinear, bicubic, nearest;
int and (height, width) sizes) and timm's ``create_transform`` for the distinct data
configs of the installed timm's pretrained models, on real photos (scikit-image's, via
``photos``) and synthetic images of odd, extreme and tiny sizes.
"""
import math

import numpy as np
import pytest
import timm
import torch
from photos import PHOTOS, photo_array
from PIL import Image
from timm.data import create_transform, resolve_data_config
from torchvision import transforms
from torchvision.transforms import InterpolationMode

from engine.kernels import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    kernel_limitation,
    resize_crop_normalize,
    resize_crop_normalize_batch,
    resize_crop_uint8,
)
from engine.kernels.resample_plan import resize_crop_plan

MODES = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
         "nearest": InterpolationMode.NEAREST}
CROP_PCTS = (0.875, 0.9, 0.95, 1.0)
CROPS = (224, 240, 256, 288, 320, 384)


def _library(resize, crop, interpolation, mean=IMAGENET_MEAN, std=IMAGENET_STD, normalize=True):
    """torchvision's eval transform; without ``normalize`` it stops at the uint8 crop (CHW)."""
    steps = [transforms.Resize(resize, interpolation=MODES[interpolation]), transforms.CenterCrop(crop)]
    if not normalize:
        return lambda img: np.asarray(transforms.Compose(steps)(img)).transpose(2, 0, 1)
    compose = transforms.Compose([*steps, transforms.ToTensor(), transforms.Normalize(mean, std)])
    return lambda img: compose(img).numpy()


def _assert_matches(img, resize, crop, interpolation, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """uint8, float32 and float16 kernel outputs equal the library's on ``img`` (HWC uint8)."""
    pil = Image.fromarray(np.ascontiguousarray(img))
    label = f"{img.shape[:2]} resize {resize} crop {crop} {interpolation}"
    want8 = _library(resize, crop, interpolation, normalize=False)(pil)
    got8 = resize_crop_uint8(img, resize=resize, crop=crop, interpolation=interpolation)
    assert np.array_equal(got8, want8), f"uint8 mismatch: {label}"
    want = _library(resize, crop, interpolation, mean, std)(pil)
    got = resize_crop_normalize(img, resize=resize, crop=crop, interpolation=interpolation,
                                mean=mean, std=std)
    assert np.array_equal(got, want), f"float32 mismatch: {label}"
    half = resize_crop_normalize(img, resize=resize, crop=crop, interpolation=interpolation,
                                 mean=mean, std=std, dtype=np.float16)
    assert np.array_equal(half, torch.from_numpy(want).half().numpy()), f"float16 mismatch: {label}"


def _synthetic(h, w, seed=0):
    """Smooth gradients with noise and hard edges: overshoot for bicubic's negative lobes."""
    rng = np.random.default_rng(seed + 7919 * h + w)
    yy, xx = np.mgrid[0:h, 0:w]
    base = (yy * 255 // max(h - 1, 1) + xx * 3) % 256
    img = np.stack([base, 255 - base, (base * 7) % 256], axis=-1).astype(np.int64)
    img += rng.integers(-20, 21, img.shape)
    img[:, : w // 3] = np.where(rng.random((h, w // 3, 1)) < 0.5, 0, 255)
    return np.clip(img, 0, 255).astype(np.uint8)


def _timm_configs():
    """Distinct (input size, interpolation, crop_pct, crop_mode, mean, std) of the installed
    timm's pretrained models, resolved as timm resolves them, with one model naming each."""
    configs = {}
    for name in timm.list_pretrained():
        cfg = resolve_data_config(pretrained_cfg=timm.models.get_pretrained_cfg(name).to_dict())
        key = (cfg["input_size"], cfg["interpolation"], cfg["crop_pct"], cfg["crop_mode"],
               tuple(cfg["mean"]), tuple(cfg["std"]))
        configs.setdefault(key, (name, cfg))
    return [configs[key] for key in sorted(configs, key=repr)]


def _kernel_args(cfg):
    """The kernel's (resize, crop, interpolation) for a timm eval config, as timm's
    ``transforms_imagenet_eval`` builds it (None for the crop modes the kernel lacks)."""
    crop = cfg["input_size"][1:]
    scaled = tuple(math.floor(side / cfg["crop_pct"]) for side in crop)
    if cfg["crop_mode"] == "squash":
        return scaled, crop, cfg["interpolation"]
    if cfg["crop_mode"] == "center" and scaled[0] == scaled[1] and crop[0] == crop[1]:
        return scaled[0], crop[0], cfg["interpolation"]
    return None


TIMM_CONFIGS = _timm_configs()


def test_timm_configs_cover_the_ranges_the_issue_names():
    covered = [(cfg, args) for _, cfg in TIMM_CONFIGS if (args := _kernel_args(cfg))]
    assert len(covered) >= 100
    assert {args[2] for _, args in covered} == {"bilinear", "bicubic"}
    assert {0.875, 0.9, 0.95, 1.0} <= {cfg["crop_pct"] for cfg, _ in covered}
    assert any(cfg["crop_mode"] == "squash" for cfg, _ in covered)
    for cfg, args in covered:
        if cfg["crop_pct"] > 1:  # the crop is larger than the resize: torchvision pads
            assert "CenterCrop would pad" in kernel_limitation(*args), cfg
        else:
            assert kernel_limitation(*args) is None, cfg


def _check_timm_config(name, cfg, images):
    args = _kernel_args(cfg)
    if args is None or kernel_limitation(*args) is not None:
        pytest.skip(f"{name}: {cfg} is not in the kernel")
    transform = create_transform(**cfg)
    for img in images:
        want = transform(Image.fromarray(img)).numpy()
        got = resize_crop_normalize(img, resize=args[0], crop=args[1], interpolation=args[2],
                                    mean=cfg["mean"], std=cfg["std"])
        assert np.array_equal(got, want), f"{name} {cfg} on {img.shape[:2]}"


@pytest.mark.parametrize("index", range(0, len(TIMM_CONFIGS), 7))
def test_timm_eval_transforms_of_installed_models(index):
    name, cfg = TIMM_CONFIGS[index]
    _check_timm_config(name, cfg, [photo_array("chelsea"), _synthetic(333, 250)])


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(TIMM_CONFIGS)))
def test_timm_eval_transforms_of_installed_models_all(index):
    name, cfg = TIMM_CONFIGS[index]
    _check_timm_config(name, cfg, [photo_array(p) for p in PHOTOS] + [_synthetic(480, 640)])


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize("crop_pct", CROP_PCTS)
def test_crop_pct_sizes_on_real_photos(interpolation, crop_pct):
    for i, crop in enumerate((224, 288, 384)):
        photo = photo_array(PHOTOS[i % len(PHOTOS)])
        _assert_matches(photo, math.floor(crop / crop_pct), crop, interpolation)


@pytest.mark.slow
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
@pytest.mark.parametrize("crop", CROPS)
@pytest.mark.parametrize("crop_pct", CROP_PCTS)
def test_crop_pct_sizes_on_real_photos_all(interpolation, crop, crop_pct):
    for name in PHOTOS:
        _assert_matches(photo_array(name), math.floor(crop / crop_pct), crop, interpolation)
        _assert_matches(photo_array(name, (123, 457)), math.floor(crop / crop_pct), crop, interpolation)


ODD_SIZES = [(1, 1), (2, 3), (3, 2), (3, 2000), (2000, 5), (17, 999), (999, 17), (375, 500),
             (500, 375), (1270, 264), (255, 257), (256, 256), (257, 513)]


@pytest.mark.parametrize("size", ODD_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("interpolation", ["bicubic", "nearest"])
def test_odd_extreme_and_tiny_images(size, interpolation):
    _assert_matches(_synthetic(*size), 256, 224, interpolation)


@pytest.mark.parametrize("resize, crop", [
    ((256, 256), 224),      # timm's squash at crop_pct 0.875
    ((240, 320), (224, 300)),
    ((300, 200), (300, 200)),
    ((64, 900), (60, 880)),
])
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
def test_squash_and_rectangular_crops(resize, crop, interpolation):
    """(height, width) resizes, up on one axis and down on the other for most images here."""
    for size in [(500, 375), (100, 1200), (1300, 280), (7, 5), (480, 640)]:
        _assert_matches(_synthetic(*size), resize, crop, interpolation)
    _assert_matches(photo_array("coffee"), resize, crop, interpolation)


def test_up_and_down_mixes_take_both_pass_orders():
    """Squash resizes that shrink one axis and grow the other, in both of Pillow's pass orders."""
    orders = set()
    for size, resize in [((900, 120), (256, 256)), ((120, 900), (256, 256)), ((2000, 300), (256, 400)),
                         ((50, 1000), (300, 128))]:
        plan = resize_crop_plan(*size, resize, (224, 100), "bicubic")
        orders.add(plan.vertical_first)
        _assert_matches(_synthetic(*size), resize, (224, 100), "bicubic")
    assert orders == {True, False}


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
def test_npz_chw_views_and_strided_inputs(interpolation):
    chw = np.ascontiguousarray(photo_array("astronaut").transpose(2, 0, 1))
    view = chw.transpose(1, 2, 0)  # what the engine passes: an npz CHW array seen as HWC
    for resize, crop in [(256, 224), ((320, 300), (288, 256)), (438, 384)]:
        _assert_matches(view, resize, crop, interpolation)
    flipped = _synthetic(700, 900)[::-2, 50:850:3]
    _assert_matches(flipped, 256, (224, 200), interpolation)


def test_batch_with_bicubic_and_rectangular_crops():
    images = [photo_array("chelsea"), _synthetic(90, 1200), _synthetic(3, 2),
              np.ascontiguousarray(photo_array("coffee").transpose(2, 0, 1)).transpose(1, 2, 0)]
    for dtype in (np.float32, np.uint8):
        out = np.empty((len(images), 3, 240, 200), dtype)
        resize_crop_normalize_batch(images, out, resize=(260, 230), crop=(240, 200),
                                    interpolation="bicubic", workers=2)
        for i, img in enumerate(images):
            one = (resize_crop_uint8 if dtype == np.uint8 else resize_crop_normalize)(
                img, resize=(260, 230), crop=(240, 200), interpolation="bicubic")
            assert np.array_equal(out[i], one), (dtype, i)


def test_kernel_limitation_says_why():
    assert kernel_limitation(256, 224, "bicubic") is None
    assert kernel_limitation((256, 300), (224, 300), "nearest") is None
    assert kernel_limitation(256, (224, 256), "bilinear") is None
    assert "interpolation 'lanczos' is not in the kernel" in kernel_limitation(256, 224, "lanczos")
    assert "CenterCrop would pad" in kernel_limitation(224, 256, "bilinear")
    assert "CenterCrop would pad" in kernel_limitation((256, 200), (224, 224), "bicubic")
    assert "CenterCrop would pad" in kernel_limitation(256, (224, 300), "bicubic")
    assert "must be positive" in kernel_limitation(0, 224, "bilinear")
    assert "expected an int or a (height, width)" in kernel_limitation((1, 2, 3), 224, "bilinear")
    assert "expected an int or a (height, width)" in kernel_limitation(256, 22.5, "bilinear")
    for reason in (kernel_limitation(256, 224, "box"), kernel_limitation(-1, 2, "bilinear")):
        assert "\n" not in reason


@pytest.mark.parametrize("kwargs, message", [
    ({"interpolation": "lanczos"}, "interpolation 'lanczos' is not in the kernel"),
    ({"resize": (256, 200), "crop": 224}, "CenterCrop would pad"),
    ({"resize": (0, 256)}, r"resize \(0, 256\): must be positive"),
    ({"crop": (224, 224, 3)}, "crop"),
    ({"resize": [[256], 256]}, r"resize \(\[256\], 256\): expected an int or a \(height, width\) pair"),
    ({"interpolation": ["bicubic"]}, r"interpolation \['bicubic'\] is not in the kernel"),
])
def test_unsupported_transforms_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        resize_crop_normalize(_synthetic(300, 300), **kwargs)
    with pytest.raises(ValueError, match=message):
        resize_crop_normalize_batch([_synthetic(300, 300)], np.empty((1, 3, 224, 224), np.float32), **kwargs)


def test_sizes_as_lists_from_json_configs():
    img = _synthetic(300, 400)
    want = resize_crop_normalize(img, resize=(256, 280), crop=(224, 240), interpolation="bicubic")
    got = resize_crop_normalize(img, resize=[256, 280], crop=[224, 240], interpolation="bicubic")
    assert np.array_equal(got, want)


def test_out_shape_follows_the_rectangular_crop():
    img = _synthetic(300, 400)
    out = np.empty((3, 200, 240), np.float32)
    assert resize_crop_normalize(img, out, crop=(200, 240), interpolation="bicubic") is out
    with pytest.raises(ValueError, match=r"out: shape \(3, 240, 200\), expected \(3, 200, 240\)"):
        resize_crop_normalize(img, np.empty((3, 240, 200), np.float32), crop=(200, 240))
