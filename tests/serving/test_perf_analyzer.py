"""Triton's own perf_analyzer (the .venv-perf that ``make install`` sets up) against a real
engine.serve over HTTP and gRPC: it reads the model's metadata and config, sends random
UINT8 images at concurrency 1 and 2, and reports a throughput for each; also over gRPC
--streaming, and two perf_analyzer processes against two models of one repository at once."""
from __future__ import annotations

import pytest
from server_process import ServerProcess
from tinynet import write_tiny_onnx

from bench import perf_analyzer

MODEL = "tinynet"
# Short windows and no stability bound (any 3 windows agree): a few seconds per protocol, not a
# measurement; under a tighter bound a loaded machine makes perf_analyzer drop the level that did not settle.
QUICK = ("--stability-percentage", "100", "--max-trials", "5")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    onnx = write_tiny_onnx(tmp_path_factory.mktemp("tiny") / "tiny_64.onnx", size=64, resize=72, classes=10, seed=2)
    with ServerProcess(["--onnx", str(onnx), "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--threads", "1",
                        "--max-batch", "4"]) as proc:
        yield proc


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_perf_analyzer_reports_throughput(server, protocol, tmp_path):
    url = server.fronts[protocol].removeprefix("http://")
    csv_path = tmp_path / f"{protocol}.csv"
    rows = perf_analyzer.run(MODEL, url, protocol, csv_path, concurrency="1:2", interval_ms=500, extra=QUICK,
                             timeout_s=60)
    assert [row.concurrency for row in rows] == [1, 2]
    assert all(row.throughput > 0 and 0 < row.p50_us <= row.p99_us for row in rows), rows
    assert csv_path.read_text().startswith("Concurrency,Inferences/Second")


def test_perf_analyzer_streaming(server, tmp_path):
    """gRPC ModelStreamInfer under perf_analyzer --streaming, with its server-side breakdown."""
    rows = perf_analyzer.run(MODEL, server.fronts["grpc"], "grpc", tmp_path / "stream.csv", concurrency="1:2",
                             interval_ms=500, extra=(*QUICK, "--streaming"), timeout_s=60)
    assert [row.concurrency for row in rows] == [1, 2]
    assert all(row.throughput > 0 for row in rows), rows


def test_perf_analyzer_against_two_models_at_once(repository, tmp_path):
    """Two perf_analyzer processes, one per model of a repository, at the same time."""
    import threading

    with ServerProcess(["--model-repository", str(repository), "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0",
                        "--bind", "off", "--threads", "1"]) as proc:
        results, errors = {}, []

        def drive(model, protocol):
            try:
                url = proc.fronts[protocol].removeprefix("http://")
                results[model] = perf_analyzer.run(model, url, protocol, tmp_path / f"{model}.csv", concurrency="2:2",
                                                   interval_ms=500, extra=QUICK, timeout_s=90)
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=drive, args=args) for args in (("alpha", "grpc"), ("beta", "http"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors, errors
    assert set(results) == {"alpha", "beta"} and all(rows[0].throughput > 0 for rows in results.values())
