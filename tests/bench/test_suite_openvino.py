"""bench.suite_openvino in smoke mode: ResNet-50 exported by the engine, every backend and
precision of the table measured, the goal ratio from real engine.run and bare OpenVINO runs."""
from __future__ import annotations

import math

import pytest

from bench import SUITES
from bench.__main__ import run_suite_here


@pytest.mark.slow  # exports ResNet-50 and runs it on four runtimes: a minute or two
def test_openvino_suite_smoke_measures_the_table_and_the_goal(monkeypatch):
    monkeypatch.setenv("BENCH_SMOKE", "1")
    assert "openvino" in SUITES
    result = run_suite_here("bench", "openvino", quick=True)
    assert result["status"] == "ok", result
    table = {row["runtime"]: row["value"] for row in result["rows"] if row.get("model") == "resnet50"}
    assert set(table) == {"onnxruntime fp32", "OpenVINO f32", "OpenVINO bf16", "engine torch bf16"}
    assert all(value > 0 for value in table.values())
    error = next(row for row in result["rows"] if "largest logit error" in row["name"])
    assert 0 < error["value"] <= 2e-2 and error["top1_agreement"] >= 0.9
    engine_row = next(row for row in result["rows"] if row["name"].startswith("resnet50 engine --backend openvino"))
    assert engine_row["precision_ran"] == "bf16" and engine_row["key"]
    (ratio,) = result["ratios"]
    assert math.isfinite(ratio["value"]) and ratio["goal"] == ">= 0.95" and ratio["met"] == (ratio["value"] >= 0.95)
