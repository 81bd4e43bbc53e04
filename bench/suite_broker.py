"""Broker suite: what the pipeline itself costs, with a model that costs nothing (issue 20).

1. Broker CPU per item, marginal: ``engine.run`` on a null model (GlobalAveragePool +
   Gemm, 1000 classes), batch 64, one preprocess worker, over N and 2N npz items; the
   broker process's CPU time (its report's ``broker_cpu_s.process``: scheduler,
   supervisor, sink, every thread of ``engine.run``'s own process) at 2N minus that at N,
   over N. Start-up, imports and compilation cancel out. Without output files (goal
   <= 20 us), and with ``--path_output`` and ``--save-topk`` (no goal: the files' cost).
2. Engine vs the work it schedules: the engine's throughput on the null model against a
   standalone preprocessing loop (the same kernel over the same npz files, as many
   processes as the engine has preprocess workers), in alternating rounds. Goal >= 0.9.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import Findings
from bench.suite_pipeline import make_npz_set, run_engine
from engine.data.dataconfig import ModelInfo
from engine.data.datalist import write_datalist
from engine.models.tinynet import write_pool_linear_onnx

BATCH = 64
WORKERS = 1


@dataclass(frozen=True)
class Mode:
    files: int  # distinct npz files (the datalists cycle over them)
    items: int  # N: the smaller run; the larger is 2N
    rounds: int  # repeats of each measurement (the median is reported)


MODES = {"smoke": Mode(files=16, items=256, rounds=1), "quick": Mode(files=128, items=3840, rounds=2),
         "full": Mode(files=256, items=7680, rounds=5)}


def _preprocess_share(paths: list[str], cfg: dict, start, out) -> None:
    import kernels
    from engine.data.decode import load_item

    slot = np.empty((3, cfg["crop"], cfg["crop"]), np.float32)
    args = {"resize": cfg["resize"], "crop": cfg["crop"], "mean": tuple(cfg["mean"]), "std": tuple(cfg["std"])}
    kernels.resize_crop_normalize(load_item(paths[0]), out=slot, **args)  # compiled before the clock
    start.wait()
    t0 = time.perf_counter()
    for path in paths:
        kernels.resize_crop_normalize(load_item(path), out=slot, **args)
    out.put(time.perf_counter() - t0)


def standalone_preprocess_rate(items: list[str], model: Path, processes: int) -> float:
    """Items/s of the engine's own load + fused kernel loop over ``items``, split over
    ``processes`` processes started together (what the preprocess workers do, nothing else)."""
    cfg = ModelInfo.load(ModelInfo.path_for(model)).data_config.to_dict()
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_preprocess_share, args=(items[i::processes], cfg, start, out))
             for i in range(processes)]
    for p in procs:
        p.start()
    elapsed = max(out.get() for _ in procs)
    for p in procs:
        p.join()
    return len(items) / elapsed


def _engine(datalist: Path, model: Path, report: Path, *extra) -> dict:
    return run_engine(datalist, model, report, "-b", BATCH, "--workers", WORKERS, "--threads", 1, *extra)


def broker_cpu_per_item(tmp: Path, model: Path, lists: dict[int, Path], with_files: bool, rounds: int) -> dict:
    """Median marginal broker CPU (us per item) over ``rounds`` pairs of runs, whole
    process and run loop alone."""
    small, large = sorted(lists)
    process_us, loop_us = [], []
    for r in range(rounds):
        cpu = {}
        for n in (small, large):
            extra = []
            if with_files:
                extra = ["--path_output", tmp / f"out-{n}-{r}", "--save-topk", tmp / f"topk-{n}-{r}.txt"]
            cpu[n] = _engine(lists[n], model, tmp / f"cpu-{n}-{r}-{with_files}.json", *extra)["broker_cpu_s"]
        extra_items = large - small
        process_us.append((cpu[large]["process"] - cpu[small]["process"]) / extra_items * 1e6)
        loop_us.append((cpu[large]["run"] - cpu[small]["run"]) / extra_items * 1e6)
    return {"process": float(np.median(process_us)), "loop": float(np.median(loop_us)),
            "process_rounds": process_us, "loop_rounds": loop_us}


def run(quick: bool = True) -> dict:
    mode = MODES["smoke" if os.environ.get("BENCH_SMOKE") == "1" else "quick" if quick else "full"]
    found = Findings()
    with tempfile.TemporaryDirectory(prefix="bench-broker-") as tmp:
        tmp = Path(tmp)
        files = make_npz_set(tmp / "npz", mode.files)
        model = write_pool_linear_onnx(tmp / "null" / "null.onnx")
        lists = {}
        for n in (mode.items, 2 * mode.items):
            lists[n] = tmp / f"list{n}.txt"
            write_datalist(lists[n], [files[i % len(files)] for i in range(n)])

        for with_files, label in ((False, "no output files"), (True, "--path_output and --save-topk")):
            cpu = broker_cpu_per_item(tmp, model, lists, with_files, mode.rounds)
            found.rows.append({"name": f"broker CPU per item, marginal ({label})", "value": cpu["process"],
                               "unit": "us", "key": not with_files, "rounds": cpu["process_rounds"],
                               "run_loop_only_us": cpu["loop"], "run_loop_rounds": cpu["loop_rounds"]})
            if not with_files:
                found.ratios.append({"name": "broker CPU per item, null model, batch 64, no output files (us)",
                                     "value": cpu["process"], "goal": "<= 20", "met": cpu["process"] <= 20})

        items = [files[i % len(files)] for i in range(mode.items)]
        standalone, engine, per_round = [], [], []
        for r in range(mode.rounds):
            standalone.append(standalone_preprocess_rate(items, model, WORKERS))
            engine.append(_engine(lists[mode.items], model, tmp / f"rate-{r}.json")["throughput_qps"])
            per_round.append(engine[-1] / standalone[-1])
        ratio = float(np.median(per_round))
        found.rows += [
            {"name": f"standalone preprocessing loop, {WORKERS} process(es)", "value": float(np.median(standalone)),
             "unit": "img/s", "rounds": standalone},
            {"name": f"engine, null model, batch {BATCH}, {WORKERS} preprocess worker(s)",
             "value": float(np.median(engine)), "unit": "img/s", "key": True, "rounds": engine},
        ]
        found.ratios.append({"name": "engine (null model) / standalone preprocessing loop, median of paired rounds",
                             "value": ratio, "goal": ">= 0.9", "met": ratio >= 0.9, "per_round": per_round})
    found.notes.append(f"{mode.items} and {2 * mode.items} items cycling over {mode.files} ImageNet-sized npz files "
                       f"(page cache warm); batch {BATCH}, {WORKERS} preprocess worker, 1 onnxruntime thread; the "
                       "marginal CPU is the median over rounds of (CPU at 2N - CPU at N) / N of engine.run's own "
                       "process; run_loop_only_us counts the scheduling loop alone (no datalist reading, no report).")
    return found.result("broker", "the pipeline's own cost: broker CPU per item and engine vs standalone preprocessing")


if __name__ == "__main__":
    print(json.dumps(run(quick="--full" not in sys.argv), indent=2))
