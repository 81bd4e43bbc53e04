"""resize_crop_* kernels: bit-exact parity with Pillow 13 + torchvision, edge cases, errors."""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import functional as TF

from engine.kernels import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    resize_crop_normalize,
    resize_crop_normalize_batch,
    resize_crop_uint8,
)
from engine.kernels.resample_plan import crop_offset, resize_crop_plan, resized_size


def _pillow_crop(img, resize=256, crop=224):
    """Pillow resize (shorter side to ``resize``, BILINEAR) then centre crop, uint8 CHW."""
    h, w = img.shape[:2]
    out_h, out_w = resized_size(h, w, resize)
    resized = np.asarray(Image.fromarray(img).resize((out_w, out_h), Image.BILINEAR))
    top, left = crop_offset(out_h, crop), crop_offset(out_w, crop)
    return np.ascontiguousarray(resized[top:top + crop, left:left + crop].transpose(2, 0, 1))


def _torch_normalize(chw_uint8, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """torchvision's ToTensor + Normalize on a uint8 CHW crop."""
    tensor = TF.to_tensor(Image.fromarray(np.ascontiguousarray(chw_uint8.transpose(1, 2, 0))))
    return TF.normalize(tensor, mean, std).numpy()


def _image(rng, h, w):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _random_sizes(n, seed=2024):
    """Seeded sizes. Most: shorter side 1..1200 px log-uniform, aspect 1:1..24:1 either
    way (up- and downscales; a bound on the aspect keeps Pillow's full-size reference
    resize cheap, the edge cases below go to 235:1). One in eight: taller than 2:1 with a
    width above 256, where Pillow 13 runs the vertical pass first."""
    rng = np.random.default_rng(seed)
    n_tall = n // 8
    sizes = []
    for _ in range(n - n_tall):
        short = int(np.exp(rng.uniform(0, np.log(1200))))
        long = min(int(short * np.exp(rng.uniform(0, np.log(24)))), 3000)
        sizes.append((short, long) if rng.random() < 0.5 else (long, short))
    for _ in range(n_tall):
        w = int(rng.integers(257, 600))
        sizes.append((int(rng.integers(2 * w + 1, 5 * w)), w))
    return sizes


def _numpy_normalize(chw_uint8, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """ToTensor + Normalize in numpy float32, operation by operation as torchvision does
    them (``test_normalization_matches_torch_float32_arithmetic`` pins that to torch)."""
    m = np.asarray(mean, np.float32)[:, None, None]
    s = np.asarray(std, np.float32)[:, None, None]
    return (chw_uint8.astype(np.float32) / np.float32(255) - m) / s


RANDOM_SIZES = _random_sizes(300)


def test_random_sizes_cover_both_directions_and_pass_orders():
    plans = [resize_crop_plan(h, w, 256, 224) for h, w in RANDOM_SIZES]
    assert any(min(h, w) < 256 for h, w in RANDOM_SIZES)
    assert any(min(h, w) > 256 for h, w in RANDOM_SIZES)
    assert sum(p.vertical_first for p in plans) >= 10
    assert sum(not p.vertical_first for p in plans) >= 100
    assert any(max(h, w) > 15 * min(h, w) for h, w in RANDOM_SIZES)


def test_parity_with_pillow_on_random_sizes():
    rng = np.random.default_rng(7)
    out32 = np.empty((3, 224, 224), np.float32)
    for h, w in RANDOM_SIZES:
        img = _image(rng, h, w)
        expected = _pillow_crop(img)
        got = resize_crop_uint8(img)
        assert np.array_equal(got, expected), f"uint8 mismatch for {h}x{w}"
        resize_crop_normalize(img, out32)
        assert np.array_equal(out32, _numpy_normalize(expected)), f"float mismatch for {h}x{w}"


EDGE_SIZES = [
    (375, 500), (500, 375),          # the usual photo, both orientations
    (100, 120), (50, 60), (3, 2),    # upscaling
    (256, 256), (256, 300), (300, 256), (256, 4000), (4000, 256),  # an axis not resampled
    (1, 1), (1, 5), (5, 1), (1, 300), (300, 1),
    (20, 4000), (4000, 20), (17, 2999), (2999, 17),  # extreme aspect ratios
    (1270, 264), (1494, 298), (1500, 1499),          # Pillow runs the vertical pass first
    (257, 258), (255, 257), (341, 256), (227, 225),  # odd crop offsets, near-identity scales
]


@pytest.mark.parametrize("size", EDGE_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_edge_sizes_match_pillow_and_torchvision(size):
    img = _image(np.random.default_rng(size[0] * 7919 + size[1]), *size)
    expected = _pillow_crop(img)
    assert np.array_equal(resize_crop_uint8(img), expected)
    assert np.array_equal(resize_crop_normalize(img), _torch_normalize(expected))


@pytest.mark.parametrize("resize, crop", [(225, 224), (227, 224), (256, 255), (64, 63), (32, 1)])
def test_other_resize_and_crop_sizes(resize, crop):
    rng = np.random.default_rng(resize + crop)
    for h, w in [(100, 141), (333, 250), (77, 500)]:
        img = _image(rng, h, w)
        expected = _pillow_crop(img, resize, crop)
        assert np.array_equal(resize_crop_uint8(img, resize=resize, crop=crop), expected)


@pytest.mark.parametrize("size", [(375, 500), (480, 640), (1000, 333), (200, 180), (256, 999)])
def test_matches_torchvision_compose(size):
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    compose = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224),
                                  transforms.ToTensor(), transforms.Normalize(mean, std)])
    img = _image(np.random.default_rng(sum(size)), *size)
    expected = compose(Image.fromarray(img)).numpy()
    assert np.array_equal(resize_crop_normalize(img, mean=mean, std=std), expected)


def test_non_contiguous_inputs():
    rng = np.random.default_rng(11)
    chw = rng.integers(0, 256, (3, 375, 500), dtype=np.uint8)
    view = chw.transpose(1, 2, 0)  # what the engine passes: an npz CHW array seen as HWC
    assert not view.flags.c_contiguous
    expected = _pillow_crop(np.ascontiguousarray(view))
    assert np.array_equal(resize_crop_uint8(view), expected)
    big = _image(rng, 700, 900)
    for sub in (big[::2, ::3], big[::-1, 100:600], big[50:500:1, ::-2]):
        assert np.array_equal(resize_crop_uint8(sub), _pillow_crop(np.ascontiguousarray(sub)))


@pytest.mark.parametrize("size", [(1, 1), (1, 300), (300, 1), (256, 300), (20, 4000), (1270, 264),
                                  (100, 120)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_planar_views_of_edge_sizes(size):
    rng = np.random.default_rng(size[0] + 31 * size[1])
    view = rng.integers(0, 256, (3, *size), dtype=np.uint8).transpose(1, 2, 0)
    expected = _pillow_crop(np.ascontiguousarray(view))
    assert np.array_equal(resize_crop_uint8(view), expected)
    assert np.array_equal(resize_crop_normalize(view), _numpy_normalize(expected))
    flipped = view[::-1, ::-1]
    assert np.array_equal(resize_crop_uint8(flipped), _pillow_crop(np.ascontiguousarray(flipped)))


def test_float16_output_and_out_argument():
    img = _image(np.random.default_rng(5), 333, 444)
    ref32 = resize_crop_normalize(img)
    half = resize_crop_normalize(img, dtype=np.float16)
    assert half.dtype == np.float16
    assert np.array_equal(half, ref32.astype(np.float16))
    slot = np.zeros((2, 3, 224, 224), np.float32)
    returned = resize_crop_normalize(img, slot[1])
    assert returned.base is slot or returned is slot[1] or np.shares_memory(returned, slot)
    assert np.array_equal(slot[1], ref32) and not slot[0].any()
    strided = np.zeros((3, 224, 448), np.float32)[:, :, ::2]
    resize_crop_normalize(img, strided)
    assert np.array_equal(strided, ref32)
    u8 = np.empty((3, 224, 224), np.uint8)
    assert resize_crop_uint8(img, u8) is u8
    assert np.array_equal(u8, _pillow_crop(img))


def test_batch_matches_single_calls():
    rng = np.random.default_rng(9)
    images = [_image(rng, h, w) for h, w in [(375, 500), (500, 375), (256, 256), (90, 1200),
                                              (1300, 280), (64, 64)]]
    images.append(rng.integers(0, 256, (3, 300, 400), dtype=np.uint8).transpose(1, 2, 0))
    for workers in (1, 2):
        out = np.empty((len(images), 3, 224, 224), np.float32)
        assert resize_crop_normalize_batch(images, out, workers=workers) is out
        for i, img in enumerate(images):
            assert np.array_equal(out[i], resize_crop_normalize(img)), (workers, i)
    out8 = np.empty((len(images), 3, 224, 224), np.uint8)
    resize_crop_normalize_batch(images, out8, workers=2)
    for i, img in enumerate(images):
        assert np.array_equal(out8[i], _pillow_crop(np.ascontiguousarray(img)))


@pytest.mark.parametrize("call, message", [
    (lambda: resize_crop_normalize(np.zeros((300, 300, 3), np.float32)), "dtype float32"),
    (lambda: resize_crop_normalize(np.zeros((300, 300, 4), np.uint8)), "shape"),
    (lambda: resize_crop_normalize(np.zeros((300, 300), np.uint8)), "shape"),
    (lambda: resize_crop_normalize(np.zeros((0, 300, 3), np.uint8)), "empty"),
    (lambda: resize_crop_normalize([[1, 2, 3]]), "numpy array"),
    (lambda: resize_crop_normalize(np.zeros((300, 300, 3), np.uint8), resize=200, crop=224),
     "crop 224 is larger than resize 200"),
    (lambda: resize_crop_normalize(np.zeros((300, 300, 3), np.uint8),
                                   np.empty((3, 224, 223), np.float32)), "out: shape"),
    (lambda: resize_crop_normalize(np.zeros((300, 300, 3), np.uint8),
                                   np.empty((3, 224, 224), np.float64)), "out: dtype"),
    (lambda: resize_crop_uint8(np.zeros((300, 300, 3), np.uint8),
                               np.empty((3, 224, 224), np.float32)), "out: dtype"),
    (lambda: resize_crop_normalize(np.zeros((300, 300, 3), np.uint8), std=(1, 0, 1)), "std"),
    (lambda: resize_crop_normalize_batch([np.zeros((9, 9, 3), np.uint8)],
                                         np.empty((2, 3, 224, 224), np.float32)), "out: shape"),
    (lambda: resize_crop_normalize_batch([np.zeros((9, 9), np.uint8)],
                                         np.empty((1, 3, 224, 224), np.float32)), r"images\[0\]"),
])
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_normalization_matches_torch_float32_arithmetic():
    values = torch.arange(256, dtype=torch.float32).div(255)
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    expected = ((values[None, :] - mean[:, None]) / std[:, None]).numpy()
    img = np.broadcast_to(np.arange(256, dtype=np.uint8)[None, :, None], (224, 256, 3))
    img = np.ascontiguousarray(img[:, :224])  # 224x224: no resampling, so crop == input
    out = resize_crop_normalize(img, resize=224, crop=224)
    assert np.array_equal(out, expected[:, None, :224].repeat(224, axis=1))
    chw = np.ascontiguousarray(img.transpose(2, 0, 1))
    assert np.array_equal(_numpy_normalize(chw), out)


def test_normalization_is_exact_for_any_mean_and_std():
    """Every one of the 256 values of each channel, for many (mean, std) pairs: the
    kernel's fast fma-corrected divisions where its own check allows them, plain
    divisions elsewhere; both must give numpy's float32 result exactly."""
    from engine.kernels.normalize import norm_constants

    rng = np.random.default_rng(11)
    ramp = np.broadcast_to(np.arange(256, dtype=np.uint8)[None, :, None], (256, 256, 3))
    ramp = np.ascontiguousarray(ramp)  # 256x256: no resampling, crop 256 == input
    pairs = [(IMAGENET_MEAN, IMAGENET_STD), ((0.5,) * 3, (0.5,) * 3), ((0, 0, 0), (1, 1, 1)),
             ((0.5, 0.5, 0.5), (1e-3, 3.0, 255.0))]
    pairs += [(tuple(rng.uniform(-1, 2, 3)), tuple(rng.uniform(0.01, 3, 3)))
              for _ in range(60)]
    used_fma = set()
    for mean, std in pairs:
        out = resize_crop_normalize(ramp, resize=256, crop=256, mean=mean, std=std)
        chw = np.ascontiguousarray(ramp.transpose(2, 0, 1))
        assert np.array_equal(out, _numpy_normalize(chw, mean, std)), (mean, std)
        used_fma.add(norm_constants(tuple(mean), tuple(std))[1])
    assert True in used_fma


def test_normalization_division_fallback_is_exact():
    """The plain-division branch (taken when the fma check fails) on all 256 values."""
    from engine.kernels.normalize import norm_constants, resample_normalize
    from engine.kernels.resample_pass import NO_OFFSETS, PLANE_ROWS, identity_pass

    mean, std = (0.3, -0.2, 1.5), (0.07, 0.9, 2.2)
    norm, _ = norm_constants(mean, std)
    ramp = np.ascontiguousarray(np.broadcast_to(np.arange(256, dtype=np.uint8), (3, 256)))
    first, taps, coeffs = identity_pass(1)
    want = _numpy_normalize(ramp[:, None, :], mean, std)
    for use_fma in (False, True):
        got = np.empty((3, 1, 256), np.float32)
        resample_normalize(ramp, PLANE_ROWS, 1, NO_OFFSETS, first, taps, coeffs, norm,
                           use_fma, got)
        assert np.array_equal(got, want), use_fma
