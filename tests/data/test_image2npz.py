"""engine.image2npz: seed-compatible npz files and datalist, bad-file summary, re-runs."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from photos import write_photo

from engine.data.datalist import read_datalist
from engine.data.decode import decode_image
from engine.data.npz_convert import convert_folder, output_path

REPO = Path(__file__).resolve().parents[2]


def make_dataset(root):
    """Six photos in four formats and several folders; returns {image: expected npz}."""
    images = [
        write_photo(root / "n01440764" / "ILSVRC2012_val_00000001.JPEG", "chelsea"),
        write_photo(root / "n01440764" / "cat_gray.png", "chelsea", mode="L"),
        write_photo(root / "n01443537" / "coffee.bmp", "coffee", mode="P"),
        write_photo(root / "n01443537" / "astronaut.WEBP", "astronaut", size=(200, 160)),
        write_photo(root / "n01443537" / "nested" / "deep.jpeg", "coffee", mode="CMYK"),
        write_photo(root / "top.png", "astronaut", mode="RGBA", size=(64, 48)),
    ]
    (root / "notes.txt").write_text("not an image\n")
    return images


def check_outputs(images, target, datalist_path):
    expected = {image: target / image.parent.name / f"{image.stem}.npz" for image in images}
    listed = read_datalist(datalist_path)
    assert listed == sorted(str(p) for p in expected.values())
    assert all(os.path.isabs(line) for line in Path(datalist_path).read_text().splitlines())
    for image, npz in expected.items():
        with zipfile.ZipFile(npz) as archive:
            assert [(i.filename, i.compress_type) for i in archive.infolist()] == \
                [("input_0.npy", zipfile.ZIP_STORED)]
        with np.load(npz) as stored:
            chw = stored["input_0"]
        assert chw.dtype == np.uint8
        np.testing.assert_array_equal(chw, decode_image(image).transpose(2, 0, 1))


def test_round_trip_naming_and_sorted_datalist(tmp_path):
    images = make_dataset(tmp_path / "data")
    target, datalist = tmp_path / "npz", tmp_path / "lists" / "npz_datalist.txt"
    summary = convert_folder(tmp_path / "data", target, datalist)
    assert summary.ok and summary.skipped == []
    assert len(summary.converted) == len(images)
    check_outputs(images, target, datalist)
    assert (target / "data" / "top.npz").exists()  # an image at the root: the root's own name
    assert (target / "nested" / "deep.npz").exists()


def test_rerun_rewrites_atomically_and_gives_the_same_result(tmp_path):
    images = make_dataset(tmp_path / "data")
    target, datalist = tmp_path / "npz", tmp_path / "list.txt"
    first = convert_folder(tmp_path / "data", target, datalist)
    before = {p: Path(p).read_bytes() for p in first.converted}
    # A stale file from another dataset with the same name must be replaced, not trusted.
    stale = Path(first.converted[0])
    np.savez(stale, input_0=np.zeros((3, 2, 2), np.uint8))
    os.utime(stale, (2e9, 2e9))
    second = convert_folder(tmp_path / "data", target, datalist, workers=2)
    assert second.converted == first.converted and second.ok
    assert {p: Path(p).read_bytes() for p in second.converted} == before
    check_outputs(images, target, datalist)
    leftovers = [p for p in target.rglob("*") if p.is_file() and p.suffix != ".npz"]
    assert leftovers == []


def test_colliding_outputs_are_reported_not_overwritten(tmp_path):
    data = tmp_path / "data"
    same_folder = [write_photo(data / "a" / "x.jpg", "chelsea"),
                   write_photo(data / "a" / "x.png", "coffee")]
    same_folder_name = [write_photo(data / "one" / "cls" / "y.jpg", "chelsea"),
                        write_photo(data / "two" / "cls" / "y.jpg", "astronaut")]
    fine = write_photo(data / "a" / "z.bmp", "coffee", size=(40, 30))
    summary = convert_folder(data, tmp_path / "npz", tmp_path / "list.txt")
    assert summary.converted == [str(tmp_path / "npz" / "a" / "z.npz")]
    assert [image for image, _ in summary.skipped] == sorted(str(p) for p in same_folder + same_folder_name)
    reasons = dict(summary.skipped)
    assert str(same_folder[1]) in reasons[str(same_folder[0])]
    assert "would also be written from" in reasons[str(same_folder_name[1])]
    assert not (tmp_path / "npz" / "a" / "x.npz").exists()
    assert not (tmp_path / "npz" / "cls").exists()
    assert read_datalist(tmp_path / "list.txt") == summary.converted
    assert output_path(fine, tmp_path / "npz") == tmp_path / "npz" / "a" / "z.npz"


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "engine.image2npz", *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_cli_skips_bad_files_lists_them_and_exits_3(tmp_path):
    data = tmp_path / "data"
    images = make_dataset(data)
    whole = images[0].read_bytes()
    truncated = data / "n01440764" / "truncated.jpg"
    truncated.write_bytes(whole[: len(whole) // 2])
    garbage = data / "n01440764" / "garbage.PNG"
    garbage.write_text("this is not a png")
    result = run_cli("--dataset-path", data, "--target-path", tmp_path / "npz",
                     "--text-path", "out/list.txt", "--workers", "2", "--quiet", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert f"skipped {garbage}: not a JPEG, PNG, BMP or WebP image" in result.stderr
    assert f"skipped {truncated}: corrupt or truncated JPEG data (image file is truncated" in result.stderr
    assert "6 images converted" in result.stderr and "2 skipped" in result.stderr
    check_outputs(images, tmp_path / "npz", tmp_path / "out" / "list.txt")
    assert not (tmp_path / "npz" / "n01440764" / "truncated.npz").exists()


def test_cli_seed_spelling_succeeds_with_progress_bar(tmp_path):
    data = tmp_path / "data"
    images = [write_photo(data / "cls" / f"img{i}.jpg", "coffee", size=(60 + i, 40))
              for i in range(3)]
    result = run_cli("--dataset_path", data, "--target_path", tmp_path / "npz",
                     "--workers", "1", cwd=tmp_path)  # the datalist's default name
    assert result.returncode == 0, result.stderr
    assert "3 images converted" in result.stdout and "0 skipped" in result.stdout
    assert "3/3" in result.stderr  # tqdm's bar
    check_outputs(images, tmp_path / "npz", tmp_path / "npz_datalist.txt")


def test_cli_relative_paths_and_bomb_limit(tmp_path):
    data = tmp_path / "data"
    write_photo(data / "cls" / "big.png", "astronaut")  # 512 x 512
    small = write_photo(data / "cls" / "small.png", "astronaut", size=(100, 100))
    (tmp_path / "work").mkdir()
    result = run_cli("--dataset_path", "../data", "--target_path", "../npz", "--max_pixels", "20000",
                     "--quiet", "--text_path", "../npz_datalist.txt", cwd=tmp_path / "work")
    assert result.returncode == 3
    assert "decompression-bomb limit of 20000" in result.stderr
    check_outputs([small], tmp_path / "npz", tmp_path / "npz_datalist.txt")


@pytest.mark.parametrize("args,message", [
    (["--target_path", "npz"], "the following arguments are required: --dataset_path"),
    (["--dataset_path", "missing", "--target_path", "npz"], "missing: not a directory"),
    (["--dataset_path", "empty", "--target_path", "npz"], "no images (.bmp .jpeg .jpg .png .webp) under empty"),
    (["--dataset_path", "empty", "--target_path", "npz", "--workers", "0"], "--workers must be at least 1"),
])
def test_cli_usage_errors(tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
