"""engine.Classifier on real pipelines: real worker processes, a real ONNX model, real
JPEG/PNG/npz files, against the engine.run command's own output files."""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from photos import photo_array, photo_image, write_photo
from PIL import Image
from tinynet import write_tiny_onnx

import engine

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_tiny_onnx(tmp_path_factory.mktemp("model") / "tiny.onnx", size=32, classes=10)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("items")
    paths = []
    for i, name in enumerate(("chelsea", "coffee", "astronaut", "chelsea", "coffee")):
        paths.append(write_photo(root / f"{i}_{name}.jpg", name, size=(40 + 6 * i, 36 + 3 * i)))
    png = root / "5.png"
    Image.fromarray(photo_array("astronaut", size=(50, 44))).save(png)
    npz = root / "6.npz"
    np.savez(npz, input_0=photo_array("coffee", size=(46, 38)).transpose(2, 0, 1))
    return [*paths, png, npz]


def _engine_files(model: Path, items: list[Path], out: Path) -> list[np.ndarray]:
    datalist = out.parent / f"{out.name}.txt"
    datalist.write_text("".join(f"{p}\n" for p in items))
    proc = subprocess.run([sys.executable, "-m", "engine.run", "--quiet", "--datalist", datalist, "--onnx", model,
                           "--path_output", out, "-b", "4"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return [np.load(out / f"output_{i:06d}.npz")["output_0"].reshape(-1) for i in range(len(items))]


def test_results_equal_the_commands_output_files(model, files, tmp_path):
    expected = _engine_files(model, files, tmp_path / "out")
    with engine.Classifier(onnx=model, batch_size=4, workers=1, topk=3) as clf:
        results = clf.classify(files)
    assert [r.index for r in results] == list(range(len(files)))
    for r, logits in zip(results, expected, strict=True):
        assert r.error is None and r.item == str(files[r.index])
        np.testing.assert_array_equal(r.logits, logits.astype(np.float32))
        assert [c for c, _, _ in r.topk] == list(np.argsort(-logits, kind="stable")[:3])
        probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        np.testing.assert_allclose([p for _, _, p in r.topk], np.sort(probs)[::-1][:3], rtol=1e-5)


def test_mixed_kinds_and_bad_items_each_fail_alone(model, files):
    jpeg_bytes = files[0].read_bytes()
    items = [files[1], str(files[2]), jpeg_bytes, photo_array("chelsea", size=(40, 36)), photo_image("coffee"),
             b"not an image", 42, np.zeros((8, 8), np.float32), files[0].parent / "missing.jpg",
             io.BytesIO(b"x").getvalue()[:0], files[5]]
    with engine.Classifier(onnx=model, batch_size=3, workers=1) as clf:
        results = list(clf.stream(iter(items)))
        again = clf.classify([jpeg_bytes, files[0]])
    assert [r.index for r in results] == list(range(len(items)))
    failed = {r.index: r.error for r in results if r.error}
    assert sorted(failed) == [5, 6, 7, 8, 9]
    assert "item 5 (bytes)" in failed[5] and "not a JPEG, PNG, BMP or WebP image" in failed[5]
    assert "item 6 (int)" in failed[6] and "not an image path" in failed[6]
    assert "item 7 (ndarray)" in failed[7] and "HWC uint8" in failed[7]
    assert "missing.jpg" in failed[8] and "no such file" in failed[8]
    assert "item 9 (bytes)" in failed[9] and "empty" in failed[9]
    for r in results:
        assert (r.logits is None) == (r.error is not None)
    # the same image as a path, as bytes and as a decoded array gives the same logits
    np.testing.assert_array_equal(again[0].logits, again[1].logits)
    np.testing.assert_array_equal(results[2].logits, again[0].logits)


def test_breaking_a_stream_cancels_it_and_the_classifier_goes_on(model, files):
    taken = []

    def endless():
        i = 0
        while True:
            taken.append(i)
            yield files[i % len(files)]
            i += 1

    with engine.Classifier(onnx=model, batch_size=2, workers=1) as clf:
        for r in clf.stream(endless()):
            if r.index == 5:
                break
        assert len(taken) <= 6 + clf.config.slots + 2 * clf.config.batch
        results = clf.classify(files)
        stats = clf.stats()
    assert [r.index for r in results] == list(range(len(files))) and not any(r.error for r in results)
    assert stats["items"] == 6 + len(files) and stats["throughput_qps"] > 0
    assert stats["latency_us"]["end_to_end"]["p50"] > 0 and stats["stages_us_per_item"]["inference"] > 0


def test_bad_options_are_usage_errors_and_a_closed_classifier_refuses(model):
    with pytest.raises(engine.UsageError, match="-b must be at least 1, got 0"):
        engine.Classifier(onnx=model, batch_size=0)
    with pytest.raises(engine.UsageError, match="unknown option"):
        engine.Classifier(onnx=model, batch=4)
    with pytest.raises(engine.UsageError, match="--topk 11 exceeds the model's classes"):
        engine.Classifier(onnx=model, topk=11)
    clf = engine.Classifier(onnx=model, workers=1)
    clf.close()
    with pytest.raises(engine.RunFailed, match="closed"):
        clf.classify([])


def test_a_long_stream_keeps_only_the_latest_batch_timings(model):
    from engine.pipeline.shard_broker import KEEP_BATCHES

    frame = photo_array("coffee", size=(24, 24))
    count = 2 * KEEP_BATCHES + 500
    with engine.Classifier(onnx=model, batch_size=1, workers=1) as clf:
        assert sum(r.error is None for r in clf.stream(frame for _ in range(count))) == count
        stats = clf.stats()
        meter = clf._broker.meter
        assert KEEP_BATCHES <= len(meter.batch_us) < 2 * KEEP_BATCHES
        assert len(meter.e2e_us) < 2 * KEEP_BATCHES and len(meter.spans) < 2 * KEEP_BATCHES
    assert stats["items"] == count and sum(stats["batch_sizes"].values()) == count
    assert stats["latency_us"]["end_to_end"]["p99"] > 0
