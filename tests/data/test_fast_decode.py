"""--fast-decode: only JPEGs far above the resize target decode at a reduced DCT scale;
every other item decodes exactly as without it (decode level and engine.run end to end)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from photos import photo_array, write_photo
from tinynet import write_tiny_onnx

from engine.data.decode import DecodeError, decode_image, load_item
from engine.data.fast_decode import MARGIN, Draft
from engine.kernels import resize_crop_uint8

ROOT = Path(__file__).resolve().parents[2]
RESIZE = 36  # the tiny model's: its threshold is a shorter side of 2 * MARGIN * 36 = 144
THRESHOLD = 2 * MARGIN * RESIZE


def test_draft_keeps_margin_times_the_resize_target():
    assert Draft.for_resize(256) == Draft(512, 512)
    assert Draft.for_resize((300, 200)) == Draft(400, 600)  # (height, width) in, (width, height) out
    draft = Draft.for_resize(RESIZE)
    assert [draft.reduction(w, h) for w, h in ((500, THRESHOLD - 1), (THRESHOLD, 500), (300, 300), (600, 700),
                                               (4000, 3000))] == [1, 2, 4, 8, 8]


@pytest.mark.parametrize("width, height", [(THRESHOLD, THRESHOLD), (4 * THRESHOLD + 5, 2 * THRESHOLD + 3),
                                           (1000, 750)])
def test_jpegs_above_the_threshold_decode_reduced(tmp_path, width, height):
    path = write_photo(tmp_path / "big.jpg", "astronaut", size=(width, height), quality=90)
    draft = Draft.for_resize(RESIZE)
    scale = draft.reduction(width, height)
    exact, fast = decode_image(path), decode_image(path, draft=draft)
    assert scale >= 2
    assert fast.shape == (-(-height // scale), -(-width // scale), 3)
    assert min(fast.shape[:2]) >= MARGIN * RESIZE
    # The same picture: the reduced decode against scale x scale block means of the exact one.
    rows, cols = height // scale, width // scale
    blocks = exact[:rows * scale, :cols * scale].reshape(rows, scale, cols, scale, 3).mean(axis=(1, 3))
    assert np.abs(fast[:rows, :cols] - blocks).mean() < 3


@pytest.mark.parametrize("suffix, mode, size", [
    (".jpg", "RGB", (THRESHOLD - 1, 400)),   # a JPEG below the threshold
    (".jpg", "RGB", (400, THRESHOLD - 1)),
    (".png", "RGB", (600, 450)),             # not JPEGs, however large
    (".bmp", "RGB", (600, 450)),
    (".webp", "RGB", (600, 450)),
    (".png", "P", (600, 450)),
])
def test_everything_else_decodes_exactly(tmp_path, suffix, mode, size):
    path = write_photo(tmp_path / f"photo{suffix}", "coffee", mode=mode, size=size)
    draft = Draft.for_resize(RESIZE)
    assert np.array_equal(decode_image(path, draft=draft), decode_image(path))
    assert np.array_equal(load_item(path, draft=draft), load_item(path))


def test_npz_items_are_untouched(tmp_path):
    path = tmp_path / "item.npz"
    np.savez(path, input_0=photo_array("chelsea", (600, 450)).transpose(2, 0, 1))
    assert np.array_equal(load_item(path, draft=Draft.for_resize(RESIZE)), load_item(path))


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_grayscale_and_cmyk_jpegs_come_out_rgb(tmp_path, mode):
    path = write_photo(tmp_path / "big.jpg", "chelsea", mode=mode, size=(600, 450))
    fast = decode_image(path, draft=Draft.for_resize(RESIZE))
    assert fast.shape == (113, 150, 3) and fast.dtype == np.uint8


def test_the_pixel_limit_applies_to_the_full_size(tmp_path):
    path = write_photo(tmp_path / "big.jpg", "chelsea", size=(600, 450))
    with pytest.raises(DecodeError, match="270000 pixels, above the decompression-bomb limit of 100000"):
        decode_image(path, max_pixels=100_000, draft=Draft.for_resize(RESIZE))


def test_kernel_output_stays_close_to_the_exact_path(tmp_path):
    path = write_photo(tmp_path / "big.jpg", "astronaut", size=(1600, 1200), quality=92)
    draft = Draft.for_resize(256)
    exact = resize_crop_uint8(decode_image(path)).astype(int)
    fast = resize_crop_uint8(decode_image(path, draft=draft)).astype(int)
    assert draft.reduction(1600, 1200) == 2
    assert not np.array_equal(exact, fast)
    assert np.abs(exact - fast).mean() < 2


def _run(datalist: Path, model: Path, out: Path, *extra) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "engine.run", "--datalist", str(datalist), "--onnx", str(model),
                           "--path_output", str(out), "--quiet", "--workers", "1", "-b", "2", *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_engine_run_fast_decode_changes_only_big_jpegs(tmp_path):
    model = write_tiny_onnx(tmp_path / "tiny.onnx", size=32, classes=10)
    items = [write_photo(tmp_path / "big.jpg", "astronaut", size=(400, 300), quality=90),
             write_photo(tmp_path / "small.jpg", "coffee", size=(200, THRESHOLD - 1), quality=90),
             write_photo(tmp_path / "big.png", "chelsea", size=(400, 300))]
    npz = tmp_path / "big.npz"
    np.savez(npz, input_0=photo_array("chelsea", (400, 300)).transpose(2, 0, 1))
    items.append(npz)
    datalist = tmp_path / "list.txt"
    datalist.write_text("".join(f"{p}\n" for p in items))
    _run(datalist, model, tmp_path / "exact")
    _run(datalist, model, tmp_path / "fast", "--fast-decode")
    outputs = [[np.load(tmp_path / run / f"output_{i:06d}.npz")["output_0"] for i in range(len(items))]
               for run in ("exact", "fast")]
    assert not np.array_equal(outputs[0][0], outputs[1][0])  # the big JPEG
    for i in range(1, len(items)):
        assert np.array_equal(outputs[0][i], outputs[1][i]), items[i]
