"""Shards suite: dataset-scale input and output (issue 29).

1. Tar shards against the same images as individual files: ImageNet-sized JPEGs, the
   pool + linear net at 224 x 224 (next to no work per image: the input path is what is
   measured), the same settings and cores, the same items in the same order; paired
   rounds, the goal (>= 1.0) on the median of shard / file throughput per round. The
   driver's header scan (before the run starts) is a row of its own, per member.
2. The driver's CPU per item of a ``--ray`` job on a two-node ``ray.cluster_utils.Cluster``:
   the nodes writing the results table (``--results DIR``: the driver gets a tally per
   shard) against the driver writing the outputs (``--path_output``, today's
   ``output_XXXXXX.npz``; and ``--save-topk``), and against top-5 coming back with nothing
   written. The figure is the report's ``broker_cpu_s.run`` (every thread of the driver's
   process, Ray's own included) over the items; the at-rest part of it (Ray's threads) is
   measured by the ray suite. A fit over two shard sizes splits it into a cost per shard
   and a rest per item (the time-based part of Ray's threads lands in the rest), and the
   driver's own bookkeeping per shard is timed in-process, without Ray, for both modes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from shard_files import write_shard
from tinynet import write_pool_linear_onnx

from bench import Findings
from bench.fixtures import Goal, imagenet_photos, ratio
from bench.suite_ray import start_two_node_cluster
from engine.data.datalist import write_datalist
from engine.data.shard_spec import read_shards

ROOT = Path(__file__).resolve().parents[1]
BATCH = 16
PER_SHARD = 64
GOAL = Goal(">=", 1.0)


@dataclass(frozen=True)
class Mode:
    images: int
    repeats: int  # passes over the images in one job
    rounds: int
    ray_items: int


MODES = {"smoke": Mode(images=64, repeats=2, rounds=1, ray_items=128),
         "quick": Mode(images=256, repeats=8, rounds=3, ray_items=3072),
         "full": Mode(images=1024, repeats=8, rounds=5, ray_items=8192)}


def _jpegs(folder: Path, count: int) -> list[Path]:
    """``count`` ImageNet-sized quality-90 JPEGs cut from scikit-image's photos."""
    paths = []
    for i, im in enumerate(imagenet_photos(count)):
        path = folder / "n01440764" / f"img_{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        im.save(path, quality=90)
        paths.append(path)
    return paths


def _shards(folder: Path, images: list[Path]) -> list[Path]:
    shards = []
    for n, start in enumerate(range(0, len(images), PER_SHARD)):
        chunk = images[start:start + PER_SHARD]
        samples = [(f"n01440764/{p.stem}", {"jpg": p.read_bytes(), "cls": b"0"}) for p in chunk]
        shards.append(write_shard(folder / f"data-{n:06d}.tar", samples))
    return shards


def _engine(source: list[str], model: Path, report: Path, *extra) -> dict:
    cmd = [sys.executable, "-m", "engine.run", *source, "--onnx", str(model), "--quiet", "-b", str(BATCH),
           "--report", str(report), *map(str, extra)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"engine.run {' '.join(map(str, extra))} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(report.read_text())


def shards_vs_files(found: Findings, tmp: Path, model: Path, mode: Mode) -> None:
    images = _jpegs(tmp / "files", mode.images)
    shards = _shards(tmp / "shards", images)
    file_list, shard_list = tmp / "files.txt", tmp / "shards.txt"
    write_datalist(file_list, [str(p) for p in images] * mode.repeats)
    write_datalist(shard_list, [str(p) for p in shards] * mode.repeats)
    sources = {"individual files (--datalist)": ["--datalist", str(file_list)],
               "tar shards (--shards)": ["--shards", str(shard_list)]}
    rates = {name: [] for name in sources}
    _engine(sources["tar shards (--shards)"], model, tmp / "warm.json")  # page cache and numba cache warm
    for r in range(mode.rounds):
        for name in list(sources)[r % 2:] + list(sources)[:r % 2]:
            rates[name].append(_engine(sources[name], model, tmp / f"{r}.json")["throughput_qps"])
    per_round = [s / f for s, f in zip(rates["tar shards (--shards)"], rates["individual files (--datalist)"],
                                       strict=True)]
    value = float(np.median(per_round))
    found.ratios.append(ratio("tar shards / the same images as individual files, throughput (pool + linear net, "
                              "median of paired rounds)", value, GOAL, readme=True, per_round=per_round))
    for name, values in rates.items():
        found.rows.append({"name": f"{name}, throughput", "value": float(np.median(values)), "unit": "img/s",
                           "rounds": values})
    start = time.perf_counter()
    members = len(read_shards(str(shard_list)).items)
    scan_s = time.perf_counter() - start
    found.rows.append({"name": "header scan of the shards before the run (one process), per image", "unit": "us",
                       "value": 1e6 * scan_s / members, "members": members})


def driver_cpu(found: Findings, tmp: Path, model: Path, mode: Mode) -> None:
    images = _jpegs(tmp / "ray-files", 64)
    shards = _shards(tmp / "ray-shards", images)
    shard_list = tmp / "ray-shards.txt"
    write_datalist(shard_list, [str(p) for p in shards] * (mode.ray_items // len(images)))
    cluster = start_two_node_cluster()
    setups = {"top-5 back to the driver, nothing written": [],
              "driver writes --path_output (output_XXXXXX.npz) and --save-topk": [
                  "--path_output", tmp / "npz", "--save-topk", tmp / "topk.txt"],
              "nodes write --results DIR (the driver gets a tally per shard)": [
                  "--results", tmp / "table", "--results-logits", "float16"]}
    per_item, node_writer_runs = {}, []
    try:
        source = ["--shards", str(shard_list)]
        _engine(source, model, tmp / "first.json", "--ray", cluster.address)  # a fresh cluster's first job
        for name, extra in setups.items():
            report = _engine(source, model, tmp / "ray.json", "--ray", cluster.address, *extra)
            items, shards = report["counts"]["items"], report["cluster"]["shards_done"]
            per_item[name] = 1e6 * report["broker_cpu_s"]["run"] / items
            found.rows.append({"name": f"--ray, {name}: driver CPU per item", "value": per_item[name], "unit": "us",
                               "driver_cpu_ms_per_shard": 1e3 * report["broker_cpu_s"]["run"] / shards,
                               "bytes_back_per_item": report["cluster"]["bytes_returned"] / items,
                               "throughput_qps": report["throughput_qps"], "shards": shards})
            if "--results" in extra:
                node_writer_runs.append((items, shards, report["broker_cpu_s"]["run"]))
                small = _engine(source, model, tmp / "ray.json", "--ray", cluster.address, *extra, "--ray-shard", 64)
                node_writer_runs.append((items, small["cluster"]["shards_done"], small["broker_cpu_s"]["run"]))
    finally:
        cluster.shutdown()
    _fit_driver_cost(found, node_writer_runs)
    names = list(setups)
    found.ratios.append(ratio("--ray driver CPU per item: nodes writing --results / the driver writing "
                              "--path_output and --save-topk", per_item[names[2]] / per_item[names[1]]))


def _fit_driver_cost(found: Findings, runs: list[tuple[int, int, float]]) -> None:
    """The node-writer driver's CPU as a cost per shard plus a cost per item, from two shard
    sizes over the same items (the line through the two runs; what the cluster projection takes)."""
    (items, shards_a, cpu_a), (_, shards_b, cpu_b) = runs
    per_shard = (cpu_a - cpu_b) / (shards_a - shards_b) if shards_a != shards_b else cpu_a / shards_a
    per_item = max(0.0, (cpu_a - per_shard * shards_a) / items)
    found.rows.append({"name": "--ray with node-side writers: driver CPU per shard (fit over two shard sizes)",
                       "value": 1e3 * per_shard, "unit": "ms", "per_item_us": 1e6 * per_item,
                       "runs": [{"items": i, "shards": n, "driver_cpu_s": c} for i, n, c in runs]})


def driver_bookkeeping(found: Findings, shards: int) -> None:
    """The driver's own CPU in ``ClusterRun._take`` per 2,048-item shard, in this process (no
    Ray, no load from the nodes): a node-written shard (its tally) against top-5 rows back
    with labels (what the driver does per item without node-side writers)."""
    from engine.cluster.driver import ClusterRun
    from engine.cluster.node_books import NodeBooks
    from engine.cluster.shard_result import PartFile, ShardResult, ShardTally
    from engine.cluster.shards import cut
    from engine.data.dataconfig import DataConfig
    from engine.data.labels import LabelSource
    from engine.pipeline.config import RunConfig
    from engine.pipeline.shard_broker import ShardFigures
    from engine.pipeline.sink import Sink

    size = 2048
    items = [f"/d/val-{i // 1000:06d}.tar#n0144/x_{i}.JPEG@{i * 512}+110000:{i % 1000}" for i in range(size * shards)]
    cfg = RunConfig(model_path="m.onnx", data_config=DataConfig(input_size=(3, 224, 224), crop=224, resize=256),
                    warmup=0, batch=128)
    rng = np.random.default_rng(0)
    ranked, probs = rng.integers(0, 1000, (size, 5)), rng.random((size, 5)).astype(np.float32)
    for mode in ("the node wrote the rows (a tally back)", "top-5 rows back, labels scored by the driver"):
        sink = Sink(items, topk=5, class_names=None, labels=LabelSource(embedded=True), path_output=None,
                    output_dtype="float32", save_topk=None, errors_path=None)
        run, books = ClusterRun(cfg, items, sink, shard_size=size, threads_given=True), NodeBooks("n", 1, 0, None, None)
        run.nodes.append(books)
        run.meter.start(time.perf_counter())
        start = time.process_time()
        for shard in cut(items, size):
            n = len(shard.items)
            figures = ShardFigures(0.03, {"decode": 1.0 * n}, {"decode": n}, [100] * (n // 128), {128: n // 128}, 0, 0)
            if mode.startswith("the node"):
                result = ShardResult(shard.index, "n", np.empty(0, np.int64), ranked[:0], probs[:0], [], [], figures,
                                     ShardTally(n, 0, n, n // 2, n), PartFile("p", n, "n"))
            else:
                result = ShardResult(shard.index, "n", np.arange(n), ranked[:n], probs[:n], [], [], figures)
            run._take(books, shard, result)
        per_shard = (time.process_time() - start) / shards
        found.rows.append({"name": f"driver bookkeeping per 2,048-item shard, {mode} (in-process, no Ray)",
                           "value": 1e3 * per_shard, "unit": "ms", "per_item_us": 1e6 * per_shard / size})


def run(quick: bool = True) -> dict:
    mode = MODES["smoke" if os.environ.get("BENCH_SMOKE") == "1" else "quick" if quick else "full"]
    found = Findings()
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as tmp:
        tmp = Path(tmp)
        model = write_pool_linear_onnx(tmp / "model" / "pool_linear.onnx", size=224, classes=1000)
        driver_bookkeeping(found, 20 if mode.rounds == 1 else 200)
        shards_vs_files(found, tmp, model, mode)
        driver_cpu(found, tmp, model, mode)
    found.notes.append(f"{mode.images} ImageNet-sized (500 x 375) quality-90 JPEGs, {PER_SHARD} per shard, "
                       f"{mode.repeats} passes per job, batch {BATCH}, default workers and threads, page cache warm "
                       "(a local disk: what shards save over files is the per-file open, more on a network file "
                       "system). The --ray rows: 64 JPEGs in one shard list of "
                       f"{mode.ray_items} items on ray.cluster_utils.Cluster (2 raylets x 1 CPU on this machine's "
                       "cores), the driver beside them; driver CPU is broker_cpu_s.run of its report.")
    return found.result("shards", "tar shards vs individual files; --ray driver CPU with node-side results writers")


if __name__ == "__main__":
    print(json.dumps(run(quick="--full" not in sys.argv), indent=2))
