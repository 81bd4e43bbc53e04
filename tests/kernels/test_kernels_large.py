"""The kernel on camera-sized photos: bit-exact to Pillow 13 at 2 to 12 MP, where the
horizontal pass runs in stripes (``engine.kernels.workspace.STRIPE_ABOVE``)."""
import numpy as np
import pytest
from PIL import Image

from engine.kernels import resize_crop_normalize, resize_crop_uint8
from engine.kernels.resample_plan import crop_offset, resize_crop_plan, resized_size
from engine.kernels.workspace import STRIPE_ABOVE, STRIPE_ROWS, Workspace

_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def _photo_like(h, w, seed):
    """Smooth structure plus noise: sums that land on every rounding boundary, as a real photo's do."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 40), max(2, w // 40), 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC)).astype(np.int16)
    noisy = smooth + rng.integers(-40, 41, (h, w, 3), dtype=np.int16)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _pillow(img, interpolation):
    h, w = img.shape[:2]
    out_h, out_w = resized_size(h, w, 256)
    resized = np.asarray(Image.fromarray(img).resize((out_w, out_h), _FILTERS[interpolation]))
    top, left = crop_offset(out_h, 224), crop_offset(out_w, 224)
    return np.ascontiguousarray(resized[top:top + 224, left:left + 224].transpose(2, 0, 1))


def _normalized(chw_uint8):
    mean = np.asarray((0.485, 0.456, 0.406), np.float32)[:, None, None]
    std = np.asarray((0.229, 0.224, 0.225), np.float32)[:, None, None]
    return (chw_uint8.astype(np.float32) / np.float32(255) - mean) / std


def _check(img, interpolation):
    expected = _pillow(img, interpolation)
    planar = np.ascontiguousarray(img.transpose(2, 0, 1)).transpose(1, 2, 0)
    for view in (img, planar):
        assert np.array_equal(resize_crop_uint8(view, interpolation=interpolation), expected)
    got = resize_crop_normalize(img, interpolation=interpolation)
    assert np.array_equal(got, _normalized(expected))


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize("size", [(1500, 2000), (2000, 1500), (1499, 2001)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_two_megapixel_photos_match_pillow(size, interpolation):
    _check(_photo_like(*size, seed=sum(size)), interpolation)


@pytest.mark.slow
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize("size", [(3000, 4000), (4000, 3000), (2999, 4001), (9000, 2000)],
                         ids=lambda s: f"{s[0]}x{s[1]}")
def test_twelve_megapixel_photos_match_pillow(size, interpolation):
    _check(_photo_like(*size, seed=sum(size)), interpolation)


def test_large_windows_run_in_stripes_with_a_partial_last_one():
    """The sizes above do take the striped path, the last stripe short, both orders."""
    for h, w in ((3000, 4000), (2999, 4001)):
        ws = Workspace(resize_crop_plan(h, w, 256, (224, 224), "bilinear"))
        assert ws.stripes and ws.plan.rows.span % STRIPE_ROWS
    small = Workspace(resize_crop_plan(1500, 2000, 256, (224, 224), "bilinear"))
    assert 3 * small.plan.rows.span * small.plan.cols.span <= STRIPE_ABOVE and not small.stripes
    assert resize_crop_plan(9000, 2000, 256, (224, 224), "bilinear").vertical_first
