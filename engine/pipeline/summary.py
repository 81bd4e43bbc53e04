"""The end-of-run report: a JSON-able dict and the text summary in the layout of the
seed's benchmark tool (shapes, then instances/devices/batch/samples, forward time,
throughput, latencies in microseconds with percentiles), plus the accuracy line."""
from __future__ import annotations

import datetime as dt
import os
import platform
import time

import numpy as np
import psutil

from engine.data.scoring import accuracy_line

PERCENTILES = (50, 90, 95, 99)
STAGES = ("decode", "preprocess", "queue_wait", "inference", "postprocess")


def latency_stats(values) -> dict | None:
    if not len(values):
        return None
    a = np.asarray(values, dtype=np.float64)
    stats = {"avg": float(a.mean()), "min": float(a.min()), "max": float(a.max())}
    stats.update({f"p{p}": float(np.percentile(a, p)) for p in PERCENTILES})
    return stats


def ran_precision(backends: list[dict | None]) -> str | None:
    """The precision the device instances ran the model at (what their backends reported)."""
    return next((b.get("precision") for b in backends if b), None)


def build_report(broker, cfg, sink, *, model_info: dict, items_total: int) -> dict:
    meter, supervisor = broker.meter, broker.supervisor
    not_run = broker.total - meter.finished
    acc = sink.accuracy()
    return {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cores": os.cpu_count(),
        "model": {**model_info, "precision": ran_precision(broker.backends)},
        "config": cfg.to_dict(),
        "backends": broker.backends,
        "input": {"name": "input", "shape": [cfg.batch, *cfg.data_config.input_size],
                  "dtype": "float32", "slot_dtype": cfg.slot_dtype.name},
        "counts": {"items": items_total, "submitted": broker.total, "done": meter.finished - meter.failed,
                   "failed": meter.failed, "not_run": not_run, "restarts": supervisor.restarts},
        "stopped": broker.stop_reason,
        "forward_time_s": broker.measured_seconds,
        "measured_items": meter.measured_items,
        "warmup": {"asked": cfg.warmup, "used": meter.warmup, "excluded_items": meter.warmup_items,
                   "notice": broker.warmup_notice},
        "throughput_qps": broker.throughput,
        "latency_us": {
            "end_to_end": latency_stats(np.concatenate(meter.e2e_us) if meter.e2e_us else []),
            "model_batch": latency_stats(meter.batch_us),
        },
        "stages_us_per_item": {stage: meter.stages.mean(stage) for stage in STAGES},
        "batch_sizes": {str(k): v for k, v in sorted(meter.batch_sizes.items())},
        "broker_cpu_s": {"before_run": meter.cpu_before_s, "run": meter.cpu_s, "process": time.process_time()},
        "accuracy": acc,
        "peak_rss_mb": supervisor.peak_rss_bytes / 2**20,
        "host_memory_used_mb": psutil.virtual_memory().used / 2**20,
    }


def _lat_line(name: str, stats: dict | None) -> str:
    if stats is None:
        return f"  {name} latency (us): n/a"
    pct = " ".join(f"p{p}: {stats[f'p{p}']:.0f}" for p in PERCENTILES)
    return f"  {name} latency (us): avg: {stats['avg']:.0f} min: {stats['min']:.0f} max: {stats['max']:.0f} {pct}"


def format_summary(report: dict) -> str:
    cfg = report["config"]
    counts = report["counts"]
    shape = report["input"]["shape"]
    backend = report["backends"][0] if report["backends"] else {}
    lines = [
        f"model: {report['model'].get('name')} ({report['model'].get('weights_label', '')})",
        f"input: {report['input']['name']} {shape} {report['input']['dtype']}",
        f"backend: {backend.get('backend', cfg['backend'])} on {backend.get('device_name', cfg['device'])} "
        f"({backend.get('precision', '')}, providers {backend.get('providers', [])}, "
        f"device memory used (MB): {backend.get('memory_mb')})",
        f"- number of instances in each device: {cfg['instances']}",
        f"  processes: {cfg['processes']}  preprocess workers: {cfg['workers']}  "
        f"threads per instance: {cfg['threads']}",
        f"  batch size: {cfg['batch']}",
        f"  samples: {report['measured_items']} (done {counts['done']}, failed {counts['failed']}, "
        f"not run {counts['not_run']})",
        f"  warm-up: {report['warmup']['excluded_items']} item(s) run first and not timed",
        f"  forward time (s): {report['forward_time_s']:.3f}",
        f"  throughput (qps): {report['throughput_qps']:.2f}",
        _lat_line("end-to-end", report["latency_us"]["end_to_end"]),
        _lat_line("model (per batch)", report["latency_us"]["model_batch"]),
        "  stages (us per item): " + "  ".join(
            f"{k}: {v:.0f}" if v is not None else f"{k}: n/a" for k, v in report["stages_us_per_item"].items()),
        f"  peak RSS (MB, broker + workers, sampled): {report['peak_rss_mb']:.0f}",
    ]
    acc = report["accuracy"]
    if acc["labelled"]:
        lines.append(accuracy_line(acc["top1"], acc["top5"]) + f"  (over {acc['labelled']} labelled items)")
    if report["stopped"]:
        lines.append(f"run stopped: {report['stopped']}")
    return "\n".join(lines)
