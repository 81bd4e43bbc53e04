"""Fleet suite: several models in one server, and gRPC streaming, measured by Triton's perf_analyzer.

1. Two models at once against one alone, on the same cores. A model repository holds two
   copies of timm's ResNet-18 (random weights, seed 0) as ``alpha`` and ``beta``; one server
   serves both, each driven by its own perf_analyzer at concurrency 8 over gRPC at the same
   time; another serves ``alpha`` alone, driven at concurrency 8. Runs alternate alone, both,
   alone, both, alone; each pair's reference is the mean of the alone runs just before and
   after it. Goal: (alpha + beta) / alone >= 0.9 -- the second model costs routing, not capacity.
2. Streaming against unary gRPC at concurrency 1 on the tiny pool + linear model:
   perf_analyzer's p50 with ``--streaming`` and without, alternating, and each one's server
   overhead (p50 minus the bare in-process preprocess + infer + top-k p50, as the kserve
   suite measures it). The stream's extra p50 over unary is reported, with no goal.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from server_process import ServerProcess
from tinynet import write_pool_linear_onnx

from bench import Findings
from bench import perf_analyzer as pa
from bench.fixtures import Goal, ratio
from bench.machine import load_note
from bench.suite_kserve import bare_latencies_us, frame

CONCURRENCY = 8
LOOSE = ("--stability-percentage", "100", "--max-trials", "5")


@dataclass(frozen=True)
class Mode:
    interval_ms: int
    perf_flags: tuple[str, ...]
    pairs: int  # alone/both alternations
    bare_per_block: int


MODES = {
    "smoke": Mode(500, LOOSE, 1, 50),
    "quick": Mode(3000, ("--stability-percentage", "30", "--max-trials", "10"), 2, 300),
    "full": Mode(6000, ("--stability-percentage", "15", "--max-trials", "20"), 3, 1000),
}


def measure(url: str, model: str, concurrency: int, mode: Mode, csv: Path, extra: tuple = ()) -> pa.Measurement:
    """One perf_analyzer level over gRPC; a level whose windows never agree is measured again loosely."""
    options = {"concurrency": f"{concurrency}:{concurrency}", "interval_ms": mode.interval_ms, "timeout_s": 600}
    try:
        [level] = pa.run(model, url, "grpc", csv, extra=(*mode.perf_flags, *extra), **options)
    except pa.Unstable:
        [level] = pa.run(model, url, "grpc", csv, extra=(*LOOSE, *extra), **options)
    return level


def repository(tmp: Path) -> Path:
    """alpha and beta: the same ResNet-18 file (and its model info) in two model folders."""
    from engine.models.cache import cached_model

    onnx = Path(cached_model("resnet18", "timm").path)
    root = tmp / "repo"
    for name in ("alpha", "beta"):
        folder = root / name / "1"
        folder.mkdir(parents=True)
        shutil.copy(onnx, folder / "model.onnx")
        shutil.copy(onnx.with_suffix(".json"), folder / "model.json")
    return root


def both_at_once(url: str, mode: Mode, csv_dir: Path, round_: int) -> tuple[float, float]:
    results, errors = {}, []

    def drive(model):
        try:
            results[model] = measure(url, model, CONCURRENCY, mode, csv_dir / f"both-{model}-{round_}.csv")
        except Exception as e:  # re-raised below
            errors.append(e)

    threads = [threading.Thread(target=drive, args=(model,)) for model in ("alpha", "beta")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results["alpha"].throughput, results["beta"].throughput


def two_models_part(found: Findings, tmp: Path, mode: Mode, cores: int) -> None:
    root = repository(tmp)
    alone_root = tmp / "alone"
    alone_root.mkdir()
    shutil.copytree(root / "alpha", alone_root / "alpha")
    common = ["--bind", "off", "--grpc", "127.0.0.1:0", "--threads", str(cores), "--max-batch", "8",
              "--max-queue-delay-us", "2000", "--workers", "2"]
    csv_dir = tmp / "csv"
    csv_dir.mkdir()
    alone, pairs = [], []
    with ServerProcess(["--model-repository", str(alone_root), *common], timeout_s=300) as single, \
            ServerProcess(["--model-repository", str(root), *common], timeout_s=300) as double:
        for i in range(mode.pairs):
            alone.append(measure(single.fronts["grpc"], "alpha", CONCURRENCY, mode, csv_dir / f"alone-{i}.csv"))
            pairs.append(both_at_once(double.fronts["grpc"], mode, csv_dir, i))
        alone.append(measure(single.fronts["grpc"], "alpha", CONCURRENCY, mode, csv_dir / f"alone-{mode.pairs}.csv"))
    rates = [level.throughput for level in alone]
    found.rows.append({"name": f"resnet18 served alone, gRPC concurrency {CONCURRENCY}", "value": float(np.mean(rates)),
                       "unit": "img/s", "runs": rates})
    ratios = []
    for i, (a, b) in enumerate(pairs):
        found.rows.append({"name": f"resnet18 x 2 served together, round {i + 1}: alpha + beta", "value": a + b,
                           "unit": "img/s", "alpha": a, "beta": b})
        ratios.append((a + b) / ((rates[i] + rates[i + 1]) / 2))
    found.ratios.append(ratio(f"two models at once (concurrency {CONCURRENCY} each) / one alone, total throughput, "
                              "resnet18, gRPC", np.mean(ratios), Goal(">=", 0.9), readme=True))
    found.notes.append(f"Two models: both servers run {cores} intra-op threads per instance, max batch 8, a 2 ms "
                       f"queue delay; the perf_analyzer clients share the {cores} cores with them. Per-round ratios: "
                       f"{', '.join(f'{r:.3f}' for r in ratios)}.")


def stream_part(found: Findings, tmp: Path, mode: Mode) -> None:
    from engine.serving.model import ServedModel

    onnx = write_pool_linear_onnx(tmp / "tiny" / "tiny_224.onnx", resize=256)
    model = ServedModel(onnx, instances=1, threads=1)
    image, bare, runs = frame(), [], {"unary": [], "stream": []}
    csv_dir = tmp / "stream-csv"
    csv_dir.mkdir()
    try:
        with ServerProcess(["--onnx", str(onnx), "--bind", "off", "--grpc", "127.0.0.1:0", "--threads", "1",
                            "--max-batch", "8"]) as server:
            bare_latencies_us(model, image, mode.bare_per_block)  # warm-up, dropped
            for i in range(mode.pairs):
                for kind, extra in (("unary", ()), ("stream", ("--streaming",))):
                    bare.append(bare_latencies_us(model, image, mode.bare_per_block))
                    runs[kind].append(measure(server.fronts["grpc"], model.name, 1, mode,
                                              csv_dir / f"{kind}-{i}.csv", extra))
            bare.append(bare_latencies_us(model, image, mode.bare_per_block))
    finally:
        model.close()
    bare_p50 = float(np.percentile(np.concatenate(bare), 50))
    p50 = {kind: float(np.median([level.p50_us for level in levels])) for kind, levels in runs.items()}
    for kind in ("unary", "stream"):
        found.rows.append({"name": f"tiny model, gRPC {kind}, concurrency 1, p50", "value": p50[kind] / 1000,
                           "unit": "ms", "server_overhead_ms": (p50[kind] - bare_p50) / 1000,
                           "throughput": float(np.mean([level.throughput for level in runs[kind]]))})
    found.ratios.append(ratio("gRPC stream - unary p50 (ms), tiny model, concurrency 1",
                              (p50["stream"] - p50["unary"]) / 1000))
    found.notes.append(f"Stream vs unary: bare in-process p50 {bare_p50 / 1000:.3f} ms; each kind's p50 is the "
                       f"median over {mode.pairs} alternating perf_analyzer runs.")


def run(quick: bool = True) -> dict:
    smoke = os.environ.get("BENCH_SMOKE") == "1"
    mode = MODES["smoke" if smoke else "quick" if quick else "full"]
    pa.require()
    found = Findings()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        two_models_part(found, Path(tmp), mode, cores)
        stream_part(found, Path(tmp), mode)
    found.notes.append(load_note(cores))
    return found.result("fleet", "two models in one server vs one alone; gRPC stream vs unary (perf_analyzer)")
