"""engine.image2npz and engine.eval refuse bad output paths before any work; a 16-bit PNG
is scaled, not clipped (issue 21, items 1, 4 and 8)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from engine.data.decode import load_npz


def test_image2npz_checks_the_datalist_path_before_converting(cli, one_line_error, photo_folder, tmp_path):
    target = tmp_path / "npz"
    for bad, reason in (("/proc/x/dl.txt", "cannot create folder /proc/x"), (tmp_path, "is a directory")):
        one_line_error(cli("image2npz", "--dataset_path", photo_folder, "--target_path", target,
                           "--text_path", bad, "--quiet"), f"--text_path {bad}", reason)
    assert not list(target.rglob("*.npz")), "nothing converted before the refusal"


def test_image2npz_checks_the_target_folder(cli, one_line_error, photo_folder, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    one_line_error(cli("image2npz", "--dataset_path", photo_folder, "--target_path", a_file,
                       "--text_path", tmp_path / "dl.txt", "--quiet"), f"--target_path {a_file}: is a file")
    assert not (tmp_path / "dl.txt").exists()


def test_image2npz_skipped_images_exit_3_each_named(cli, photo_folder, tmp_path):
    data = tmp_path / "data"
    (data / "cls").mkdir(parents=True)
    for image in sorted(photo_folder.rglob("*.jpg"))[:2]:
        (data / "cls" / image.name).write_bytes(image.read_bytes())
    (data / "cls" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    proc = cli("image2npz", "--dataset_path", data, "--target_path", tmp_path / "npz",
               "--text_path", tmp_path / "dl.txt", "--quiet")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert f"skipped {data / 'cls' / 'broken.jpg'}" in proc.stderr
    assert len((tmp_path / "dl.txt").read_text().split()) == 2


def test_image2npz_scales_a_16_bit_png_to_8_bits(cli, tmp_path):
    gray16 = (np.arange(64 * 64, dtype=np.uint32) * 16).astype(np.uint16).reshape(64, 64)
    (tmp_path / "data" / "cls").mkdir(parents=True)
    Image.fromarray(gray16).save(tmp_path / "data" / "cls" / "deep.png")
    proc = cli("image2npz", "--dataset_path", tmp_path / "data", "--target_path", tmp_path / "npz",
               "--text_path", tmp_path / "dl.txt", "--quiet")
    assert proc.returncode == 0, proc.stderr
    hwc = load_npz(tmp_path / "npz" / "cls" / "deep.npz")
    assert np.array_equal(hwc[:, :, 0], (gray16 >> 8).astype(np.uint8))
    assert (hwc == 255).mean() < 0.01  # PIL's convert("RGB") would have made over 99% of it 255


def test_eval_missing_label_and_unwritable_json_are_usage_errors(cli, one_line_error, tmp_path):
    results = tmp_path / "topk.txt"
    results.write_text("a.jpg: Relay top-0 id: 1, prob: 0.90000000, class name: x\n")
    one_line_error(cli("eval", "topk", results, "--label", tmp_path / "nope.txt"), "nope.txt")
    labels = tmp_path / "labels.txt"
    labels.write_text("a.jpg 1\n")
    one_line_error(cli("eval", "topk", results, "--label", labels, "--json", "/proc/x/s.json"),
                   "--json /proc/x/s.json", "cannot create folder /proc/x")
