"""bench.suite_kserve in smoke mode: the real perf_analyzer and bench.load against one real
engine.serve, the tiny model's sweep on three front ends and its overhead ratios."""
from __future__ import annotations

import math

from bench import SUITES
from bench.__main__ import run_suite_here


def test_kserve_suite_smoke_measures_every_front_end(monkeypatch):
    monkeypatch.setenv("BENCH_SMOKE", "1")
    assert "kserve" in SUITES
    result = run_suite_here("bench", "kserve", quick=True)
    assert result["status"] == "ok", result
    rows = {row["name"]: row for row in result["rows"]}
    for protocol in ("http", "grpc", "zmq"):
        for level in (1, 2):
            row = rows[f"tiny model via engine.serve {protocol}, concurrency {level}"]
            assert row["value"] > 0 and 0 < row["p50_ms"] <= row["p99_ms"], row
    assert [level["concurrency"] for level in result["series"]["kserve_sweep"]["grpc"]] == [1, 2]
    overheads = [ratio for ratio in result["ratios"] if ratio["name"].startswith("server overhead")]
    assert len(overheads) == 4 and all(math.isfinite(ratio["value"]) for ratio in overheads)
    assert {ratio["goal"] for ratio in overheads} == {"<= 1.5", "<= 4"}
