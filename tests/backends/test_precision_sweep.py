"""Which backends and precisions the --auto sweep may try, and the sweep itself on real sessions."""
from __future__ import annotations

from dataclasses import replace

import pytest
from photos import PHOTOS, write_photo
from tinynet import write_tiny_onnx

from engine.builder.build import set_precision
from engine.data.dataconfig import ModelInfo
from engine.pipeline.precision_sweep import Candidate, allowed_candidates, auto_sweep

GRID = {"instances": [1], "threads": [1], "batch": [2]}


def pairs(candidates):
    return {(c.backend, c.precision) for c in candidates}


def test_only_what_the_user_allows():
    assert pairs(allowed_candidates(None, None, None, "fp32")) == {("ort", "fp32"), ("openvino", "fp32")}
    assert pairs(allowed_candidates(None, ["bf16"], None, "fp32")) == {("openvino", "bf16")}
    assert pairs(allowed_candidates(None, None, 1.0, "fp32")) == {("ort", "fp32"), ("openvino", "fp32"),
                                                                   ("openvino", "bf16")}
    assert pairs(allowed_candidates("ort", None, 1.0, "fp32")) == {("ort", "fp32")}
    # a built file runs at the precision it was built for; onnxruntime refuses a bf16 one
    assert pairs(allowed_candidates(None, None, None, "int8")) == {("ort", "int8"), ("openvino", "int8")}
    assert pairs(allowed_candidates(None, None, None, "bf16")) == {("openvino", "bf16")}
    assert pairs(allowed_candidates(None, None, 1.0, "bf16")) == {("openvino", "fp32"), ("openvino", "bf16")}
    with pytest.raises(ValueError, match="no backend among ort runs it"):
        allowed_candidates("ort", ["bf16"], None, "fp32")
    with pytest.raises(ValueError, match="fp16"):
        allowed_candidates("torch", ["fp16"], None, "fp32", "cpu")


def test_candidate_options_always_name_the_float_precision():
    assert Candidate("openvino", "fp32").options() == {"precision": "fp32"}
    assert Candidate("openvino", "bf16").options() == {"precision": "bf16"}
    assert Candidate("openvino", "int8").options() == {}
    assert Candidate("ort", "fp32").options() == {}
    assert Candidate("torch", "bf16").options() == {"precision": "bf16"}


def test_sweep_of_a_bf16_folder_measures_its_loss_against_openvino_fp32(tmp_path):
    model = write_tiny_onnx(tmp_path / "tiny.onnx", size=32)
    set_precision(model, "bf16")
    info = ModelInfo.load(ModelInfo.path_for(model))
    replace(info, extra={**info.extra, "precision": "bf16"}).save(ModelInfo.path_for(model))
    items = [str(write_photo(tmp_path / f"{p}.jpg", p, size=(50, 40))) for p in PHOTOS]
    result = auto_sweep(model, "cpu", None, 1.0, {}, max_loss=100.0, items=items, grid=GRID)
    assert pairs([result.candidate]) <= {("openvino", "fp32"), ("openvino", "bf16")}
    rows = {(r["backend"], r["precision"]): r for r in result.table}
    assert set(rows) == {("openvino", "fp32"), ("openvino", "bf16")}
    assert rows[("openvino", "bf16")]["images"] == len(PHOTOS)
    assert all(r["images_per_s"] > 0 for r in rows.values())
    assert {r["backend"] for r in result.settings} == {"openvino"}
