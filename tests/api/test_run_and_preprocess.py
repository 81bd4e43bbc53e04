"""engine.run as a function against the command, and engine.preprocess against the
libraries' own eval transforms (timm, torchvision), bit for bit."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from photos import photo_array, write_photo
from tinynet import write_tiny_onnx

import engine

ROOT = Path(__file__).resolve().parents[2]
# what differs between two runs of the same job: the clock, the machine's state, the outputs' places
VOLATILE = ("date", "forward_time_s", "throughput_qps", "latency_us", "stages_us_per_item", "broker_cpu_s",
            "peak_rss_mb", "host_memory_used_mb", "backends", "measured_items", "warmup")


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("job")
    model = write_tiny_onnx(root / "tiny.onnx", size=32, classes=10)
    items = [write_photo(root / "val" / f"{i}.jpg", name, size=(40 + i, 36)) for i, name in
             enumerate(("chelsea", "coffee", "astronaut") * 3)]
    (root / "val" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    items.append(root / "val" / "broken.jpg")
    datalist = root / "list.txt"
    datalist.write_text("".join(f"{p}\n" for p in items))
    return model, datalist


def _stable(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in VOLATILE}


def test_the_function_returns_the_report_the_command_writes(job, tmp_path):
    model, datalist = job
    proc = subprocess.run([sys.executable, "-m", "engine.run", "--quiet", "--datalist", datalist, "--onnx", model,
                           "-b", "4", "--path_output", tmp_path / "cli", "--report", tmp_path / "cli.json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr  # the broken file fails alone
    cli = json.loads((tmp_path / "cli.json").read_text())
    report = engine.run(datalist=str(datalist), onnx=str(model), batch_size=4, path_output=str(tmp_path / "api"))
    assert _stable(report)["counts"] == _stable(cli)["counts"] == {
        "items": 10, "submitted": 10, "done": 9, "failed": 1, "not_run": 0, "restarts": 0}
    cli_config = {k: v for k, v in cli["config"].items() if k != "quiet"}
    api_config = json.loads(json.dumps(report["config"]))  # as the command writes it
    assert {k: v for k, v in api_config.items() if k != "quiet"} == cli_config
    assert _stable(report).keys() == _stable(cli).keys()
    assert [e["item"] for e in report["errors"]] == [e["item"] for e in cli["errors"]]
    for i in range(9):
        np.testing.assert_array_equal(np.load(tmp_path / "api" / f"output_{i:06d}.npz")["output_0"],
                                      np.load(tmp_path / "cli" / f"output_{i:06d}.npz")["output_0"])


def test_the_function_raises_usage_errors_the_command_exits_2_on(job, tmp_path):
    model, datalist = job
    with pytest.raises(engine.UsageError, match="-b must be at least 1, got 0"):
        engine.run(datalist=str(datalist), onnx=str(model), batch_size=0)
    with pytest.raises(engine.UsageError, match="--datalist .*missing.txt: no such file"):
        engine.run(datalist=str(tmp_path / "missing.txt"), onnx=str(model))
    with pytest.raises(engine.UsageError, match="unknown option.*batch"):
        engine.run(datalist=str(datalist), onnx=str(model), batch=4)
    with pytest.raises(engine.UsageError, match="give one input"):
        engine.run(onnx=str(model))


def _library_reference(library: str, name: str, images) -> np.ndarray:
    from PIL import Image

    if library == "timm":
        import timm
        from timm.data import create_transform, resolve_data_config

        transform = create_transform(**resolve_data_config({}, model=timm.create_model(name, pretrained=False)))
    else:
        import torchvision

        transform = torchvision.models.get_model_weights(name).DEFAULT.transforms()
    return np.stack([transform(Image.fromarray(im)).numpy() for im in images])


@pytest.mark.parametrize(("library", "name"), (("timm", "resnet18.a1_in1k"), ("timm", "vit_tiny_patch16_224"),
                                                ("torchvision", "resnet18"), ("torchvision", "efficientnet_b0")))
def test_preprocess_is_bit_exact_to_the_librarys_transform(library, name, tmp_path):
    images = [photo_array(n, size=s) for n, s in (("chelsea", (451, 300)), ("coffee", (300, 401)),
                                                   ("astronaut", (257, 256)), ("chelsea", (97, 203)))]
    paths = [write_photo(tmp_path / f"{i}.png", "chelsea", size=(120 + 7 * i, 99)) for i in range(3)]
    from PIL import Image

    expected = _library_reference(library, name, images + [np.asarray(Image.open(p).convert("RGB")) for p in paths])
    got_indices, got = [], []
    for indices, batch in engine.preprocess(images + paths, model=name, library=library, batch_size=3, workers=2):
        got_indices.extend(indices.tolist())
        got.append(batch)
    assert got_indices == list(range(7))
    batch = np.concatenate(got)
    assert batch.dtype == np.float32 and batch.shape == expected.shape
    np.testing.assert_array_equal(batch, expected)


def test_preprocess_leaves_out_bad_items_and_gives_uint8(job):
    model, _ = job
    errors = []
    items = [photo_array("chelsea", size=(50, 40)), b"junk", photo_array("coffee", size=(40, 50)), "missing.jpg"]
    out = list(engine.preprocess(items, onnx=str(model), batch_size=4, workers=1, dtype="uint8", errors=errors))
    assert len(out) == 1
    indices, batch = out[0]
    assert indices.tolist() == [0, 2] and batch.dtype == np.uint8 and batch.shape == (2, 3, 32, 32)
    assert [i for i, _ in errors] == [1, 3] and "missing.jpg" in errors[1][1]
    with pytest.raises(engine.UsageError, match="dtype 'int8'"):
        engine.preprocess(items, onnx=str(model), dtype="int8")


def test_a_run_that_cannot_start_leaves_its_output_folder_free(job, tmp_path):
    model, datalist = job
    with pytest.raises(engine.RunFailed, match="no usable CUDA GPU"):
        engine.run(datalist=str(datalist), onnx=str(model), device="cuda", path_output=str(tmp_path / "out"))
    report = engine.run(datalist=str(datalist), onnx=str(model), path_output=str(tmp_path / "out"))
    assert report["counts"]["done"] == 9
