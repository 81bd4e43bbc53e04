"""Auto-tuning: pick instances, threads per instance and batch size by measuring.

    best, table = autotune("vgg11_224.onnx", "cpu", time_budget_s=60)

A *setting* is ``instances`` separate backend sessions running concurrently (one thread
each here; onnxruntime releases the GIL while it runs), each with ``threads`` intra-op
threads, each fed batches of ``batch`` images. Throughput (images/s) is measured with
the real backend on a fixed random batch.

The short sweep (:func:`autotune`) relies on two regularities of inference throughput:
settings that leave cores idle lose to those that use them all, and at a fixed
instances x threads split, throughput against batch size rises then flattens or falls.
So it measures every split that uses all cores at a middle batch size, then climbs the
batch size up and down for the two best splits, and stops where it stops improving.
:func:`exhaustive_sweep` measures the whole grid; the benchmark compares the two.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_CPU_BATCHES = (1, 2, 4, 8, 16)
DEFAULT_GPU_BATCHES = (1, 8, 32, 64, 128)
# A larger batch counts as better only when it beats the smaller one by this much.
IMPROVEMENT = 1.01


@dataclass(frozen=True)
class Setting:
    instances: int
    threads: int
    batch: int

    def as_dict(self) -> dict:
        return asdict(self)


def default_grid(device: str, cores: int | None = None) -> dict:
    """Instances, threads and batch sizes worth trying on ``device``."""
    cores = cores or os.cpu_count() or 1
    if device.startswith("cuda"):
        return {"instances": [1, 2, 4], "threads": [1], "batch": list(DEFAULT_GPU_BATCHES)}
    divisors = [d for d in range(1, cores + 1) if cores % d == 0]
    return {"instances": divisors, "threads": divisors, "batch": list(DEFAULT_CPU_BATCHES)}


def grid_settings(grid: dict, device: str, cores: int | None = None) -> list[Setting]:
    """Every setting of ``grid``; on the CPU, only those with instances x threads <= cores.

    Oversubscribed settings (more threads than cores) are left out: their threads
    preempt each other mid-kernel and never win.
    """
    cores = cores or os.cpu_count() or 1
    for key in ("instances", "threads", "batch"):
        values = grid.get(key)
        if not values or any(not isinstance(v, int) or v < 1 for v in values):
            raise ValueError(f"tuning grid: {key} must be a list of integers >= 1, got {values!r}")
    unknown = set(grid) - {"instances", "threads", "batch"}
    if unknown:
        raise ValueError(f"tuning grid: unknown keys {sorted(unknown)}")
    settings = [Setting(i, t, b) for i in sorted(set(grid["instances"])) for t in sorted(set(grid["threads"]))
                for b in sorted(set(grid["batch"]))
                if device.startswith("cuda") or i * t <= cores]
    if not settings:
        raise ValueError(f"tuning grid: no setting fits {cores} cores: {grid}")
    return settings


class Meter:
    """Measures settings with real backends, reusing sessions across batch sizes."""

    def __init__(self, model_path, device: str = "cpu", kind: str = "ort", window_s: float = 1.0,
                 min_runs: int = 2, cores: int | None = None, **backend_options):
        from engine.backends import resolve_device
        from engine.pipeline.model_backend import open_model_backend

        self.model_path = model_path
        self.kind = kind
        self.device = resolve_device(device, kind)
        self.window_s = window_s
        self.min_runs = min_runs
        self.cores = cores or os.cpu_count() or 1
        self.options = backend_options
        self._open = open_model_backend
        self._pools: dict[tuple[int, bool], list] = {}
        self.table: list[dict] = []
        self._measured: dict[Setting, float] = {}

    def _sessions(self, setting: Setting) -> list:
        # Idle threads spinning for work steal cores from the other instances.
        spinning = setting.instances == 1
        key = (setting.threads, spinning)
        pool = self._pools.setdefault(key, [])
        while len(pool) < setting.instances:
            options = dict(self.options)
            if self.kind == "ort" and self.device == "cpu":
                options.setdefault("spinning", spinning)
            pool.append(self._open(self.kind, self.model_path, device=self.device,
                                   threads=setting.threads, **options))
        return pool[: setting.instances]

    def measure(self, setting: Setting) -> float:
        """Images/s of ``setting`` (measured once; later calls return the same figure)."""
        if setting in self._measured:
            return self._measured[setting]
        backends = self._sessions(setting)
        batch = np.random.default_rng(0).standard_normal(
            (setting.batch, *backends[0].input_shape)).astype(np.float32)
        for b in backends:
            b.run(batch)  # warm up: allocations and kernel choice for this batch size
        runs = [0] * len(backends)
        latencies: list[float] = []
        finished = [0.0] * len(backends)
        barrier = threading.Barrier(len(backends) + 1)
        errors: list[BaseException] = []

        def worker(i: int) -> None:
            barrier.wait()
            try:
                while True:
                    t = time.perf_counter()
                    backends[i].run(batch)
                    now = time.perf_counter()
                    latencies.append(now - t)
                    runs[i] += 1
                    if now >= deadline and runs[i] >= self.min_runs:
                        break
            except BaseException as e:  # reported below, in the caller's thread
                errors.append(e)
            finished[i] = time.perf_counter()

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(len(backends))]
        for t in threads:
            t.start()
        start = time.perf_counter()
        deadline = start + self.window_s
        barrier.wait()
        for t in threads:
            t.join()
        if errors:
            raise RuntimeError(f"tuning {setting}: {errors[0]}") from errors[0]
        elapsed = max(finished) - start
        rate = sum(runs) * setting.batch / elapsed
        self._measured[setting] = rate
        self.table.append({**setting.as_dict(), "images_per_s": round(rate, 2),
                           "batch_latency_ms": round(1000 * float(np.median(latencies)), 2),
                           "runs": sum(runs)})
        return rate

    def rate(self, setting: Setting) -> float | None:
        return self._measured.get(setting)

    def best(self) -> Setting:
        return max(self._measured, key=self._measured.get)

    def close(self) -> None:
        for pool in self._pools.values():
            for b in pool:
                b.close()
        self._pools.clear()


def short_sweep(meter: Meter, settings: list[Setting]) -> Setting:
    """The heuristic search described in the module docstring, over ``settings``."""
    batches = sorted({s.batch for s in settings})
    splits = sorted({(s.instances, s.threads) for s in settings})
    if not meter.device.startswith("cuda"):
        widest = max(i * t for i, t in splits)
        splits = [p for p in splits if p[0] * p[1] == widest]
    allowed = set(settings)
    middle = batches[len(batches) // 2]
    for i, t in splits:
        if Setting(i, t, middle) in allowed:
            meter.measure(Setting(i, t, middle))
    ranked = sorted(splits, key=lambda p: -(meter.rate(Setting(*p, middle)) or 0.0))
    for i, t in ranked[:2]:
        _climb(meter, [Setting(i, t, b) for b in batches if Setting(i, t, b) in allowed], middle)
    return meter.best()


def _climb(meter: Meter, line: list[Setting], start_batch: int) -> None:
    """Along one split's batch sizes: go up while it improves, else go down while it does."""
    if not line:
        return
    index = next((k for k, s in enumerate(line) if s.batch == start_batch), len(line) // 2)
    current = meter.measure(line[index])
    for step in (1, -1):
        k, best = index, current
        while 0 <= k + step < len(line):
            rate = meter.measure(line[k + step])
            if rate <= best * (IMPROVEMENT if step > 0 else 1.0):
                break
            k, best = k + step, rate
        if k != index:
            return


def exhaustive_sweep(meter: Meter, settings: list[Setting]) -> Setting:
    for s in settings:
        meter.measure(s)
    return meter.best()


def format_table(table: list[dict], best: Setting | None = None) -> str:
    header = f"{'instances':>9} {'threads':>7} {'batch':>5} {'images/s':>10} {'batch ms':>9}"
    lines = [header, "-" * len(header)]
    for row in sorted(table, key=lambda r: (r["instances"], r["threads"], r["batch"])):
        mark = "  <- best" if best and Setting(row["instances"], row["threads"], row["batch"]) == best else ""
        lines.append(f"{row['instances']:>9} {row['threads']:>7} {row['batch']:>5} "
                     f"{row['images_per_s']:>10.2f} {row['batch_latency_ms']:>9.2f}{mark}")
    return "\n".join(lines)


def autotune(model_path, device: str = "cpu", grid: dict | None = None, time_budget_s: float = 30.0, *,
             kind: str = "ort", exhaustive: bool = False, verbose: bool = True,
             **backend_options) -> tuple[dict, list[dict]]:
    """Measure settings of ``grid`` (default: :func:`default_grid`) and pick the fastest.

    The budget sets each measurement's window (budget / settings expected to be
    measured); a slow model still gets at least two runs per instance per setting, so
    the budget is a target, not a hard limit. Prints the measured table unless
    ``verbose`` is False. Returns ``(best setting as a dict with images_per_s, table)``.
    """
    from engine.backends import resolve_device

    device = resolve_device(device, kind)
    grid = grid or default_grid(device)
    settings = grid_settings(grid, device)
    if exhaustive:
        planned = len(settings)
    else:
        splits = {(s.instances, s.threads) for s in settings}
        planned = len(splits) + 2 * len({s.batch for s in settings})
    window = max(0.2, 0.7 * time_budget_s / max(1, planned))
    meter = Meter(model_path, device, kind, window_s=window, **backend_options)
    try:
        best = (exhaustive_sweep if exhaustive else short_sweep)(meter, settings)
        rate = meter.rate(best)
    finally:
        meter.close()
    if verbose:
        print(format_table(meter.table, best))
    return {**best.as_dict(), "images_per_s": round(rate, 2)}, meter.table
