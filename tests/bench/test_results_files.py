"""What a bench run leaves on disk: a compact record, raw samples apart, the latest plots only."""
import json

import numpy as np

from bench.render import main as render_main
from bench.results_files import PERCENTILES, compact, to_json, write_run


def run_results(latencies) -> dict:
    return {"date": "2026-01-02T03:04:05+00:00", "host": "box", "command": "python -m bench --quick",
            "mode": "quick", "smoke": False, "machine": {"cpu_model": "Test CPU", "cores_usable": 2, "gpus": []},
            "elapsed_s": 1.5,
            "suites": {
                "serve": {"status": "ok", "title": "served vs in-process",
                          "rows": [{"name": "p50", "value": 1.25, "unit": "ms", "samples": len(latencies)}],
                          "ratios": [{"name": "overhead p50 (ms)", "value": 0.5, "goal": "<= 1", "met": True}],
                          "notes": ["a note"],
                          "series": {"latency_us": {"concurrency 1": latencies},
                                     "tiny_sweep": [{"concurrency": 1, "throughput": 900.5}]}},
                "preprocess": {"status": "ok", "rows": [{"name": "kernel", "value": 0.4, "unit": "ms"}]},
                "gpu": {"status": "skipped", "error": "no CUDA device visible to torch"}}}


def test_a_run_commits_figures_and_keeps_samples_apart(tmp_path):
    latencies = [float(x) for x in np.linspace(1000.0, 3000.0, 5000)]
    files = write_run(run_results(latencies), tmp_path, "run-a")

    record = json.loads(files.record.read_text())
    serve = record["suites"]["serve"]
    assert serve["rows"] == [{"name": "p50", "value": 1.25, "unit": "ms", "samples": 5000}]
    assert serve["ratios"][0] == {"name": "overhead p50 (ms)", "value": 0.5, "goal": "<= 1", "met": True}
    assert serve["series"]["tiny_sweep"] == [{"concurrency": 1, "throughput": 900.5}]
    summary = serve["series"]["latency_us"]["concurrency 1"]
    assert summary["count"] == 5000
    assert list(summary["percentiles"]) == [f"{p:g}" for p in PERCENTILES]
    assert summary["percentiles"]["0"] == 1000.0 and summary["percentiles"]["50"] == 2000.0
    assert summary["percentiles"]["100"] == 3000.0
    assert record["suites"]["gpu"] == {"status": "skipped", "error": "no CUDA device visible to torch"}
    assert {k: record[k] for k in ("date", "host", "command", "mode", "machine")} == \
        {k: run_results([])[k] for k in ("date", "host", "command", "mode", "machine")}
    assert files.record.stat().st_size < 4000

    assert files.raw == tmp_path / "raw" / "run-a.json"
    assert json.loads(files.raw.read_text())["suites"]["serve"]["series"]["latency_us"]["concurrency 1"] == latencies
    assert [p["name"] for p in record["plots"]] == ["latency_cdf", "preprocess"]
    for plot in record["plots"]:
        assert (tmp_path / plot["file"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| serve | overhead p50 (ms) | 0.5 | <= 1 | yes |" in files.rendering.summary.read_text()


def test_a_new_run_removes_the_renderings_of_earlier_runs_only(tmp_path):
    first = write_run(run_results([1.0, 2.0, 3.0]), tmp_path, "run-a")
    notes = tmp_path / "gpu-runs.md"
    notes.write_text("hand-written notes on runs elsewhere\n")
    second = write_run(run_results([2.0, 4.0]), tmp_path, "run-b")

    assert first.record.is_file() and first.raw.is_file() and notes.is_file()
    assert not first.rendering.summary.exists()
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == \
        ["run-b-latency_cdf.png", "run-b-preprocess.png"]
    assert second.rendering.summary.is_file()


def test_any_run_can_be_drawn_again_from_its_record(tmp_path, capsys):
    files = write_run(run_results([float(x) for x in range(1, 400)]), tmp_path / "results", "run-a")
    files.rendering.summary.unlink()
    out = tmp_path / "again"
    assert render_main([str(files.record), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert (out / "plots" / "run-a-latency_cdf.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (out / "run-a.md").read_text()
    assert "| serve | overhead p50 (ms) | 0.5 | <= 1 | yes |" in summary
    assert "](plots/run-a-latency_cdf.png)" in summary


def test_render_names_a_file_that_is_not_a_results_file(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    try:
        render_main([str(bad), "--out", str(tmp_path)])
    except SystemExit as e:
        assert e.code == 2
    assert f"results file {bad}: not a 'python -m bench' results file" in capsys.readouterr().err


def test_compact_json_reads_back_the_same_with_a_row_per_line():
    results = compact(run_results([5.0, 6.0, 7.0]))
    rows = [{"name": f"vgg11 int8 engine end to end from npz, batch {b}", "value": 10.5 * b, "unit": "img/s",
             "rounds": [1.0, 2.0]} for b in (1, 8)]
    results["suites"]["preprocess"]["rows"] = rows
    text = to_json(results)
    assert json.loads(text) == results
    lines = text.splitlines()
    assert all(f"    {json.dumps(row)}" in [line.rstrip(",") for line in lines] for row in rows)
    assert '  "gpu": {"status": "skipped", "error": "no CUDA device visible to torch"}' in lines
