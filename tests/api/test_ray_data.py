"""engine.ray_data.Classify in a real Ray Data pipeline on a local Ray: its columns equal a
local Classifier's results for the same model and items."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from photos import photo_array, write_photo
from tinynet import write_tiny_onnx

import engine

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_map_batches_adds_topk_columns_equal_to_a_local_run(local_ray, tmp_path: Path):
    model = write_tiny_onnx(tmp_path / "tiny.onnx", size=32, classes=10)
    paths = [str(write_photo(tmp_path / f"{i}.jpg", name, size=(40 + 3 * i, 38)))
             for i, name in enumerate(("chelsea", "coffee", "astronaut") * 4)]
    rows = [{"image": p} for p in paths] + [{"image": str(tmp_path / "missing.jpg")}]
    kwargs = {"onnx": str(model), "batch_size": 4, "topk": 3}
    ds = ray.data.from_items(rows).map_batches(engine.ray_data.Classify, fn_constructor_kwargs=kwargs,
                                               concurrency=1, batch_size=5, batch_format="numpy")
    out = sorted(ds.take_all(), key=lambda row: row["image"])
    with engine.Classifier(workers=1, **kwargs) as clf:
        local = {r.item: r for r in clf.classify(paths + [str(tmp_path / "missing.jpg")])}
    assert len(out) == len(rows)
    for row in out:
        r = local[row["image"]]
        if r.error:
            assert row["error"] == r.error and "no such file" in row["error"]
            assert list(row["topk_index"]) == [-1] * 3 and np.isnan(row["topk_prob"]).all()
            continue
        assert row["error"] is None
        assert list(row["topk_index"]) == [c for c, _, _ in r.topk]
        assert list(row["topk_name"]) == [n for _, n, _ in r.topk]
        np.testing.assert_array_equal(row["topk_prob"], np.float32([p for _, _, p in r.topk]))


def test_arrays_and_bytes_columns_classify_like_paths(local_ray, tmp_path: Path):
    model = write_tiny_onnx(tmp_path / "tiny.onnx", size=32, classes=10)
    path = write_photo(tmp_path / "x.png", "coffee", size=(44, 40))
    arrays = np.stack([photo_array("coffee", size=(44, 40))] * 3)
    kwargs = {"onnx": str(model), "batch_size": 2}
    from_arrays = ray.data.from_numpy(arrays).map_batches(engine.ray_data.Classify, concurrency=1, batch_size=3,
                                                          fn_constructor_kwargs={**kwargs, "column": "data"})
    from_bytes = ray.data.from_items([{"image": path.read_bytes()}]).map_batches(
        engine.ray_data.Classify, concurrency=1, batch_size=1, fn_constructor_kwargs=kwargs)
    with engine.Classifier(workers=1, **kwargs) as clf:
        expected = clf.classify([path])[0]
    for row in from_arrays.take_all() + from_bytes.take_all():
        assert row["error"] is None
        assert list(row["topk_index"]) == [c for c, _, _ in expected.topk]
