"""Serve suite: engine.serve against the same model run in-process, side by side.

1. Server overhead with a tiny model at concurrency 1: reply latency through a real
   server process (client -> ROUTER -> preprocess -> batcher -> model -> reply) minus
   the bare in-process latency of the same work on the same input (preprocess kernel +
   onnxruntime session + softmax/top-k, one thread), percentile by percentile. Goals:
   p50 <= 1 ms, p99 <= 3 ms. Measured for a 224x224 frame and a 500x375 photo-sized
   frame, both sent raw.
2. VGG11 at concurrency 16: served throughput against offline throughput at the same
   batch size: the engine's backend (same threads) on a pre-made batch, inference only,
   in blocks alternating with served blocks. Goal: ratio >= 0.9. Full mode adds
   ``python -m engine.run`` over npz files as a second offline figure.
3. A concurrency sweep (1..16) of the tiny model for the latency CDF and throughput table.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from server_process import ServerProcess
from tinynet import write_pool_linear_onnx

from bench import Findings
from bench.load import LoadGenerator, synthetic_image

ROOT = Path(__file__).resolve().parents[1]
FRAME_HW = (375, 500)  # a typical ILSVRC2012 val photo, sent raw
FRAME_SIZES = ((224, 224), FRAME_HW)  # a frame already at the model's size, and a photo
MAX_SERIES = 4000  # latency samples kept per curve


@contextlib.contextmanager
def _model_and_dealer(onnx: Path, endpoint: str, threads: int):
    """The server's model loaded in this process (the bare path) and a DEALER to the server."""
    import zmq

    from engine.serving.model import ServedModel

    model = ServedModel(onnx, instances=1, threads=threads)
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        yield model, sock
    finally:
        sock.close()
        context.term()
        model.close()


def _raw_request(image: np.ndarray):
    """``make(id) -> frames`` for a raw-frame request of ``image``."""
    import msgpack

    header = {"encoding": "raw", "shape": list(image.shape), "dtype": "uint8", "topk": 5}
    payload = image.tobytes()
    return lambda request_id: [msgpack.packb({"id": request_id, **header}), payload]


def paired_latencies_us(onnx: Path, endpoint: str, image: np.ndarray, rounds: int,
                        per_round: int) -> tuple[np.ndarray, np.ndarray]:
    """Latencies of the bare in-process path and of the server, in alternating blocks.

    The bare path is the server's work done in this process on the same parts and input:
    preprocess kernel, the same onnxruntime settings, softmax/top-k. Alternating blocks
    of each (rather than one long run of each) lets both see the same background load.
    """
    import msgpack

    request = _raw_request(image)
    bare, served = [], []
    with _model_and_dealer(onnx, endpoint, threads=1) as (model, sock):
        backend = model.backends[0]
        tensor = np.empty((1, *model.input_shape), np.float32)
        for r in range(rounds + 1):  # round 0 warms both paths up and is dropped
            block_bare, block_served = [], []
            for _ in range(per_round):
                t0 = time.perf_counter()
                model.preprocess(image, tensor[0])
                model.topk(backend.run(tensor)[0], 5)
                block_bare.append((time.perf_counter() - t0) * 1e6)
            for i in range(per_round):
                t0 = time.perf_counter()
                sock.send_multipart(request(i))
                if not sock.poll(30_000):
                    raise TimeoutError(f"{endpoint}: no reply within 30 s")
                reply = msgpack.unpackb(sock.recv(), raw=False)
                block_served.append((time.perf_counter() - t0) * 1e6)
                if not reply.get("ok") or reply.get("id") != i:
                    raise RuntimeError(f"{endpoint}: unexpected reply {reply}")
            if r:
                bare += block_bare
                served += block_served
    return np.array(bare), np.array(served)


def paired_throughput(onnx: Path, endpoint: str, image: np.ndarray, *, batch: int, threads: int,
                      concurrency: int, rounds: int, batches_per_block: int) -> dict:
    """Offline and served images/s of one model, in alternating blocks.

    Offline: the engine's backend (same threads, same onnxruntime settings as the
    server) on a batch made of ``image`` preprocessed by the same kernel, back to back,
    inference only. Served: ``concurrency`` requests of ``image`` in flight, topped up
    until ``batches_per_block x batch`` have been sent, timed until the last reply, so
    nothing is left in flight when the next offline block starts.
    """
    import msgpack

    request = _raw_request(image)
    offline, served = [], []
    with _model_and_dealer(onnx, endpoint, threads=threads) as (model, sock):
        x = np.empty((batch, *model.input_shape), np.float32)
        for row in x:
            model.preprocess(image, row)
        sent = 0

        def send():
            nonlocal sent
            sock.send_multipart(request(sent))
            sent += 1

        def receive():
            if not sock.poll(300_000):
                raise TimeoutError(f"{endpoint}: no reply within 300 s")
            reply = msgpack.unpackb(sock.recv(), raw=False)
            if not reply.get("ok"):
                raise RuntimeError(f"{endpoint}: {reply.get('error')}")

        backend = model.backends[0]
        backend.run(x)
        target = batches_per_block * batch
        for r in range(rounds + 1):  # round 0 warms both sides up and is dropped
            t0 = time.perf_counter()
            for _ in range(batches_per_block):
                backend.run(x)
            offline_rate = target / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            for _ in range(concurrency):
                send()
            for i in range(target):
                receive()
                if i + concurrency < target:
                    send()
            served_rate = target / (time.perf_counter() - t0)
            if r:
                offline.append(offline_rate)
                served.append(served_rate)
    return {"offline": offline, "served": served}


def engine_run_throughput(onnx: Path, batch: int, threads: int, folder: Path) -> float:
    """Images/s of ``python -m engine.run`` over ImageNet-sized npz files."""
    from bench.fixtures import make_npz_set, run_engine
    from engine.data.datalist import write_datalist

    items = make_npz_set(folder / "npz", 64)
    datalist = folder / "list.txt"
    write_datalist(datalist, [items[i % len(items)] for i in range(256)])
    report = run_engine(datalist, onnx, folder / "report.json", "-b", batch, "--threads", threads,
                        "--workers", 1, "--warmup", batch)
    return float(report["throughput_qps"])


def vgg11_onnx(folder: Path) -> Path:
    from engine.models.onnx_export import export_onnx
    from engine.models.zoo import create

    return Path(export_onnx(create("vgg11", library="timm", seed=0), folder, check=False))


def _percentiles(samples) -> dict:
    p50, p90, p99 = np.percentile(samples, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99)}


def _thin(samples) -> list[float]:
    samples = list(samples)
    step = max(1, len(samples) // MAX_SERIES)
    return [round(float(x), 1) for x in samples[::step]]


@dataclass(frozen=True)
class Mode:
    """How long each measurement of the suite runs."""

    window_s: float  # one load-generator window (warm-up: half of it)
    paired_rounds: int  # alternating bare/served blocks at concurrency 1
    paired_per_round: int
    levels: tuple[int, ...]  # the concurrency sweep
    vgg: bool  # the VGG11 part
    vgg_rounds: int
    vgg_windows: int
    engine_run: bool  # engine.run as a second offline figure


MODES = {
    "smoke": Mode(window_s=0.5, paired_rounds=4, paired_per_round=25, levels=(1, 4), vgg=False, vgg_rounds=4,
                  vgg_windows=3, engine_run=False),
    "quick": Mode(window_s=2.0, paired_rounds=20, paired_per_round=50, levels=(1, 2, 4, 8, 16), vgg=True,
                  vgg_rounds=4, vgg_windows=3, engine_run=False),
    "full": Mode(window_s=5.0, paired_rounds=20, paired_per_round=50, levels=(1, 2, 4, 8, 16), vgg=True,
                 vgg_rounds=8, vgg_windows=6, engine_run=True),
}


def overhead_part(found: Findings, frame: str, bare: np.ndarray, served: np.ndarray) -> None:
    """The tiny model's bare and served latency at concurrency 1 for one frame size, and
    the server's overhead percentile by percentile."""
    bare_p, served_p = _percentiles(bare), _percentiles(served)
    overhead_p50 = (served_p["p50"] - bare_p["p50"]) / 1000
    overhead_p99 = (served_p["p99"] - bare_p["p99"]) / 1000
    found.rows += [
        {"name": f"tiny model, {frame}, bare in-process preprocess + infer + top-k, p50",
         "value": bare_p["p50"] / 1000, "unit": "ms", "p90_ms": bare_p["p90"] / 1000,
         "p99_ms": bare_p["p99"] / 1000, "samples": len(bare)},
        {"name": f"tiny model, {frame}, via engine.serve at concurrency 1, p50",
         "value": served_p["p50"] / 1000, "unit": "ms", "p90_ms": served_p["p90"] / 1000,
         "p99_ms": served_p["p99"] / 1000, "samples": len(served)},
    ]
    found.series["latency_us"][f"tiny, {frame}, served, concurrency 1"] = _thin(served)
    found.series["latency_us"][f"tiny, {frame}, bare in-process"] = _thin(bare)
    found.ratios += [
        {"name": f"server overhead p50 (ms), tiny model, {frame}, concurrency 1", "value": overhead_p50,
         "goal": "<= 1", "met": overhead_p50 <= 1.0},
        {"name": f"server overhead p99 (ms), tiny model, {frame}, concurrency 1", "value": overhead_p99,
         "goal": "<= 3", "met": overhead_p99 <= 3.0},
    ]


def sweep_part(found: Findings, sweep: list) -> None:
    """The tiny model's throughput and latency at each concurrency of the sweep."""
    for level in sweep:
        found.rows.append({"name": f"tiny model via engine.serve, {FRAME_HW[1]}x{FRAME_HW[0]} raw, "
                                   f"concurrency {level.concurrency}",
                           "value": level.throughput, "unit": "req/s", "p50_ms": level.p50_us / 1000,
                           "p90_ms": level.p90_us / 1000, "p95_ms": level.p95_us / 1000,
                           "p99_ms": level.p99_us / 1000, "windows": level.windows, "stable": level.stable,
                           "errors": level.errors, "server_timing_p50_us": level.server_us})
        found.series["latency_us"][f"tiny, concurrency {level.concurrency}"] = _thin(level.latencies_us)
    found.series["tiny_sweep"] = [level.row() for level in sweep]


def tiny_part(found: Findings, tmp: Path, mode: Mode, image: np.ndarray) -> None:
    """Parts 1 and 3: the tiny model's server overhead at concurrency 1 per frame size, and a sweep."""
    tiny = write_pool_linear_onnx(tmp / "tiny" / "tiny_224.onnx", resize=256)
    with ServerProcess(["--onnx", str(tiny), "--max-batch", "8", "--max-queue-delay-us", "0",
                        "--workers", "2", "--threads", "1"]) as server:
        paired = {hw: paired_latencies_us(tiny, server.endpoint, synthetic_image(*hw), rounds=mode.paired_rounds,
                                          per_round=mode.paired_per_round)
                  for hw in FRAME_SIZES}
        generator = LoadGenerator(server.endpoint, image)
        sweep = [generator.measure(c, warmup_s=mode.window_s / 2, window_s=mode.window_s, max_windows=10)
                 for c in mode.levels]
    for (height, width), (bare, served) in paired.items():
        overhead_part(found, f"{width}x{height} raw frame", bare, served)
    sweep_part(found, sweep)


def vgg_part(found: Findings, tmp: Path, mode: Mode, image: np.ndarray, cores: int) -> None:
    """Part 2: VGG11 at concurrency 16 against offline throughput at the same batch size."""
    batch, threads, concurrency = 8, cores, 16
    vgg = vgg11_onnx(tmp / "vgg")
    with ServerProcess(["--onnx", str(vgg), "--max-batch", str(batch), "--max-queue-delay-us", "50000",
                        "--workers", "1", "--threads", str(threads)], timeout_s=300) as server:
        paired = paired_throughput(vgg, server.endpoint, image, batch=batch, threads=threads,
                                   concurrency=concurrency, rounds=mode.vgg_rounds, batches_per_block=3)
        vgg_level = LoadGenerator(server.endpoint, image, timeout_s=300).measure(
            concurrency, warmup_s=mode.window_s, window_s=4 * mode.window_s, max_windows=mode.vgg_windows)
        histogram = _pong_batches(server.endpoint)
    offline = float(np.mean(paired["offline"]))
    served = float(np.mean(paired["served"]))
    found.rows += [
        {"name": f"vgg11 offline: backend loop, batch {batch}, {threads} threads (inference only)",
         "value": offline, "unit": "img/s", "blocks": paired["offline"]},
        {"name": f"vgg11 via engine.serve, concurrency {concurrency}, max batch {batch} (paired blocks)",
         "value": served, "unit": "img/s", "blocks": paired["served"]},
        {"name": f"vgg11 via engine.serve, concurrency {concurrency}, bench.load windows",
         "value": vgg_level.throughput, "unit": "img/s", "p50_ms": vgg_level.p50_us / 1000,
         "p99_ms": vgg_level.p99_us / 1000, "windows": vgg_level.windows, "stable": vgg_level.stable,
         "batch_sizes": histogram, "server_timing_p50_us": vgg_level.server_us},
    ]
    found.series["latency_us"][f"vgg11, concurrency {concurrency}"] = _thin(vgg_level.latencies_us)
    per_round = [s / o for s, o in zip(paired["served"], paired["offline"])]
    ratio = float(np.median(per_round))
    found.ratios += [
        {"name": f"vgg11 served (concurrency {concurrency}) / offline throughput, batch {batch} "
                 "(median of per-round ratios)", "value": ratio, "goal": ">= 0.9", "met": ratio >= 0.9,
         "per_round": per_round, "readme": True},
        {"name": f"vgg11 served / offline, batch {batch} (ratio of the means)", "value": served / offline,
         "goal": None, "met": None},
    ]
    if mode.engine_run:
        run_rate = engine_run_throughput(vgg, batch, threads, tmp / "run")
        found.rows.append({"name": f"vgg11 offline: python -m engine.run over npz, batch {batch}",
                           "value": run_rate, "unit": "img/s"})
        found.ratios.append({"name": f"vgg11 served (paired blocks) / engine.run, batch {batch} (not paired)",
                             "value": served / run_rate, "goal": None, "met": None})
    found.notes.append("VGG11 has random weights (seed 0): speed only. The offline figure is the engine's "
                       "backend on a pre-made batch of the same preprocessed frame (inference only, no "
                       "preprocessing), measured in blocks alternating with the served blocks (3 batches "
                       "each) so both see the same background load; the goal ratio is the median over rounds "
                       "of served/offline, which one disturbed block cannot swing.")


def suite_notes(cores: int) -> list[str]:
    return [
        f"Sweep and VGG11 frames are {FRAME_HW[1]}x{FRAME_HW[0]} RGB sent raw over tcp://127.0.0.1; the server "
        "preprocesses them (resize 256, crop 224, normalize). Client and server share this machine's "
        f"{cores} cores, so the client's own time is part of every latency.",
        "Overhead = reply latency percentile minus the same percentile of the bare in-process work "
        "(same kernel, same onnxruntime settings, same input), measured in alternating blocks of "
        "50 requests each so both see the same background load.",
        f"Load average at the end of the run: {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {cores} cores.",
    ]


def run(quick: bool = True) -> dict:
    smoke = os.environ.get("BENCH_SMOKE") == "1"
    mode = MODES["smoke" if smoke else "quick" if quick else "full"]
    found = Findings(series={"latency_us": {}})
    image = synthetic_image(*FRAME_HW)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        tmp = Path(tmp)
        tiny_part(found, tmp, mode, image)
        if mode.vgg:
            vgg_part(found, tmp, mode, image, cores)
        else:
            found.notes.append("smoke run: VGG11 part skipped")
    found.notes += suite_notes(cores)
    return found.result("serve", "engine.serve vs the same model in-process (overhead, throughput)")


def _pong_batches(endpoint: str) -> dict:
    from engine.serving.client import Client

    with Client(endpoint, timeout_ms=10_000) as client:
        return client.ping()["stats"]["batch_sizes"]


def main(argv=None) -> int:
    """Run the suite alone and save ``serve-<date>-<host>.json`` into the git-ignored
    ``bench/results/raw/`` (committed results come from ``python -m bench``)."""
    import argparse
    import datetime

    from bench.__main__ import results_stem
    from bench.machine import machine_info
    from bench.results_files import RAW_DIR, jsonable

    p = argparse.ArgumentParser(prog="python -m bench.suite_serve")
    p.add_argument("--full", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / RAW_DIR)
    args = p.parse_args(argv)
    started = datetime.datetime.now()
    result = run(quick=not args.full)
    machine = machine_info(probe_torch=False)
    result.update(date=started.isoformat(timespec="seconds"), host=machine["host"], machine=machine,
                  mode="full" if args.full else "quick", elapsed_s=round(time.time() - started.timestamp(), 1))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"serve-{results_stem(started, machine['host'])}.json"
    path.write_text(json.dumps(result, indent=1, default=jsonable) + "\n")
    for row in result["rows"]:
        print(f"{row['name']}: {row['value']:.3f} {row['unit']}")
    for ratio in result["ratios"]:
        verdict = ("no goal" if ratio["goal"] is None
                   else f"goal {ratio['goal']}, {'met' if ratio['met'] else 'NOT met'}")
        print(f"{ratio['name']}: {ratio['value']:.3f} ({verdict})")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
