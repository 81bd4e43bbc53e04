"""OpenVINO suite: every CPU backend and precision on the same ONNX files (issue 28).

Goal: ``engine.run --backend openvino --precision bf16`` end to end, from ImageNet-sized npz
items, against a bare OpenVINO bf16 loop over the same file (its own compiled model, bf16
inference precision, the same batch and threads, over the items preprocessed beforehand,
in a fresh process as the engine's stages are),
in alternating rounds: the median per-round ratio >= 0.95, i.e. preprocessing and transport
hidden behind bf16 inference.

The table: VGG11 and ResNet-50 (timm, seeded random weights, exported by the engine) at
each backend and precision, inference only, in alternating turns (each keeps its best):
onnxruntime fp32, OpenVINO f32, OpenVINO bf16, the torch backend's bf16 autocast, and the
int8 QDQ file ``engine.build`` writes on onnxruntime and on OpenVINO. Beside them, the
bf16 error against onnxruntime fp32 on the items (largest logit difference over the
largest logit, top-1 agreement), the figure docs/pipeline.md states as the bf16 bound.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import SuiteSkipped
from bench.fixtures import make_npz_set, paired_rounds, run_engine
from bench.ort_rates import alternate
from bench.suite_models import export_model
from engine.data.datalist import write_datalist

ROOT = Path(__file__).resolve().parents[1]
BATCH = 8
THREADS = 2
GOAL = 0.95
MODELS = ("vgg11", "resnet50")


def preprocessed(model: Path, items: list[str]) -> np.ndarray:
    """The items as the engine preprocesses them for ``model``: (N, 3, H, W) float32."""
    from engine.builder.calibration import iter_batches
    from engine.data.dataconfig import ModelInfo

    config = ModelInfo.load(ModelInfo.path_for(model)).data_config
    return np.concatenate([b for _, b in iter_batches(items, config, BATCH)])


class BareOpenVino:
    """The baseline: OpenVINO's own API, one infer request, compiled as the engine's backend
    compiles (bf16 inference precision, the threads, one stream, the latency hint, no core
    pinning), so the ratio is the engine's own cost and nothing else."""

    def __init__(self, model: Path, tensors: np.ndarray):
        import openvino as ov
        import openvino.properties as props
        import openvino.properties.hint as hints

        config = {hints.inference_precision: ov.Type.bf16, props.inference_num_threads: THREADS,
                  props.num_streams: 1, hints.performance_mode: hints.PerformanceMode.LATENCY,
                  hints.enable_cpu_pinning: False}
        compiled = ov.Core().compile_model(str(model), "CPU", config)
        self.request = compiled.create_infer_request()
        self.batches = [tensors[i:i + BATCH] for i in range(0, len(tensors) - BATCH + 1, BATCH)]
        self.request.infer({0: self.batches[0]})

    def rate(self, seconds: float) -> float:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or n < 2 * BATCH:
            self.request.infer({0: self.batches[(n // BATCH) % len(self.batches)]}, share_inputs=True)
            n += BATCH
        return n / (time.perf_counter() - t0)


def bare_rate(model: Path, tensors: Path, seconds: float) -> float:
    """The bare loop's images/s, in a fresh process of its own as the engine's stages are (in
    this one, numba's and torch's thread pools and the table's sessions are loaded)."""
    done = subprocess.run([sys.executable, "-m", "bench.suite_openvino", "--bare", str(model), str(tensors),
                           str(seconds)], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"bare OpenVINO loop failed ({done.returncode}): {done.stderr[-2000:]}")
    return float(done.stdout.split()[-1])


def goal_ratio(name: str, model: Path, tmp: Path, items: list[str], datalist: Path, rounds: int,
               seconds: float, iterations: int) -> tuple[list[dict], dict]:
    """Engine end to end vs the bare OpenVINO bf16 loop, alternating rounds."""
    tensors = tmp / f"{name}_items.npy"
    np.save(tensors, preprocessed(model, items))
    paired = paired_rounds(rounds, lambda: bare_rate(model, tensors, seconds), lambda r: run_engine(
        datalist, model, tmp / f"{name}_ov_{r}.json", "--backend", "openvino", "--precision", "bf16", "-b", BATCH,
        "--threads", THREADS, "--workers", 1, "--warmup", 2 * BATCH, "--iterations", iterations))
    rows = [
        {"name": f"{name} bare OpenVINO bf16 loop over the items, batch {BATCH} (inference only)",
         "value": float(np.median(paired.loop)), "unit": "img/s", "rounds": paired.loop},
        {"name": f"{name} engine --backend openvino --precision bf16 end to end from npz, batch {BATCH}",
         "value": float(np.median(paired.engine)), "unit": "img/s", "key": True, "rounds": paired.engine,
         "precision_ran": paired.report.get("model", {}).get("precision"),
         "stages_us": paired.report.get("stages_us_per_item")},
    ]
    return rows, {"name": f"{name} engine openvino bf16 end-to-end / bare OpenVINO bf16 loop (median of paired "
                          "rounds)", "value": paired.ratio, "goal": f">= {GOAL}", "met": paired.ratio >= GOAL,
                  "per_round": paired.per_round}


def int8_build(model: Path, items_folder: Path, out: Path, count: int) -> Path:
    """The int8 QDQ deploy folder engine.build writes, calibrated on ``count`` of the items
    (no accuracy check: the suite measures speed, and VGG11's check would double its time)."""
    from engine.builder.build import build
    from engine.builder.config import parse_config

    cfg = parse_config({"model": {"onnx": str(model)}, "dtype": "int8", "output": str(out),
                        "quantization": {"method": "percentile"},
                        "calibration": {"path": str(items_folder), "count": count}, "check": {"count": 0}})
    folder = build(cfg, progress=False)
    return next(folder.glob("*.onnx"))


def open_all(name: str, model: Path, int8: Path | None) -> dict:
    """Every backend and precision of the table, opened once."""
    from engine.backends import open_backend
    from engine.models.zoo import create

    backends = {
        "onnxruntime fp32": open_backend("ort", model, threads=THREADS),
        "OpenVINO f32": open_backend("openvino", model, threads=THREADS, precision="fp32"),
        "OpenVINO bf16": open_backend("openvino", model, threads=THREADS, precision="bf16"),
        "engine torch bf16": open_backend("torch", module=create(name, library="timm", seed=0).module,
                                          threads=THREADS, precision="bf16"),
    }
    if int8 is not None:
        backends["onnxruntime int8 (engine.build)"] = open_backend("ort", int8, threads=THREADS)
        backends["OpenVINO on the same int8 file"] = open_backend("openvino", int8, threads=THREADS)
    return backends


def backend_table(name: str, model: Path, int8: Path | None, tensors: np.ndarray, rounds: int) -> tuple[list, dict]:
    """Inference-only images/s of each backend and precision, in alternating turns; the bf16 error."""
    backends = open_all(name, model, int8)
    x = tensors[:BATCH]
    for b in backends.values():
        b.run(x)

    def turn(backend) -> float:
        t0, n = time.perf_counter(), 0
        while n < 1 or time.perf_counter() - t0 < 1.0:
            backend.run(x)
            n += 1
        return n * BATCH / (time.perf_counter() - t0)

    rates = alternate(turn, backends, rounds)
    reference = np.concatenate([backends["onnxruntime fp32"].run(tensors[i:i + BATCH])[0]
                                for i in range(0, len(tensors), BATCH)])
    bf16 = np.concatenate([backends["OpenVINO bf16"].run(tensors[i:i + BATCH])[0]
                           for i in range(0, len(tensors), BATCH)])
    for b in backends.values():
        b.close()
    error = {"max_rel_logit_error": float(np.abs(bf16 - reference).max() / np.abs(reference).max()),
             "top1_agreement": float(np.mean(bf16.argmax(1) == reference.argmax(1))), "images": len(tensors)}
    rows = [{"name": f"{name} {label}, batch {BATCH}, {THREADS} threads (inference only)", "value": rates[label],
             "unit": "img/s", "rounds": rates[f"{label}_rounds"], "model": name, "runtime": label,
             **({"key": True} if label == "OpenVINO bf16" and name == "resnet50" else {})}
            for label in backends]
    rows.append({"name": f"{name} OpenVINO bf16 vs onnxruntime fp32: largest logit error / largest logit",
                 "value": error["max_rel_logit_error"], "unit": "", **error})
    return rows, error


def run(quick: bool = True) -> dict:
    from engine.pipeline.precision_sweep import openvino_installed

    if not openvino_installed():
        raise SuiteSkipped("openvino is not installed (pip install 'vgg-stream-engine[openvino]')")
    smoke = os.environ.get("BENCH_SMOKE") == "1"
    rows, ratios, errors = [], [], {}
    with tempfile.TemporaryDirectory(prefix="bench-openvino-") as tmp:
        tmp = Path(tmp)
        items = make_npz_set(tmp / "npz", 16 if smoke else 32 if quick else 128)
        datalist = tmp / "list.txt"
        write_datalist(datalist, items)
        for name in ("resnet50",) if smoke else MODELS:
            model = export_model(name, tmp / name)
            tensors = preprocessed(model, items)
            # int8 for VGG11 in quick mode (the table), both models in full mode
            with_int8 = not smoke and (name == "vgg11" or not quick)
            int8 = int8_build(model, tmp / "npz", tmp / f"{name}_int8", 16) if with_int8 else None
            table, errors[name] = backend_table(name, model, int8, tensors, rounds=1 if smoke else 2 if quick else 4)
            rows += table
            if name == "resnet50" or not quick:
                goal_rows, ratio = goal_ratio(name, model, tmp, items, datalist, rounds=1 if smoke else 3,
                                              seconds=2 if smoke else 4 if quick else 10,
                                              iterations=1 if smoke else 8)
                rows += goal_rows
                ratios.append(ratio)
    notes = [f"timm models with random weights (seed 0), exported by the engine; batch {BATCH}, {THREADS} threads "
             "everywhere. The goal ratio pairs engine.run (npz loading, the fused preprocessing kernel, transport, "
             "softmax/top-k, one preprocess worker) with a bare OpenVINO bf16 loop over the same items preprocessed "
             "beforehand, in a process of its own, compiled with the backend's settings; they alternate, the goal is "
             "the median of the per-round ratios.",
             "The table is inference only, every runtime on the same ONNX file (int8: the QDQ file engine.build "
             "writes, 16 calibration items), turns alternating, best turn kept. bf16 error: "
             + "; ".join(f"{k} max rel logit error {v['max_rel_logit_error']:.1e}, top-1 agreement "
                         f"{100 * v['top1_agreement']:.0f}% on {v['images']} items" for k, v in errors.items())]
    return {"suite": "openvino", "title": "OpenVINO and bf16: engine vs bare OpenVINO, every CPU backend and "
                                          "precision on VGG11 and ResNet-50",
            "rows": rows, "ratios": ratios, "notes": notes}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--bare"]:  # one bare_rate measurement: MODEL TENSORS.npy SECONDS
        print(BareOpenVino(Path(sys.argv[2]), np.load(sys.argv[3])).rate(float(sys.argv[4])))
    else:
        print(json.dumps(run(quick="--full" not in sys.argv), indent=2))
