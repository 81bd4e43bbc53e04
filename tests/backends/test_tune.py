"""Auto-tuning with real onnxruntime sessions on a tiny seeded network."""
from __future__ import annotations

import json
import os

import pytest
from tinynet import write_tiny_onnx

from engine.pipeline.autotune import (
    Meter,
    Setting,
    autotune,
    default_grid,
    exhaustive_sweep,
    format_table,
    grid_settings,
    short_sweep,
)

GRID = {"instances": [1, 2], "threads": [1, 2], "batch": [1, 2, 4]}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_onnx(tmp_path_factory.mktemp("tune") / "tinynet.onnx", size=32)


def test_grid_leaves_out_oversubscribed_settings():
    settings = grid_settings(GRID, "cpu", cores=2)
    assert Setting(2, 2, 1) not in settings and Setting(2, 1, 4) in settings
    assert len(settings) == 3 * 3  # (1,1) (1,2) (2,1) x three batch sizes
    assert len(grid_settings(GRID, "cuda", cores=2)) == 12
    assert default_grid("cpu", cores=4)["instances"] == [1, 2, 4]
    with pytest.raises(ValueError, match="batch must be a list"):
        grid_settings({"instances": [1], "threads": [1], "batch": [0]}, "cpu")
    with pytest.raises(ValueError, match="unknown keys"):
        grid_settings({**GRID, "streams": [1]}, "cpu")


def test_autotune_picks_the_fastest_measured_setting(tiny, capsys):
    best, table = autotune(tiny, "cpu", GRID, time_budget_s=1.5)
    printed = capsys.readouterr().out
    assert "images/s" in printed and "<- best" in printed
    assert table and all(row["images_per_s"] > 0 and row["runs"] >= 2 for row in table)
    fastest = max(table, key=lambda r: r["images_per_s"])
    assert best["images_per_s"] == fastest["images_per_s"]
    assert {k: best[k] for k in ("instances", "threads", "batch")} == \
        {k: fastest[k] for k in ("instances", "threads", "batch")}
    cores = os.cpu_count()
    assert all(row["instances"] * row["threads"] <= cores for row in table)


def test_short_sweep_measures_less_than_exhaustive(tiny):
    settings = grid_settings({"instances": [1, 2], "threads": [1, 2], "batch": [1, 2, 4, 8, 16]}, "cpu", cores=2)
    short, full = Meter(tiny, window_s=0.05, cores=2), Meter(tiny, window_s=0.05, cores=2)
    try:
        picked = short_sweep(short, settings)
        everything = exhaustive_sweep(full, settings)
    finally:
        short.close()
        full.close()
    assert len(full.table) == len(settings)
    assert len(short.table) < len(full.table)
    assert picked in settings and everything in settings
    assert picked.instances * picked.threads == 2  # the short sweep only tries splits that use all cores
    assert "<- best" in format_table(full.table, everything)


def test_cli_prints_the_table_and_writes_json(tiny, tmp_path, capsys):
    from engine.tune import main

    out = tmp_path / "tune.json"
    assert main([str(tiny), "--budget", "0.5", "--instances", "1", "--threads", "1", "--batch", "1", "2",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "best: 1 instance(s) x 1 thread(s)" in printed and "images/s" in printed
    saved = json.loads(out.read_text())
    assert len(saved["table"]) >= 1 and saved["best"]["images_per_s"] > 0
    assert main([str(tiny), "--batch", "0"]) == 2
    assert "batch must be a list" in capsys.readouterr().err
