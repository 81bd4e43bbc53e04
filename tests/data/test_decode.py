"""engine.data.decode: images decode exactly like torchvision's pil_loader; npz items load as HWC."""
import io
import struct
import warnings
import zipfile
import zlib

import numpy as np
import pytest
from photos import FORMAT_MODES, photo_array, write_photo, write_png16_rgb
from PIL import Image

from engine.data.decode import DEFAULT_MAX_PIXELS, DecodeError, decode_image, load_item, load_npz


def pil_loader(path):
    """torchvision.datasets.folder.pil_loader, the definition of a correct decode."""
    with open(path, "rb") as f:
        return np.asarray(Image.open(f).convert("RGB"))


FORMAT_MODE_CASES = [(suffix, mode) for suffix, modes in FORMAT_MODES.items() for mode in modes]


@pytest.mark.parametrize("suffix,mode", FORMAT_MODE_CASES)
def test_every_format_and_mode_decodes_like_pil_loader(tmp_path, suffix, mode):
    path = write_photo(tmp_path / f"cat{suffix}", "chelsea", mode=mode)
    with Image.open(path) as stored:
        assert stored.mode == mode  # the file really holds this mode
    decoded = decode_image(path)
    assert decoded.dtype == np.uint8 and decoded.shape == (300, 451, 3)
    if mode == "I;16":  # scaled, not clipped: the 8-bit grayscale photo it was made from (L * 257)
        np.testing.assert_array_equal(decoded, pil_loader(write_photo(tmp_path / "gray.png", "chelsea", mode="L")))
    else:
        np.testing.assert_array_equal(decoded, pil_loader(path))
    np.testing.assert_array_equal(decode_image(path.read_bytes()), decoded)


def test_bytes_name_only_labels_errors(tmp_path):
    """PIL memory-maps an uncompressed image's filename: a label must never be one."""
    small = write_photo(tmp_path / "small.bmp", "chelsea", mode="L")
    other = write_photo(tmp_path / "other.bmp", "astronaut", mode="L")
    np.testing.assert_array_equal(decode_image(small.read_bytes(), name=str(other)),
                                  pil_loader(small))
    np.testing.assert_array_equal(decode_image(small, name="label"), pil_loader(small))


def test_alpha_is_dropped_not_composited(tmp_path):
    path = write_photo(tmp_path / "cat.png", mode="RGBA")
    np.testing.assert_array_equal(decode_image(path), photo_array())


def test_palette_with_transparency_matches_pil_loader(tmp_path):
    path = write_photo(tmp_path / "cat.png", mode="P", transparency=0)
    with Image.open(path) as stored:
        assert stored.mode == "P" and "transparency" in stored.info
    np.testing.assert_array_equal(decode_image(path), pil_loader(path))


def test_16bit_grayscale_is_scaled_to_8_bits_not_clipped(tmp_path):
    """PIL's I;16 -> RGB clips at 255; we keep the high byte, as torchvision's uint8 scaling does."""
    gray16 = (np.arange(64, dtype=np.uint16) * 1000).reshape(8, 8)
    path = tmp_path / "gray16.png"
    Image.fromarray(gray16).save(path)
    with Image.open(path) as stored:
        assert stored.mode == "I;16"
    decoded = decode_image(path)
    expected = (gray16 >> 8).astype(np.uint8)
    np.testing.assert_array_equal(decoded, np.repeat(expected[:, :, None], 3, axis=2))
    clipped = pil_loader(path)
    assert (clipped == 255).mean() > 0.9 and (decoded == 255).mean() < 0.05  # what PIL alone would give


def test_16bit_rgb_png_keeps_high_bytes(tmp_path):
    path = write_png16_rgb(tmp_path / "cat48.png", "coffee")
    np.testing.assert_array_equal(decode_image(path), photo_array("coffee"))
    np.testing.assert_array_equal(decode_image(path), pil_loader(path))


def test_exif_orientation_is_not_applied(tmp_path):
    path = write_photo(tmp_path / "rotated.jpg", "astronaut", size=(320, 200), exif_orientation=6)
    with Image.open(path) as stored:
        assert stored.getexif()[0x0112] == 6
    decoded = decode_image(path)
    assert decoded.shape == (200, 320, 3)
    np.testing.assert_array_equal(decoded, pil_loader(path))


def test_content_decides_format_not_suffix(tmp_path):
    path = write_photo(tmp_path / "really_a.png", "coffee")
    disguised = tmp_path / "disguised.jpg"
    disguised.write_bytes(path.read_bytes())
    np.testing.assert_array_equal(decode_image(disguised), photo_array("coffee"))


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".bmp", ".webp"])
def test_truncated_file_raises_naming_it(tmp_path, suffix):
    whole = write_photo(tmp_path / f"whole{suffix}").read_bytes()
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DecodeError) as info:
        decode_image(path)
    assert str(path) in str(info.value)
    assert "truncated" in info.value.reason or "corrupt" in info.value.reason
    with pytest.raises(DecodeError, match="<upload>"):
        decode_image(path.read_bytes(), name="<upload>")


def test_jpeg_missing_only_its_last_bytes_is_an_error(tmp_path):
    whole = write_photo(tmp_path / "whole.jpg").read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(whole[:-100])
    with pytest.raises(DecodeError, match="truncated"):
        decode_image(path)


def test_corrupt_jpeg_header(tmp_path):
    path = tmp_path / "bad.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + bytes(range(256)) * 4)
    with pytest.raises(DecodeError, match=r"bad\.jpg: corrupt"):
        decode_image(path)


@pytest.mark.parametrize("content,reason", [
    (b"", "empty file"),
    (b"hello, this is text and not an image at all", "not a JPEG, PNG, BMP or WebP image"),
    (b"GIF89a" + bytes(40), "not a JPEG, PNG, BMP or WebP image"),
])
def test_not_an_accepted_image(tmp_path, content, reason):
    path = tmp_path / "item.png"
    path.write_bytes(content)
    with pytest.raises(DecodeError) as info:
        decode_image(path)
    assert info.value.reason == reason
    assert str(info.value) == f"{path}: {reason}"


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DecodeError, match=r"nope\.jpg: no such file"):
        decode_image(tmp_path / "nope.jpg")
    with pytest.raises(DecodeError, match="is a directory"):
        decode_image(tmp_path)


def test_decode_error_is_a_value_error():
    assert issubclass(DecodeError, ValueError)


def png_header_only(width, height):
    """A PNG whose header declares width x height and that holds no pixel data."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding():
    bomb = png_header_only(100_000, 100_000)  # 30 GB of RGB if it were allocated
    with pytest.raises(DecodeError, match="decompression-bomb limit of 89478485"):
        decode_image(bomb, name="bomb.png")


def test_bomb_limit_is_an_error_not_a_warning(tmp_path):
    path = write_photo(tmp_path / "cat.png")  # 451 x 300 = 135300 pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DecodeError, match="135300 pixels, above the decompression-bomb limit of 135299"):
            decode_image(path, max_pixels=135_299)
        assert decode_image(path, max_pixels=135_300).shape == (300, 451, 3)


def test_bomb_limit_is_per_call_not_pil_global(tmp_path, monkeypatch):
    path = write_photo(tmp_path / "cat.jpg")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert decode_image(path, max_pixels=None).shape == (300, 451, 3)
        assert decode_image(path, max_pixels=200_000).shape == (300, 451, 3)
    assert Image.MAX_IMAGE_PIXELS == 1000
    assert DEFAULT_MAX_PIXELS == 89_478_485


# ---- npz items ----

def save_npz(path, **arrays):
    with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to "X.NPZ"
        np.savez(f, **arrays)
    return path


def test_npz_chw_is_returned_as_a_transposed_view(tmp_path):
    chw = np.ascontiguousarray(photo_array().transpose(2, 0, 1))
    loaded = load_npz(save_npz(tmp_path / "cat.npz", input_0=chw))
    assert loaded.shape == (300, 451, 3) and loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, photo_array())
    assert not loaded.flags.c_contiguous and loaded.base is not None  # a view, no copy
    assert loaded.strides == (451, 1, 300 * 451)


def test_npz_stored_in_fortran_order(tmp_path):
    chw = np.asfortranarray(photo_array("coffee").transpose(2, 0, 1))
    np.testing.assert_array_equal(load_npz(save_npz(tmp_path / "f.npz", input_0=chw)),
                                  photo_array("coffee"))


def test_npz_hwc_is_accepted(tmp_path):
    hwc = photo_array("coffee")
    loaded = load_npz(save_npz(tmp_path / "coffee.npz", input_0=hwc))
    np.testing.assert_array_equal(loaded, hwc)
    assert loaded.flags.c_contiguous


def test_npz_with_three_rows_and_three_channels_is_read_as_chw(tmp_path):
    chw = np.arange(3 * 5 * 3, dtype=np.uint8).reshape(3, 5, 3)
    np.testing.assert_array_equal(load_npz(save_npz(tmp_path / "a.npz", input_0=chw)),
                                  chw.transpose(1, 2, 0))


def test_npz_written_compressed_or_with_extra_keys_loads(tmp_path):
    chw = np.ascontiguousarray(photo_array().transpose(2, 0, 1))
    path = tmp_path / "c.npz"
    np.savez_compressed(path, input_0=chw, other=np.zeros(3))
    np.testing.assert_array_equal(load_npz(path), photo_array())


def test_npz_from_bytes(tmp_path):
    chw = np.ascontiguousarray(photo_array().transpose(2, 0, 1))
    payload = save_npz(tmp_path / "cat.npz", input_0=chw).read_bytes()
    np.testing.assert_array_equal(load_npz(payload), photo_array())
    with pytest.raises(DecodeError, match=r"^request 7: not an npz archive"):
        load_npz(b"GIF89a", name="request 7")


def test_npz_pixel_limit_is_checked_before_decompressing(tmp_path):
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, input_0=np.zeros((3, 2000, 2000), np.uint8))  # 12 MB in ~12 kB
    assert path.stat().st_size < 100_000
    with pytest.raises(DecodeError, match=r"4000000 pixels, above the decompression-bomb limit of 1000000"):
        load_npz(path, max_pixels=1_000_000)
    with pytest.raises(DecodeError, match="above the decompression-bomb limit of 1000000"):
        load_npz(path.read_bytes(), max_pixels=1_000_000)
    stored = save_npz(tmp_path / "stored.npz", input_0=np.zeros((1000, 1001, 3), np.uint8))
    with pytest.raises(DecodeError, match="1001000 pixels, above"):
        load_item(stored, max_pixels=1_000_000)
    assert load_item(stored, max_pixels=None).shape == (1000, 1001, 3)


def bad_npz_cases(tmp_path):
    text = tmp_path / "text.npz"
    text.write_text("not an archive\n")
    bare = tmp_path / "bare.npz"
    with open(bare, "wb") as f:
        np.save(f, np.zeros((3, 4, 4), np.uint8))
    truncated = tmp_path / "truncated.npz"
    whole = io.BytesIO()
    np.savez(whole, input_0=np.zeros((3, 64, 64), np.uint8))
    truncated.write_bytes(whole.getvalue()[:5000])
    empty = tmp_path / "empty_file.npz"
    empty.write_bytes(b"")
    bad_magic = tmp_path / "bad_magic.npz"
    bad_magic.write_bytes(whole.getvalue().replace(b"\x93NUMPY", b"\x93NUMPX", 1))
    short = tmp_path / "short.npz"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                  "shape": (3, 64, 64)})
    with zipfile.ZipFile(short, "w") as archive:
        archive.writestr("input_0.npy", header.getvalue() + bytes(100))
    compressed = tmp_path / "compressed_int16.npz"
    np.savez_compressed(compressed, input_0=np.zeros((3, 4, 4), np.int16))
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, input_0=np.array([{"a": 1}], dtype=object))
    return [
        (tmp_path / "missing.npz", "no such file"),
        (tmp_path, "is a directory"),
        (empty, "not an npz archive (no zip signature)"),
        (text, "not an npz archive (no zip signature)"),
        (bare, "not an npz archive (a bare .npy array)"),
        (truncated, "not a readable npz archive"),
        (bad_magic, "cannot read 'input_0' (the magic string is not correct"),
        (short, "cannot read 'input_0' (member holds 100 data bytes, "
                "its header declares shape (3, 64, 64) (12288 bytes))"),
        (pickled, "'input_0' has dtype object, expected uint8"),
        (save_npz(tmp_path / "key.npz", image=np.zeros((3, 4, 4), np.uint8)), "no key 'input_0' (keys: image)"),
        (save_npz(tmp_path / "dtype.npz", input_0=np.zeros((3, 4, 4), np.float32)), "dtype float32, expected uint8"),
        (compressed, "dtype int16, expected uint8"),
        (save_npz(tmp_path / "rank2.npz", input_0=np.zeros((4, 4), np.uint8)), "expected 3 axes"),
        (save_npz(tmp_path / "rank4.npz", input_0=np.zeros((1, 3, 4, 4), np.uint8)), "expected 3 axes"),
        (save_npz(tmp_path / "empty.npz", input_0=np.zeros((3, 0, 4), np.uint8)), "holds no pixels"),
        (save_npz(tmp_path / "rgba.npz", input_0=np.zeros((4, 5, 6), np.uint8)), "neither CHW nor HWC"),
        (save_npz(tmp_path / "hwc4.npz", input_0=np.zeros((5, 6, 4), np.uint8)), "neither CHW nor HWC"),
    ]


def test_bad_npz_raises_naming_file_and_reason(tmp_path):
    for path, reason in bad_npz_cases(tmp_path):
        with pytest.raises(DecodeError) as info:
            load_npz(path)
        message = str(info.value)
        assert message.startswith(f"{path}: ") and reason in message, (path, message)


# ---- load_item dispatch ----

def test_load_item_dispatches_on_suffix_any_case(tmp_path):
    chw = np.ascontiguousarray(photo_array().transpose(2, 0, 1))
    np.testing.assert_array_equal(load_item(save_npz(tmp_path / "CAT.NPZ", input_0=chw)), photo_array())
    path = write_photo(tmp_path / "CAT.PNG")
    np.testing.assert_array_equal(load_item(path), photo_array())
    jpeg = write_photo(tmp_path / "cat.JPEG")
    np.testing.assert_array_equal(load_item(str(jpeg)), pil_loader(jpeg))
    with pytest.raises(DecodeError, match="decompression-bomb"):
        load_item(path, max_pixels=10)


def test_load_item_refuses_unknown_suffix_and_missing_files(tmp_path):
    gif = tmp_path / "anim.gif"
    Image.fromarray(photo_array()).save(gif)
    with pytest.raises(DecodeError, match=r"anim\.gif: unknown item type '\.gif'"):
        load_item(gif)
    with pytest.raises(DecodeError, match=r"README: unknown item type '\(no suffix\)'"):
        load_item(tmp_path / "README")
    for name in ("gone.jpg", "gone.npz"):
        with pytest.raises(DecodeError, match=rf"{name}: no such file"):
            load_item(tmp_path / name)
