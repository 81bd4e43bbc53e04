"""engine.build: a missing calibration folder is refused before the export, a corrupt
calibration image is skipped and listed, --no-progress is quiet (issue 21, items 7-9)."""
from __future__ import annotations

import json
import shutil
import time

import yaml


def write_config(path, config: dict):
    path.write_text(yaml.safe_dump(config))
    return path


def test_missing_calibration_folder_is_refused_before_the_export(cli, one_line_error, tmp_path):
    config = write_config(tmp_path / "b.yaml", {"model": {"name": "vgg11"}, "dtype": "int8",
                                                "calibration": {"path": str(tmp_path / "nowhere")}})
    start = time.perf_counter()
    proc = cli("build", config, "--output", tmp_path / "out")
    assert time.perf_counter() - start < 8, "refused before exporting vgg11"
    one_line_error(proc, f"calibration.path: {tmp_path / 'nowhere'}: no such folder or datalist")


def test_unknown_zoo_model_is_refused_cleanly(cli, one_line_error, tmp_path):
    config = write_config(tmp_path / "b.yaml", {"model": {"name": "vgg99"}})
    one_line_error(cli("build", config), "model 'vgg99' is not in the zoo")


def test_corrupt_calibration_image_is_skipped_and_the_build_is_quiet(cli, tiny_model, photo_folder, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(photo_folder, images)
    broken = images / "n01440764" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 cut short")
    config = write_config(tmp_path / "b.yaml", {
        "model": {"onnx": str(tiny_model)}, "dtype": "int8",
        "quantization": {"method": "percentile", "percentile": 99.9},
        "calibration": {"path": str(images), "count": 4, "batch_size": 2},
        "check": {"count": 8}})
    proc = cli("build", config, "--output", tmp_path / "out", "--no-progress", timeout=300)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"engine.build: skipped {broken}: " in proc.stderr
    # onnxruntime's calibrator prints "Number of tensors", "Number of histogram bins", ...
    assert "Number of" not in proc.stdout + proc.stderr and "Collecting tensor data" not in proc.stdout
    assert "calibrating" not in proc.stderr  # no progress bar either
    assert "note: check.count 8: the check used the 3 held-out images there were" in proc.stderr
    report = json.loads(next((tmp_path / "out").glob("*/build.json")).read_text())
    assert [s["item"] for s in report["skipped_images"]] == [str(broken)]
    assert report["calibration"]["images_used"] == 3 and str(broken) not in report["calibration"]["items"]
    assert report["check"]["images"] == 3  # the 7 images less the 4 chosen for calibration
